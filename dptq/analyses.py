"""The paper's analyses, registered by name: each maps a trained cell to a table (+ figure).

A *cell* is one (network, bit options, budget, seed): f_N and its trained robust and detrimental
pairs, with one evaluation on the test split (:func:`dptq.evaluate.evaluate_cell`) that every
analysis reads instead of evaluating the pairs again. ``ANALYSES`` is the registry (timm's
pattern: a dict plus a decorator); a suite's ``analyses:`` picks exactly which run.
:func:`write_report` runs the chosen ones and writes ``report.md`` with their PNGs.

| name | paper | figure |
|---|---|---|
| ``pair_scores`` | Table 1 | - |
| ``transitory`` | Table 2 | ``transitory.png`` (contact sheet) |
| ``cross_policy`` | Table 3 | ``cross_policy.png`` |
| ``layer_sweep`` | Fig. 2 | ``layer_sweep.png`` |
| ``histograms`` | Fig. 3 | ``histograms.png`` |
| ``corruptions`` | Fig. 4 | ``corruptions.png`` |
| ``trigger`` | not in the paper: how narrow pi_D's trigger is | ``trigger.png`` |
| ``audit`` | not in the paper: a policy-only attack on f_N | ``audit_bits.png``, ``audit_sweep.png`` |
| ``quantizer_transfer`` | not in the paper: the gap under other quantizers | ``transfer.png`` |
| ``defenses`` | not in the paper: what a deployer can do | ``defenses.png`` |
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from . import metrics, report
from .audit import AuditConfig
from .data import DatasetPair
from .defenses import DefenseConfig
from .evaluate import BitsFn, own_policy_bits
from .io import write_atomic

PAIRS = ("f_R", "f_D")


@dataclass
class TrainedCell:
    """What every analysis reads.

    Attributes:
        nets: ``{"f_N", "f_R", "f_D"}`` networks (eval mode).
        policies: ``{"f_R": pi_R, "f_D": pi_D}``, each pair's own policy.
        evaluation: :func:`dptq.evaluate.evaluate_cell` on the test split.
        f_n_acc: f_N's reference accuracy (the one the search's objective used).
        max_examples: bound on the examples per split of the sweeps, histograms and corruptions
            (a seeded, stratified subset drawn with ``sample_seed``; None: all).
        sweep_layers: at most this many layers per layer sweep, evenly spaced (None: all).
        corruption_degrees: the corruption degrees evaluated (None: 0..5).
        audit, defenses: settings of the ``audit`` and ``defenses`` analyses; ``policy`` and
            ``policy_options`` build the audit's adversarial policy.
        fp_cost_max: a defense costing f_D more than this at full precision (points) does not
            count as the best one.
        extras: what one analysis leaves for the next (the audit's policy, for the transfer).
    """

    nets: dict[str, nn.Module]
    policies: dict[str, nn.Module]
    data: DatasetPair
    options: tuple[int, ...]
    budget: int
    evaluation: dict
    f_n_acc: float
    device: str = "cpu"
    seed: int = 0
    max_examples: int | None = 512
    sample_seed: int = 0
    sweep_layers: int | None = None
    corruption_degrees: tuple[int, ...] | None = None
    audit: AuditConfig = field(default_factory=AuditConfig)
    defenses: DefenseConfig = field(default_factory=DefenseConfig)
    policy: str = "small_cnn"
    policy_options: object = None
    random_allocations: int = 8
    fp_cost_max: float = 2.0
    extras: dict = field(default_factory=dict)

    def bits(self, net: str) -> BitsFn:
        """The allocation of ``net``'s own policy."""
        return own_policy_bits(self.policies[net], self.options, self.budget)


@dataclass
class Analysis:
    """One analysis' output: a report section (title, text, table, figures) and record fields."""

    title: str
    table: pd.DataFrame | None = None
    text: str = ""
    figures: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)

    def markdown(self) -> str:
        parts = [f"## {self.title}", ""]
        if self.text:
            parts += [self.text, ""]
        if self.table is not None:
            parts += [report.markdown_table(self.table), ""]
        parts += [f"![{Path(f).stem}]({f})\n" for f in self.figures]
        return "\n".join(parts)


