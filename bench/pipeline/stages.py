"""The stages of a suite as plain functions: teacher, KD, pair, analyse.

Each takes the suite, the data, what it reads (the files of the stages it needs), where to keep
its checkpoint and the process's Accelerator, and returns its results; none knows where it runs.
An executor calls a training stage as ``job(params, ckpt=..., report=..., acc=...)`` (:func:`job`)
once per trial, in this process or inside a Ray Tune trial, with ``report(epoch, result)``
printing progress or reporting to Ray Tune.

Seeds: a stage of seed s trains with data order s; the teacher's network starts from s, KD's
from s + 1, a pair's from s + :data:`bench.pipeline.plan.MODE_OFFSET` (2 robust, 3 detrimental); the
evaluation draws its random allocations from s. The same seed on the same CPU gives the same
numbers wherever a stage runs. Training and selection evaluate on the validation split; only
:func:`analyse` reads the test split, once per cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from dptq.data import DatasetPair
from dptq.engine import RunOptions, load_checkpoint, seed_everything
from dptq.models import QuantizableModel
from dptq.policy import bar_floor, create_policy
from dptq.scores import CellCounts

from .plan import MODE_OFFSET, Cell, Stage

Report = Callable[[int, dict], None]


def _options(suite, seed: int, report: Report | None) -> RunOptions:
    callback = None if report is None else (lambda stage, epoch, result: report(epoch, result))
    res = suite.resources
    return RunOptions(
        seed=seed,
        cpu=res.gpus == 0,
        mixed_precision=res.precision,
        num_workers=res.loader_workers,
        progress=report is None,
        callback=callback,
    )


def quantizable(suite, student: str, num_classes: int) -> QuantizableModel:
    """A fresh ``student`` wrapped for dynamic quantization with the suite's quantizers."""
    return QuantizableModel(
        suite.student(student).build(num_classes), act=suite.act, weight_bits=suite.weight_bits
    )


def load_f_n(suite, student: str, kd_file: Path, num_classes: int) -> QuantizableModel:
    """f_N: the distilled student of a KD checkpoint, in eval mode."""
    f_n = quantizable(suite, student, num_classes)
    f_n.model.load_state_dict(load_checkpoint(kd_file, "kd")["modules"]["student"])
    return f_n.eval()


def load_pair(suite, cell: Cell, mode: str, pair_file: Path, num_classes: int):
    """A trained pair (f, pi) of ``mode`` from its checkpoint, both in eval mode."""
    ckpt = load_checkpoint(pair_file, f"pair-{mode}")
    f = quantizable(suite, cell.student, num_classes)
    f.load_state_dict(ckpt["modules"]["student"])
    pi = create_policy(suite.policy, f.num_layers, len(cell.options), suite.policy_options)
    pi.load_state_dict(ckpt["modules"]["policy"])
    # the floor bar the pair was trained with (a grid configuration may set its own)
    trained = ckpt.get("config", {}).get("pair", {})
    bar = {
        k: tuple(trained[k]) if k == "floor_barred" else trained[k] for k in _BAR if k in trained
    }
    cfg = replace(suite.pair, mode=mode, options=cell.options, budget=cell.budget, **bar)
    pi = bar_floor(pi, cfg.barred_layers(f.layer_names), cfg.barred_option_indices())
    return f.eval(), pi.eval()


_BAR = ("floor_barred", "barred_options")


def f_n_accuracy(summary: dict) -> float:
    """f_N's reference accuracy, on the validation split, that the search objective compares
    pairs against (never the test split): the KD stage's last ``val_acc``."""
    return float(summary["metrics"]["val_acc"])


def teacher(suite, data: DatasetPair, stage: Stage, inputs: dict, params, *, ckpt, report, acc):
    """Train the black box (supervised, label smoothing); returns its last evaluation."""
    from dptq.train import train_teacher

    seed_everything(stage.seed)
    model = suite.teacher.build(data.num_classes, pretrained=suite.teacher.pretrained)
    opts = _options(suite, stage.seed, report)
    return train_teacher(model.to(acc.device), data, suite.teacher_stage, ckpt, opts, acc)


