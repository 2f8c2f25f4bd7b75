"""The whole method for one student: teacher -> KD -> robust and detrimental pairs -> scores.

Every stage checkpoints under ``out_dir`` and is skipped when its checkpoint is complete, so the
same call resumes an interrupted run. ``results.json`` holds the evaluation of every stage, the
per-example correctness of each pair, and the cross-policy matrix (Table 3).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .data import load_dataset
from .engine import RunOptions, load_checkpoint, make_accelerator, seed_everything, write_atomic
from .models import ActQuantConfig, QuantizableModel, create_model
from .pair import PairConfig
from .train import (
    TEACHER_DEFAULTS,
    BlackBox,
    StageConfig,
    accuracy,
    distill,
    own_policy_bits,
    random_policy_bits,
    train_pair,
    train_teacher,
)


@dataclass(frozen=True)
class PipelineConfig:
    """One student through the whole method.

    Attributes:
        dataset, dataset_options: a registered dataset and its keyword options.
        teacher, teacher_pretrained: the black box (timm name or ``module:function``).
        student: the white-box architecture distilled from it.
        teacher_stage, kd_stage: stage hyperparameters.
        pair: pair hyperparameters (``mode`` is set per pair from ``modes``).
        modes: which pairs to train.
        act: activation quantizer; weight_bits: static weight bits.
        policy, policy_options: registered policy and its keyword options.
        seed: seeds everything; the same seed on the CPU gives the same numbers.
    """

    dataset: str = "digits"
    dataset_options: dict = field(default_factory=lambda: {"image_size": 32})
    teacher: str = "resnet50"
    teacher_pretrained: bool = False
    student: str = "resnet18"
    teacher_stage: StageConfig = TEACHER_DEFAULTS
    kd_stage: StageConfig = StageConfig()
    pair: PairConfig = PairConfig()
    modes: tuple[str, ...] = ("robust", "detrimental")
    act: ActQuantConfig = ActQuantConfig()
    weight_bits: int | None = 16
    policy: str = "small_cnn"
    policy_options: dict = field(default_factory=dict)
    seed: int = 0


def run_pipeline(cfg: PipelineConfig, out_dir: str | Path, opts: RunOptions | None = None) -> dict:
    """Train and score every stage for ``cfg`` under ``out_dir``; returns (and writes) the results."""
    opts = opts or RunOptions(seed=cfg.seed)
    out = Path(out_dir)
    # everything that can be wrong with the config fails here, before any training
    data = load_dataset(cfg.dataset, **cfg.dataset_options)
    seed_everything(cfg.seed)
    teacher = create_model(cfg.teacher, data.num_classes, pretrained=cfg.teacher_pretrained)
    seed_everything(cfg.seed + 1)
    student = create_model(cfg.student, data.num_classes)
    f_n = QuantizableModel(student, act=cfg.act, weight_bits=cfg.weight_bits)
    for mode in cfg.modes:
        replace(cfg.pair, mode=mode).resolve_budget(f_n.num_layers)

    out.mkdir(parents=True, exist_ok=True)
    acc = make_accelerator(opts)
    results: dict = {"config": _plain(asdict(cfg)), "num_layers": f_n.num_layers}
    teacher.to(acc.device)
    seed_everything(cfg.seed)  # each stage starts from its own seed (resume-safe)
    results["teacher"] = train_teacher(
        teacher, data, cfg.teacher_stage, out / "teacher.pt", opts, acc
    )
    black_box = BlackBox(teacher)
    student.to(acc.device)
    seed_everything(cfg.seed + 1)
    results["kd"] = distill(student, black_box, data, cfg.kd_stage, out / "kd.pt", opts, acc)
    f_n.eval()

    pairs = {}
    for i, mode in enumerate(cfg.modes):
        seed_everything(cfg.seed + 2 + i)
        pair_cfg = replace(cfg.pair, mode=mode)
        f, pi, ev = train_pair(
            f_n, data, pair_cfg, out / f"pair-{mode}.pt", opts, acc, cfg.policy, cfg.policy_options
        )
        pairs[mode] = (f, pi, pair_cfg.resolve_budget(f.num_layers))
        results[mode] = ev
    results["cross_policy"] = cross_policy(f_n, pairs, data, cfg.pair.options, acc, cfg.seed)
    if "robust" in results and "detrimental" in results:
        r, d = results["robust"], results["detrimental"]
        results["summary"] = {
            "f_n_acc": results["kd"]["test_acc"],
            "gap": d["drop"] - r["drop"],
            "fp_match": abs(r["fp_acc"] - d["fp_acc"]),
            "d_pi_minus_random": d["q_acc"] - d["random_acc"],
        }
    save_json(results, out / "results.json")
    return results


def cross_policy(f_n: QuantizableModel, pairs: dict, data, options, acc, seed: int) -> dict:
    """Accuracy of every network in {f_N, f_R, f_D} under {FP, pi_R, pi_D, random} (Table 3)."""
    nets = {"f_N": f_n, **{f"f_{m[0].upper()}": p[0] for m, p in pairs.items()}}
    budget = next(iter(pairs.values()))[2] if pairs else None
    table: dict[str, dict[str, float]] = {}
    for net_name, net in nets.items():
        net.eval()
        row = {"FP": accuracy(net, data, acc)}
        for m, (_, pi, b) in pairs.items():
            row[f"pi_{m[0].upper()}"] = accuracy(net, data, acc, own_policy_bits(pi, options, b))
        if budget is not None:
            row["random"] = accuracy(
                net, data, acc, random_policy_bits(net.num_layers, options, budget, seed)
            )
        table[net_name] = row
    return table


def config_from_dict(d: dict) -> PipelineConfig:
    """Rebuild a :class:`PipelineConfig` from its ``asdict`` form (as saved in results.json)."""
    from .data import AugmentConfig

    def stage(x):
        aug = x.get("augment")
        return StageConfig(**{**x, "augment": AugmentConfig(**aug) if aug else None})

    pair = {**d["pair"], "options": tuple(d["pair"]["options"])}
    return PipelineConfig(
        **{
            **d,
            "teacher_stage": stage(d["teacher_stage"]),
            "kd_stage": stage(d["kd_stage"]),
            "pair": PairConfig(**pair),
            "modes": tuple(d["modes"]),
            "act": ActQuantConfig(**d["act"]),
        }
    )


def _plain(obj):
    """JSON-friendly copy (tuples to lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def save_json(obj: dict, path: Path) -> None:
    write_atomic(path, json.dumps(_plain(obj), indent=1) + "\n")


def load_pair(out_dir: str | Path, cfg: PipelineConfig, mode: str, num_classes: int):
    """Rebuild a trained (f, pi) of ``mode`` from a pipeline folder (for the analyses)."""
    from .policy import create_policy

    out = Path(out_dir)
    f = QuantizableModel(
        create_model(cfg.student, num_classes), act=cfg.act, weight_bits=cfg.weight_bits
    )
    ckpt = load_checkpoint(out / f"pair-{mode}.pt", f"pair-{mode}")
    f.load_state_dict(ckpt["modules"]["student"])
    pi = create_policy(cfg.policy, f.num_layers, len(cfg.pair.options), **cfg.policy_options)
    pi.load_state_dict(ckpt["modules"]["policy"])
    return f.eval(), pi.eval()
