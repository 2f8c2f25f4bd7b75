"""Every name and path a run uses, spelled here once (CONVENTIONS 14).

A **stage** is one unit of training the runner schedules: ``teacher-s<seed>``, ``kd-<student>-s<seed>``
and ``pair-<cell>-<mode>`` (a cell's robust or detrimental pair search). A stage's name is its Ray
Tune experiment, its trial folder, its summary file, and what a failure or retry names; code and
tests build these with the functions below instead of re-typing an f-string.

Run folder ``RUN`` (:class:`Layout`): ``suite.yaml`` (the resolved suite), ``trials/<stage>/``
(each trial's checkpoint, written every epoch: the one copy of it; a finished stage's winning
trial is its artifact), ``artifacts/<stage>.json`` (a finished stage's summary: its winner, its
settings; written last, so its presence marks the stage done), ``tune/`` (Ray Tune's
experiments: results and searcher state, no checkpoints; Ray runs only), ``reports/<id>/``
(tables and figures), ``records/<id>.json`` and ``per_example/<id>.json`` (the run's records, laid
out as on the leaderboard), ``board/`` (the views of the run's rows beside the leaderboard's),
``events.jsonl`` (starts, restores, retries, failures).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

RUNS = Path("runs")  # where a run's folder goes by default: runs/<suite name>
RECORDS, PER_EXAMPLE, REPORTS = "records", "per_example", "reports"  # a board's folders
REPRODUCTIONS = "reproductions"  # a board's reproduction entries (bench.records.reproductions)
REEVALUATIONS = "reevaluations"  # a board's re-evaluation entries (bench.records.reevaluations)


def figure_name(dataset: str) -> str:
    """A board's figure of a dataset's architectures under the standard attack."""
    return f"architectures_{dataset}.png"


def roc_name(dataset: str) -> str:
    """A board's figure of a dataset's best full-precision indicator (its ROC)."""
    return f"indicator_roc_{dataset}.png"


def run_folder(suite_name: str) -> Path:
    """A suite's default run folder (``runs/<name>``)."""
    return RUNS / suite_name


def slug(name: str) -> str:
    """A student's name as a file-name part (``pkg.mod:fn`` -> ``pkg_mod_fn``)."""
    return name.replace(":", "_").replace(".", "_").replace("/", "_")


def teacher_name(seed: int) -> str:
    """The teacher stage of ``seed``."""
    return f"teacher-s{seed}"


def kd_name(student: str, seed: int) -> str:
    """The KD stage of ``student`` and ``seed`` (f_N)."""
    return f"kd-{slug(student)}-s{seed}"


def cell_key(student: str, version: str, budget: int, seed: int) -> str:
    """A cell (one leaderboard row) as a name part."""
    return f"{slug(student)}-{version}-{budget}-s{seed}"


def pair_name(key: str, mode: str) -> str:
    """The pair search of mode ``mode`` of the cell ``key``."""
    return f"pair-{key}-{mode}"


def record_id(suite_name: str, digest: str, key: str) -> str:
    return f"{suite_name}/{digest}/{key}"


def failed_record_id(base_id: str, error: str) -> str:
    """A failed row's own id, so a later successful run of the same suite still adds its row."""
    return f"{base_id}/failed-{hashlib.sha256(error.encode()).hexdigest()[:8]}"


def trial_key(stage: str, params: dict) -> str:
    """A trial's checkpoint name: its stage and sampled values, not a trial id.

    A driver killed between a suggestion and the searcher's next snapshot gets the same suggestion
    again after the restart; naming the file by the values lets that trial resume from the epochs
    it already trained.
    """
    key = {"group": stage, **{k: params[k] for k in sorted(params)}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Layout:
    """Where a run keeps what (module docstring)."""

    root: Path

    @property
    def suite_file(self) -> Path:
        return self.root / "suite.yaml"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    def trial(self, stage: str, params: dict) -> Path:
        """A trial's checkpoint: ``trials/<stage>/<key>.pt`` (:func:`trial_key`), or
        ``trials/<stage>/trial.pt`` for a stage with nothing searched (teacher, KD)."""
        return self.trials / stage / (f"{trial_key(stage, params)}.pt" if params else "trial.pt")

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def summary(self, stage: str) -> Path:
        """A finished stage's summary (written last: its presence marks the stage done)."""
        return self.artifacts / f"{stage}.json"

    def artifact(self, stage: str) -> Path | None:
        """A finished stage's checkpoint (its winning trial's file); None while unfinished."""
        if not self.summary(stage).exists():
            return None
        return self.root / json.loads(self.summary(stage).read_text())["file"]

    def report(self, rid: str) -> Path:
        """A record's report folder (``reports/<id>/``, as on the leaderboard)."""
        return self.root / REPORTS / rid

    @property
    def board(self) -> Path:
        return self.root / "board"