def kd(suite, data: DatasetPair, stage: Stage, inputs: dict, params, *, ckpt, report, acc):
    """Distil the teacher (queried as a black box) into a random student: f_N."""
    from dptq.train import BlackBox, distill

    net = suite.teacher.build(data.num_classes)
    net.load_state_dict(load_checkpoint(inputs["teacher"], "teacher")["modules"]["model"])
    seed_everything(stage.seed + 1)
    spec = suite.student(stage.student)
    model = spec.build(data.num_classes, pretrained=spec.pretrained)
    opts = _options(suite, stage.seed, report)
    teacher_ = BlackBox(net.to(acc.device))
    return distill(model.to(acc.device), teacher_, data, suite.kd_stage, ckpt, opts, acc)


def objective(mode: str, result: dict, f_n_acc: float, search, protocol) -> float:
    """The search objective on one epoch's validation result, larger is better (docs/suites.md "The
    search objective"). With ``search.objective: constrained``, selection under the protocol
    (:func:`bench.records.protocol.selection_score`); else the penalty objective below.

    Robust: ``-drop - penalty * lost``. Detrimental: ``drop - stealth_penalty * max(0, worst -
    stealth_max) - penalty * lost``, with ``lost = max(0, (f_n_acc - fp_acc) - fp_tolerance)`` and
    ``worst`` f_D's larger drop under a random and the uniform allocation: a pair that buys its
    drop by losing FP accuracy, or by failing under any allocation, is pushed down, not thrown
    away.
    """
    if search.objective == "constrained":
        from ..records.protocol import selection_score

        return selection_score(mode, result["drop"], result["fp_acc"], f_n_acc, protocol)
    lost = max(0.0, (f_n_acc - result["fp_acc"]) - search.fp_tolerance)
    if mode == "robust":
        return -result["drop"] - search.penalty * lost
    worst = result["fp_acc"] - min(result["random_acc"], result["uniform_acc"])
    unstealthy = max(0.0, worst - protocol.stealth_max)
    return result["drop"] - search.stealth_penalty * unstealthy - search.penalty * lost


def pair(suite, data: DatasetPair, stage: Stage, inputs: dict, params, *, ckpt, report, acc):
    """Train one pair of the stage's mode with the pair settings ``params`` (delta, alpha, beta,
    stealth; or a grid's ``configuration``: :meth:`bench.config.suite.Suite.pair_config`). Every epoch's
    result carries ``score`` (:func:`objective`); returns the last one (or the selected one).

    ``inputs``: ``kd`` (f_N's checkpoint), ``f_n_acc`` (its validation accuracy) and, when a
    detrimental pair's stealth term reads it, ``robust`` (the cell's chosen robust pair).
    """
    from dptq.train import train_pair

    cell, mode = stage.cell, stage.mode
    f_n_acc = inputs["f_n_acc"]

    def score(result: dict) -> dict:
        result["score"] = objective(mode, result, f_n_acc, suite.search, suite.protocol)
        return result

    def scored(epoch: int, result: dict) -> None:
        if report is not None:
            report(epoch, score(result))

    opts = _options(suite, cell.seed, scored if report is not None else None)
    cfg = replace(suite.pair_config(mode, params), options=cell.options, budget=cell.budget)
    f_n = load_f_n(suite, cell.student, inputs["kd"], data.num_classes).to(acc.device)
    robust_policy = None
    if mode == "detrimental" and cfg.stealth_on and "robust_policy" in cfg.stealth_allocations:
        _, robust_policy = load_pair(suite, cell, "robust", inputs["robust"], data.num_classes)
        robust_policy = robust_policy.to(acc.device).requires_grad_(False)
    from dptq import fused_taps

    fused_taps.enable(suite.resources.compile_taps)
    seed_everything(cell.seed + MODE_OFFSET[mode])
    select = (lambda r: score(dict(r))["score"]) if suite.search.select_epoch == "best" else None
    _, _, result = train_pair(
        f_n,
        data,
        cfg,
        ckpt,
        opts,
        acc,
        suite.policy,
        suite.policy_options,
        robust_policy,
        select,
        cache_f_n=suite.resources.cache_f_n,
    )
    return score(result)


TRAINERS = {"teacher": teacher, "kd": kd, "pair": pair}


