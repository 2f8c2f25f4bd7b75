"""The analyses' registry: what an analysis reads (:class:`TrainedCell`), what it returns
(:class:`Analysis`), what it declares (:class:`Spec`), and running the chosen ones in order.

An analysis is a function ``fn(cell, out_dir) -> Analysis`` registered by name with
:func:`register_analysis` (timm's pattern: a dict plus a decorator). It declares, once, beside
its code:

- ``fields``: the frozen dataclass of what it adds to a cell's record (None: a report section
  only). The record's schema, the validator of submitted records and the leaderboard's views all
  read this declaration; the analysis returns an instance of it in :attr:`Analysis.fields`.
- ``uses``: analyses whose results it reads when they run too (``quantizer_transfer`` reads the
  audit's adversarial policy); :func:`order` runs those first, whatever the registry's order.

This module and the analyses' own modules import neither torch nor pandas at import time (each
analysis imports what it computes with inside its function), so the record schema and the views
read the declarations without loading the trainers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from ..audit import AuditConfig
    from ..data import DatasetPair
    from ..defenses import DefenseConfig
    from ..evaluate import BitsFn, CellEvaluation
    from ..scores import CellCounts

PAIRS = ("f_R", "f_D")


@dataclass
class TrainedCell:
    """What every analysis reads: f_N, the cell's trained pairs and their one evaluation.

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
        acc: the process's ``accelerate.Accelerator`` (what the audit trains with; None: one is
            made for ``device`` when first needed).
        results: the analyses run so far on this cell, by name (what one leaves for the next).
    """

    nets: dict[str, nn.Module]
    policies: dict[str, nn.Module]
    data: DatasetPair
    options: tuple[int, ...]
    budget: int
    evaluation: CellEvaluation
    f_n_acc: float
    device: str = "cpu"
    seed: int = 0
    max_examples: int | None = 512
    sample_seed: int = 0
    sweep_layers: int | None = None
    corruption_degrees: tuple[int, ...] | None = None
    audit: AuditConfig | None = None
    defenses: DefenseConfig | None = None
    policy: str = "small_cnn"
    policy_options: object = None
    random_allocations: int = 8
    fp_cost_max: float = 2.0
    acc: Any = None
    results: dict[str, Analysis] = field(default_factory=dict)

    @property
    def counts(self) -> CellCounts:
        return self.evaluation.counts()

    def accelerator(self):
        """:attr:`acc`, or (in a notebook) an Accelerator for :attr:`device`."""
        if self.acc is None:
            from ..engine import RunOptions, make_accelerator

            self.acc = make_accelerator(RunOptions(cpu=self.device == "cpu"))
        return self.acc

    def bits(self, net: str) -> BitsFn:
        """The allocation of ``net``'s own policy."""
        from ..evaluate import own_policy_bits

        return own_policy_bits(self.policies[net], self.options, self.budget)


@dataclass
class Analysis:
    """One analysis' output: a report section (title, text, table, figures), its record fields
    (an instance of its declared ``fields``), per-example results for the record's per-example
    file (``{name: "0110..."}``), and ``extras`` for later analyses (not recorded)."""

    title: str
    table: pd.DataFrame | None = None
    text: str = ""
    figures: list[str] = field(default_factory=list)
    fields: Any = None
    per_example: dict[str, str] = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def markdown(self) -> str:
        from ..report import markdown_table

        parts = [f"## {self.title}", ""]
        if self.text:
            parts += [self.text, ""]
        if self.table is not None:
            parts += [markdown_table(self.table), ""]
        parts += [f"![{Path(f).stem}]({f})\n" for f in self.figures]
        return "\n".join(parts)


AnalysisFn = Callable[[TrainedCell, Path], Analysis]


@dataclass(frozen=True)
class Spec:
    """A registered analysis: its function, the record fields it declares, what it reads."""

    name: str
    run: AnalysisFn
    fields: type | None = None
    uses: tuple[str, ...] = ()

    @property
    def doc(self) -> str:
        return (self.run.__doc__ or "").strip().split("\n")[0]


ANALYSES = Registry("analysis")


def register_analysis(name: str, *, fields: type | None = None, uses: Iterable[str] = ()):
    """Decorator adding ``fn(cell, out_dir) -> Analysis`` to :data:`ANALYSES` (see the module
    docstring for ``fields`` and ``uses``)."""
    return ANALYSES.decorator(name, lambda fn: Spec(name, fn, fields, tuple(uses)))


def order(names: Iterable[str]) -> list[str]:
    """``names`` in the order they run: registry order, except that an analysis runs after every
    chosen analysis it ``uses``. Unknown names fail listing the known ones."""
    chosen = list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analyses {unknown}; known: {list(ANALYSES)}")
    todo = [n for n in ANALYSES if n in chosen]
    done: list[str] = []
    while todo:
        ready = next(n for n in todo if all(u in done or u not in todo for u in ANALYSES[n].uses))
        done.append(ready)
        todo.remove(ready)
    return done


def run_analyses(cell: TrainedCell, names, out: Path, progress=None) -> dict[str, Analysis]:
    """The named analyses in :func:`order`, written under ``out``; returns them by name.

    ``progress(name, index, total, seconds)``, when given, is called as each analysis starts
    (``seconds``: time spent on the earlier ones) and once more at the end with ``name=None``.
    """
    import torch

    chosen = order(names)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, name in enumerate(chosen):
            if progress is not None:
                progress(name, i, len(chosen), time.perf_counter() - t0)
            result = ANALYSES[name].run(cell, out)
            spec = ANALYSES[name]
            if result.fields is not None and (
                spec.fields is None or not isinstance(result.fields, spec.fields)
            ):
                raise TypeError(f"analysis {name!r} returned fields that are not its declared ones")
            cell.results[name] = result
    if progress is not None:
        progress(None, len(chosen), len(chosen), time.perf_counter() - t0)
    return {name: cell.results[name] for name in chosen}


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
    """Run the named analyses, write ``out/report.md`` (and ``report.html``); returns their
    results by name (:class:`Analysis`). ``progress``: as :func:`run_analyses`."""
    from ..io import write_atomic

    results = run_analyses(cell, names, out, progress)
    lines = [f"# {title}", "", f"Budget {cell.budget} bits.", ""]
    lines += [a.markdown() for a in results.values()]
    text = "\n".join(lines)
    write_atomic(out / "report.md", text)
    write_atomic(out / "report.html", _html(title, text))
    return results