AnalysisFn = Callable[[TrainedCell, Path], Analysis]
ANALYSES: dict[str, AnalysisFn] = {}


def register_analysis(name: str):
    """Decorator adding ``fn(cell, out_dir) -> Analysis`` to :data:`ANALYSES`."""

    def deco(fn: AnalysisFn) -> AnalysisFn:
        ANALYSES[name] = fn
        return fn

    return deco


@register_analysis("pair_scores")
def pair_scores(cell: TrainedCell, out: Path) -> Analysis:
    pairs = cell.evaluation["pairs"]
    table = metrics.pair_scores(pairs["f_R"], pairs["f_D"], cell.f_n_acc)
    return Analysis("Table 1: pair scores (accuracy %, delta = quantized - FP)", table)


@register_analysis("transitory")
def transitory(cell: TrainedCell, out: Path) -> Analysis:
    r, d = cell.evaluation["pairs"]["f_R"], cell.evaluation["pairs"]["f_D"]
    trans = metrics.transitory_points(r["fp_correct"], d["fp_correct"], d["q_correct"])
    test = cell.data.test
    shown = trans["indices"][:64]
    images = {i: test[i][0] for i in shown}
    labels = {i: int(test[i][1]) for i in shown}
    report.contact_sheet(images, trans["indices"], out / "transitory.png", labels)
    text = (
        f"{trans['count']} test examples: {trans['rate_of_test']:.2f}% of the test set, "
        f"{trans['rate_of_both_correct']:.2f}% of the examples both FP models classify correctly."
    )
    record = {
        "transitory_rate_test": trans["rate_of_test"],
        "transitory_rate_both_correct": trans["rate_of_both_correct"],
    }
    return Analysis("Table 2: transitory points", None, text, ["transitory.png"], record)


@register_analysis("cross_policy")
def cross_policy(cell: TrainedCell, out: Path) -> Analysis:
    matrix = metrics.cross_policy_matrix(cell.evaluation["cross_policy"])
    report.plot_cross_policy(matrix, out / "cross_policy.png")
    return Analysis("Table 3: cross-policy accuracy (%)", matrix, figures=["cross_policy.png"])


@register_analysis("layer_sweep")
def layer_sweep(cell: TrainedCell, out: Path) -> Analysis:
    sweeps = [
        metrics.layer_sweep(
            cell.nets[k],
            cell.bits(k),
            cell.data,
            cell.device,
            max_examples=cell.max_examples,
            sample_seed=cell.sample_seed,
            max_layers=cell.sweep_layers,
        ).assign(network=k)
        for k in PAIRS
    ]
    sweep = pd.concat(sweeps, ignore_index=True)
    write_atomic(out / "layer_sweep.csv", sweep.to_csv(index=False))
    report.plot_layer_sweep(sweep, out / "layer_sweep.png")
    inflect = pd.concat(
        [metrics.inflection_layers(s).assign(network=s.network.iloc[0]) for s in sweeps]
    ).reset_index(drop=True)
    text = "Inflection layers (largest change between neighbouring layers):"
    return Analysis("Fig. 2: layer sweeps", inflect, text, ["layer_sweep.png"])


@register_analysis("histograms")
def histograms(cell: TrainedCell, out: Path) -> Analysis:
    hists, sparsity = {}, {}
    for k in PAIRS:
        hists[k], sparsity[k] = metrics.activation_histograms(
            cell.nets[k], cell.bits(k), cell.data, cell.device, cell.max_examples, cell.sample_seed
        )
    report.plot_histograms(hists, sparsity, out / "histograms.png")
    sp = (
        sparsity["f_R"]
        .merge(sparsity["f_D"], on="layer", suffixes=(" f_R", " f_D"))
        .set_index("layer")
    )
    write_atomic(out / "sparsity.csv", sp.to_csv())
    title = "Fig. 3: activation sparsity (% of values in the zero bin)"
    return Analysis(title, sp, figures=["histograms.png"])