def job(suite, data: DatasetPair, stage: Stage, inputs: dict):
    """The stage as an executor calls it: ``job(params, ckpt=..., report=..., acc=...)``."""
    return partial(TRAINERS[stage.kind], suite, data, stage, inputs)


@dataclass
class CellResult:
    """What a cell's analysis returns to the runner (small: no networks, no tables).

    ``counts``: the evaluation's exact counts; ``per_example``: the record's per-example file
    (the evaluation's, each analysis' under its name); ``fields``: each analysis' record fields.
    """

    counts: CellCounts
    per_example: dict
    fields: dict
    num_layers: int
    seconds: float | None = None  # the analyses' wall time (set by the runner)
    networks: dict | None = None  # each evaluated network's hash (dptq.bundle.digest)


def analyse(
    suite,
    data: DatasetPair,
    cell: Cell,
    kd_file: Path,
    f_n_acc: float,
    pair_files: dict[str, Path],
    out: Path,
    acc,
    progress: bool = False,
) -> CellResult:
    """Evaluate a cell's chosen pairs on the test split, once; run the suite's analyses on it.

    The report (``report.md`` and PNGs) is written under ``out``; ``progress``: a line as each
    analysis starts (which one, the cell's ETA).
    """
    import torch

    from dptq.analyses import TrainedCell, write_report
    from dptq.evaluate import evaluate_cell

    torch.set_num_threads(suite.resources.threads)
    device = acc.device
    nets = {"f_N": load_f_n(suite, cell.student, kd_file, data.num_classes).to(device)}
    policies = {}
    for mode, file in pair_files.items():
        tag = "f_R" if mode == "robust" else "f_D"
        f, pi = load_pair(suite, cell, mode, file, data.num_classes)
        nets[tag], policies[tag] = f.to(device), pi.to(device)
    evaluation = evaluate_cell(
        nets,
        policies,
        data,
        cell.options,
        cell.budget,
        device,
        seed=cell.seed,
        random_allocations=suite.protocol.random_allocations,
    )
    trained = TrainedCell(
        nets,
        policies,
        data,
        cell.options,
        cell.budget,
        evaluation,
        f_n_acc,
        device=str(device),
        seed=cell.seed,
        max_examples=suite.analysis_examples,
        sweep_layers=suite.sweep_layers,
        corruption_degrees=suite.corruption_degrees,
        sample_seed=suite.protocol.split_seed,
        audit=suite.audit,
        defenses=suite.defenses,
        policy=suite.policy,
        policy_options=suite.policy_options,
        random_allocations=suite.protocol.random_allocations,
        fp_cost_max=suite.protocol.fp_drop_max,
        acc=acc,
    )
    title = (
        f"{cell.student} on {suite.dataset.name}, options {cell.version} "
        f"{list(cell.options)}, budget {cell.budget}, seed {cell.seed}"
    )
    tell = _analysis_progress(cell) if progress else None
    results = write_report(trained, suite.analyses, out, title, tell)
    per_example = {"total": evaluation.total, "evaluation": evaluation.per_example()}
    extra = {n: a.per_example for n, a in results.items() if a.per_example}
    if extra:
        per_example["analyses"] = extra
    fields = {n: a.fields for n, a in results.items() if a.fields is not None}
    from dptq.bundle import digest

    hashes = {"f_N": digest(nets["f_N"])}
    for tag in ("f_R", "f_D"):
        hashes[tag], hashes[f"pi_{tag[-1]}"] = digest(nets[tag]), digest(policies[tag])
    return CellResult(
        evaluation.counts(), per_example, fields, nets["f_N"].num_layers, networks=hashes
    )


def _analysis_progress(cell: Cell):
    """A line as each analysis of ``cell`` starts: its name, its place, the cell's ETA."""
    from ..executors.events import LOG

    def progress(name: str | None, i: int, total: int, seconds: float) -> None:
        if name is None:
            LOG.info(f"  [analyse {cell.key}] {total} analyses done in {seconds:.0f} s")
            return
        eta = f", ETA {seconds / i * (total - i):.0f} s" if i else ""
        LOG.info(f"  [analyse {cell.key}] {name} ({i + 1}/{total}){eta}")

    return progress
