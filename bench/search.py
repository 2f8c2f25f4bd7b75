"""A pair search, whatever runs it: its space, its start point, and which trial wins.

The searched settings (``search.delta/alpha/beta``) are sampled by Optuna's TPE sampler seeded
with the suite's seed; the first trial is always the ``pair`` section's own values. The winner is
the trial with the best last score; ties (common on tiny runs) go to the same trial every time:
the smallest delta, then alpha, then beta.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .suite import SEARCHED, Range


@dataclass
class TrialOutcome:
    """One finished (or failed) trial: its settings, its last reported metrics, its checkpoint."""

    params: dict
    metrics: dict
    error: str | None = None
    copy_to: Callable[[Path], None] | None = None  # writes its final checkpoint there


def space(suite) -> tuple[dict[str, Range], dict[str, float]]:
    """(searched ranges, start point: every setting at the ``pair`` section's value)."""
    return suite.search.ranges(), {k: getattr(suite.pair, k) for k in SEARCHED}


def num_trials(suite) -> int:
    return suite.search.num_samples if suite.search.ranges() else 1


def tie_break(candidates: list[TrialOutcome]) -> TrialOutcome:
    """The best score (to 6 decimals); among equals the smallest delta, alpha, beta."""
    return max(
        candidates,
        key=lambda t: (round(t.metrics["score"], 6), *(-t.params[k] for k in SEARCHED)),
    )


def finished(outcomes: list[TrialOutcome]) -> list[TrialOutcome]:
    return [t for t in outcomes if t.error is None and "score" in t.metrics]


def best_of(outcomes: list[TrialOutcome], top_score: float | None = None) -> TrialOutcome | None:
    """The winner; with ``top_score`` (Ray Tune's ``get_best_result``), among the trials that reach it."""
    ok = finished(outcomes)
    if top_score is not None:
        ok = [t for t in ok if round(t.metrics["score"], 6) == round(top_score, 6)] or ok
    return tie_break(ok) if ok else None


def summary(best: TrialOutcome, outcomes: list[TrialOutcome], file: Path) -> dict:
    """What a finished search keeps (``artifacts/pairs/<search>.json``)."""
    return {
        "metrics": {k: v for k, v in best.metrics.items() if isinstance(v, int | float)},
        "config": {k: best.params[k] for k in SEARCHED},
        "trials": len(outcomes),
        "failed_trials": sum(t.error is not None for t in outcomes),
        "file": str(file),
    }