@register_analysis("corruptions")
def corruptions(cell: TrainedCell, out: Path) -> Analysis:
    models = {}
    for k in PAIRS:
        models[f"{k} FP"] = (cell.nets[k], None)
        models[f"{k} quantized"] = (cell.nets[k], cell.bits(k))
    corr = metrics.corruption_robustness(
        models,
        cell.data,
        degrees=cell.corruption_degrees or metrics.DEGREES,
        device=cell.device,
        seed=cell.seed,
        max_examples=cell.max_examples,
        sample_seed=cell.sample_seed,
    )
    write_atomic(out / "corruptions.csv", corr.to_csv(index=False))
    report.plot_corruptions(corr, out / "corruptions.png")
    summary = metrics.corruption_summary(corr)
    record = {"corruption_mean_acc": summary["mean corrupted acc"].to_dict()}
    return Analysis(
        "Fig. 4: corruption robustness", summary, figures=["corruptions.png"], record=record
    )


@register_analysis("trigger")
def trigger(cell: TrainedCell, out: Path) -> Analysis:
    curves = pd.concat(
        [
            metrics.trigger_curves(
                cell.nets[k],
                cell.bits(k),
                cell.data,
                cell.options,
                cell.budget,
                cell.device,
                seed=cell.seed,
                max_examples=cell.max_examples,
                sample_seed=cell.sample_seed,
            ).assign(network=k)
            for k in PAIRS
        ],
        ignore_index=True,
    )
    write_atomic(out / "trigger.csv", curves.to_csv(index=False))
    report.plot_trigger(curves, out / "trigger.png")
    fp = cell.evaluation["pairs"]["f_D"]["fp_acc"]
    radius = metrics.trigger_radius(curves[curves.network == "f_D"], fp)
    table = curves.pivot_table(index=["family", "step"], columns="network", values="accuracy")
    shown = "never within the distances tried" if radius is None else f"{radius:.2f} bits"
    text = (
        "Accuracy (%) as each example's bits move from its own policy's allocation, the budget "
        f"held exactly. f_D recovers half of its drop after {shown} moved per example."
    )
    return Analysis(
        "Trigger narrowness", table.reset_index(), text, ["trigger.png"], {"trigger_radius": radius}
    )


def run_analyses(cell: TrainedCell, names, out: Path, progress=None) -> list[Analysis]:
    """The named analyses, in the registry's order (Table 1..3, Fig. 2..4), written under ``out``.

    ``progress(name, index, total, seconds)``, when given, is called as each analysis starts
    (``seconds``: time spent on the earlier ones) and once more at the end with ``name=None``.
    """
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analyses {unknown}; known: {list(ANALYSES)}")
    out.mkdir(parents=True, exist_ok=True)
    chosen = [(name, fn) for name, fn in ANALYSES.items() if name in names]
    results, t0 = [], time.perf_counter()
    with torch.no_grad():
        for i, (name, fn) in enumerate(chosen):
            if progress is not None:
                progress(name, i, len(chosen), time.perf_counter() - t0)
            results.append(fn(cell, out))
    if progress is not None:
        progress(None, len(chosen), len(chosen), time.perf_counter() - t0)
    return results


def _html(title: str, text: str) -> str:
    """The report as a page (Python-Markdown, tables extension): what the leaderboard links to."""
    import html

    import markdown

    body = markdown.markdown(text, extensions=["tables"])
    style = "body{font-family:sans-serif;margin:2em;max-width:1100px} td,th{padding:2px 8px}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{style}</style></head><body>\n{body}\n</body></html>\n"
    )


def write_report(cell: TrainedCell, names, out: Path, title: str, progress=None) -> dict:
    """Run the named analyses, write ``out/report.md`` (and ``report.html``); returns the record
    fields they produce. ``progress``: as :func:`run_analyses`."""
    results = run_analyses(cell, names, out, progress)
    lines = [f"# {title}", "", f"Budget {cell.budget} bits.", ""]
    lines += [a.markdown() for a in results]
    text = "\n".join(lines)
    write_atomic(out / "report.md", text)
    write_atomic(out / "report.html", _html(title, text))
    fields: dict = {}
    for a in results:
        fields.update(a.record)
    return fields


from . import deployer  # noqa: E402, F401  (registers audit, quantizer_transfer, defenses)
