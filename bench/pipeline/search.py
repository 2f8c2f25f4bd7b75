"""A stage's search, whatever runs it: its space, its start point, and which trial wins.

Every stage is a search: the teacher and KD stages have one trial and nothing searched; a pair
search samples the searched settings (``search.delta/alpha/beta/stealth``) with Optuna's TPE
sampler seeded with the suite's seed, its first trial always the ``pair`` section's own values,
or runs a grid of whole pair configurations (``search.grid``, the closed division's portfolio),
one trial each, in order. The winner is picked here, once, for both executors (:func:`best_of`):
the trial with the best last score; ties (common on tiny runs) go to the same trial every time:
the smallest delta, then alpha, beta, stealth, then the earlier trial (a grid's order). (Ray
Tune's ``ResultGrid.get_best_result`` has no such tie-break, and the records of ``--local`` and
of Ray must be the same.)
"""

from __future__ import annotations

from pathlib import Path

from ..config.sections import SEARCHED, Range
from ..executors.base import TrialOutcome


def space(suite) -> tuple[dict[str, Range], dict[str, float]]:
    """A pair search's (searched ranges, start point: every setting at the ``pair`` section's
    value)."""
    return suite.search.ranges(), {k: getattr(suite.pair, k) for k in SEARCHED}


def grid(suite, mode: str) -> tuple[str, ...]:
    """The names of ``mode``'s grid configurations, in order (empty: no grid)."""
    return tuple(c.name for c in suite.search.configurations(mode))


def num_trials(suite, mode: str = "detrimental") -> int:
    """Trials of one pair search of ``mode``."""
    if grid(suite, mode):
        return len(grid(suite, mode))
    return suite.search.num_samples if suite.search.ranges() else 1


def finished(outcomes: list[TrialOutcome]) -> list[TrialOutcome]:
    return [t for t in outcomes if t.error is None and t.file is not None]


def best_of(outcomes: list[TrialOutcome]) -> TrialOutcome | None:
    """The winner (module docstring); None when no trial finished."""
    ok = finished(outcomes)
    if not ok:
        return None
    order = {id(t): i for i, t in enumerate(outcomes)}
    return max(
        ok,
        key=lambda t: (
            round(t.metrics.get("score", 0.0), 6),
            *(-t.params[k] for k in SEARCHED if k in t.params),
            -order[id(t)],
        ),
    )


def summary(best: TrialOutcome, outcomes: list[TrialOutcome], root: Path) -> dict:
    """What a finished stage keeps (``artifacts/<stage>.json``): the winning trial's file
    (relative to the run folder), settings, last metrics and the split they were measured on;
    every trial's searched settings, last score, epochs, wall seconds (or its failure), in the
    order run; the search's wall seconds (its trials' sum)."""
    rows = [trial_row(t) for t in outcomes]
    return {
        "file": str(best.file.relative_to(root)),
        "metrics": {k: v for k, v in best.metrics.items() if isinstance(v, int | float)},
        "split": best.metrics.get("split"),
        "config": {k: best.params[k] for k in SEARCHED if k in best.params},
        "configuration": best.params.get("configuration"),
        "trials": len(outcomes),
        "failed_trials": sum(t.error is not None for t in outcomes),
        "history": rows,
        "seconds": round(sum(r["seconds"] or 0.0 for r in rows), 2),
    }


def trial_row(t: TrialOutcome) -> dict:
    """One trial as a record lists it (:class:`bench.records.record.TrialRow`)."""
    number = lambda k: float(t.metrics[k]) if isinstance(t.metrics.get(k), int | float) else None  # noqa: E731
    epoch = t.metrics.get("epoch")
    row = {
        "config": {k: float(t.params[k]) for k in SEARCHED if k in t.params},
        "score": number("score"),
        "epochs": int(epoch) if isinstance(epoch, int | float) else None,
        "seconds": number("seconds"),
        "failed": t.error is not None,
        "selected_epoch": int(t.metrics["selected_epoch"])
        if "selected_epoch" in t.metrics
        else None,
    }
    if "configuration" in t.params:  # a grid's trial: its name and its validation figures
        row.update(
            configuration=t.params["configuration"],
            val_drop=number("drop"),
            val_fp_acc=number("fp_acc"),
        )
    return row
