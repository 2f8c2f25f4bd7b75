"""``python -m bench audit``: the deployer's audit of a frozen model (:mod:`dptq.audit`).

Loads any timm name or ``package.module:function`` model with a checkpoint, trains only an
adversarial bit-allocation policy against it at an exact budget (training split; each epoch on the
validation split), and reports on the test split, once: FP accuracy, accuracy under the adversary,
the uniform and random allocations, the flipped examples, the layer sweep and the bits per layer,
and the model's full-precision indicators (:mod:`dptq.indicators`: no quantizer involved).
Writes ``audit.json``, ``report.md`` / ``report.html`` and the PNGs under ``--out``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from dptq import knapsack
from dptq.analyses import TrainedCell
from dptq.analyses.deployer import audit_analysis
from dptq.analyses.indicators import model_indicators
from dptq.analyses.registry import _html
from dptq.audit import AuditConfig, audit_scores, train_adversary
from dptq.checkpoints import load_weights
from dptq.data import dataset_options, load_dataset
from dptq.engine import RunOptions, make_accelerator
from dptq.io import write_atomic
from dptq.models import QuantizableModel, create_model
from dptq.tables import markdown_table


class AuditError(ValueError):
    """A user's mistake in ``bench audit``'s arguments; one line."""


def parse_options(text: str) -> tuple[int, ...]:
    """``"3-10"`` or ``"3,4,6,8"`` -> bit-width options."""
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-"))
            opts = tuple(range(lo, hi + 1))
        else:
            opts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise AuditError(
            f"--options {text!r}: write a range like 3-10 or a list like 4,6,8"
        ) from None
    if not opts or min(opts) < 2 or max(opts) > 16 or len(set(opts)) != len(opts):
        raise AuditError(f"--options {text!r}: need distinct bit-widths in 2..16")
    return opts


def parse_dataset_options(items: list[str]) -> dict:
    """``["image_size=32", ...]`` -> ``{"image_size": 32}`` (values read as YAML scalars)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AuditError(f"--dataset-option {item!r}: write KEY=VALUE, e.g. image_size=32")
        out[key] = yaml.safe_load(value)
    return out


def run_audit(
    model: str,
    checkpoint: Path,
    dataset: str = "digits",
    options: tuple[int, ...] = tuple(range(3, 11)),
    avg_bits: float = 4.0,
    budget: int | None = None,
    dataset_opts: dict | None = None,
    out: Path = Path("runs/audit"),
    cfg: AuditConfig | None = None,
    seed: int = 0,
    random_allocations: int = 8,
    max_examples: int | None = 512,
    val_fraction: float = 0.15,
    cpu: bool | None = None,
    progress: bool = True,
) -> dict:
    """Audit ``model`` (weights from ``checkpoint``) at ``budget`` (or ``avg_bits`` x L); returns
    the audit's record fields and writes the report under ``out``. Raises :class:`AuditError`,
    ``ConfigError`` or ``ValueError`` (one line) on bad input, before any file is written."""
    try:
        opts = dataset_options(dataset, **(dataset_opts or {}))
        data = load_dataset(dataset, opts, val_fraction=val_fraction, sample_seed=seed)
    except (KeyError, ValueError) as e:
        raise AuditError(f"--dataset {dataset}: {e}") from None
    net = create_model(model, data.num_classes)
    try:
        load_weights(net, checkpoint)
    except ValueError as e:
        raise AuditError(f"--checkpoint {e}; check --model and the dataset's class count") from None
    wrapped = QuantizableModel(net)
    L = wrapped.num_layers
    if budget is None:
        budget = knapsack.budget_from_average(avg_bits, L)
    try:
        knapsack.check_budget(options, budget, L)
    except ValueError as e:
        raise AuditError(f"--budget/--avg-bits: {e}") from None
    cfg = cfg or AuditConfig()
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    run = RunOptions(seed=seed, cpu=cpu, progress=progress)
    acc = make_accelerator(run)
    wrapped = wrapped.to(acc.device).eval()
    policy, _ = train_adversary(wrapped, data, options, budget, cfg, None, run, acc)
    scores = audit_scores(
        wrapped, policy, data, options, budget, acc.device, seed, random_allocations, cfg=cfg
    )
    cell = TrainedCell(
        {"f_N": wrapped},
        {},
        data,
        options,
        budget,
        None,
        100 * scores["fp"] / scores["total"],
        device=str(acc.device),
        seed=seed,
        max_examples=max_examples,
        sample_seed=seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        section = audit_analysis(wrapped, policy, scores, cell, out, name=model)
        examples, values, _ = model_indicators(
            {"model": wrapped}, data, max_examples, seed, acc.device
        )
    indicators = values["model"]
    title = f"Audit of {model} ({checkpoint.name}) on {dataset}, options {list(options)}, budget {budget}"
    text = "\n".join(
        [f"# {title}", "", section.markdown(), *_indicator_section(indicators, examples)]
    )
    result = {
        "model": model,
        "checkpoint": str(checkpoint),
        "dataset": dataset,
        "options": list(options),
        "budget": budget,
        "num_layers": L,
        "layer_names": wrapped.layer_names,
        "audit_config": asdict(cfg),
        "audit": asdict(section.fields),
        "policy_only_drop": section.fields.policy_only_drop,
        "oracle_drop": section.fields.oracle_drop,
        "scores": {k: v for k, v in scores.items() if not k.endswith("_correct")},
        "fp_indicators": indicators,
    }
    write_atomic(out / "report.md", text)
    write_atomic(out / "report.html", _html(title, text))
    write_atomic(out / "audit.json", json.dumps(result, indent=1))
    return result


def _indicator_section(values: dict, examples: int) -> list[str]:
    """The audited model's full-precision indicators (dptq.indicators), as a report section."""
    lines = [
        "## Full-precision indicators",
        "",
        f"On {examples} clean test images, without quantizing (higher reads as more suspicious; "
        "how well each one separated the board's detrimental networks from the robust ones is "
        "the leaderboard's indicator table).",
        "",
    ]
    rows = [[k, f"{v:.4g}"] for k, v in values.items()]
    return [*lines, *markdown_table(["indicator", "value"], rows, "lr"), ""]


def summary(result: dict) -> str:
    """What ``bench audit`` prints at the end."""
    a = result["audit"]
    pct = lambda c: 100 * c / a["total"]  # noqa: E731
    rand = [pct(c) for c in a["random"]]
    starved = ", ".join(f"{x['layer']} ({x['name']})" for x in a["starved"])
    oracle = a["oracle"]
    return (
        f"audit: FP {pct(a['fp']):.2f}%, adversarial policy {pct(a['adversarial']):.2f}% "
        f"(drop {result['policy_only_drop']:.2f} points), uniform {pct(a['uniform']):.2f}%, "
        f"random {sum(rand) / len(rand):.2f}% (mean of {len(rand)}) at budget "
        f"{result['budget']} ({result['num_layers']} layers); starved layers: {starved}"
        + (
            f"; per-example oracle {pct(oracle):.2f}% (drop {result['oracle_drop']:.2f})"
            if oracle is not None
            else ""
        )
    )
