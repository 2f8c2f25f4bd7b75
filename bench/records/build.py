"""A leaderboard record from a cell's results (:class:`bench.records.record.Record`), with its
environment.

One record per cell (suite, architecture, bit options, budget, seed): the evaluation's exact
counts and each analysis' fields (all on the test split, read once), the split selection
actually read (``selected_on``), the recipe and where the suite departs from it, the protocol
it is judged by, whether the cell is degenerate, the environment, and a per-example file (every
test example's correctness under every allocation) whose hash the record holds. A failed cell is
a record too, with ``error`` set, nothing measured, and an id of its own. Stored by
:mod:`bench.records.store`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import platform
from pathlib import Path

from dptq.recipes import deviations

from .. import names
from ..config.suite import suite_text
from ..config.typed_yaml import to_plain
from .machine import git_state, hardware
from .protocol import resolve
from .record import SCHEMA_VERSION, Record, per_example_bytes, per_example_rel, report_rel
from .verify import make


def environment(threads: int | None = None) -> dict:
    """Versions, hardware and git commit (and whether the tree had changes) of the machine
    writing the record; ``threads``: the torch threads each trial trains with (the driver's own
    count depends on what ran before in its process)."""
    from importlib.metadata import PackageNotFoundError, version

    commit, dirty = git_state(Path(__file__).parent)
    versions = {}
    for pkg in ("torch", "torchvision", "timm", "accelerate", "ray", "optuna"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:  # read from its metadata: nothing is imported for it
            continue
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "versions": versions,
        "hardware": hardware(threads),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def base(
    suite, cell, env: dict, retries: list[dict], num_classes: int, skipped, splits=None
) -> dict:
    """The fields every record of ``cell`` (a :class:`bench.pipeline.plan.Cell`) has, failed or not (``splits``: the size of each
    split read, by name); the suite's own text, resolved (its hash is the record's)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": cell.record_id(suite),
        "suite": suite.name,
        "suite_hash": suite.digest(),
        "seed": cell.seed,
        "dataset": suite.dataset.name,
        "num_classes": num_classes,
        "architecture": cell.student,
        "bit_options": cell.version,
        "options": list(cell.options),
        "budget": cell.budget,
        "recipe": suite.recipe,
        "division": suite.division,
        "attack": suite.attack,
        **env,
        "retries": retries,
        "skipped_images": list(skipped),
        "split_sizes": splits,
        "suite_text": suite_text(suite),
    }


def failed(base_: dict, error: str) -> Record:
    return make({**base_, "id": names.failed_record_id(base_["id"], error), "error": error})


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return obj


def success(
    suite,
    base_: dict,
    result,
    chosen: dict[str, dict],
    f_n: dict,
    allocations: int,
    teacher: dict | None = None,
    analyse_seconds: float | None = None,
) -> tuple[Record, dict]:
    """(record, per-example file) of a cell from :func:`bench.pipeline.stages.analyse`'s result.

    ``chosen``: each mode's stage summary (:func:`bench.pipeline.search.summary`); ``f_n``: the KD
    stage's (its validation accuracy is f_N's reference); ``teacher``: the teacher stage's;
    ``allocations``: how many bit vectors the cell's budget admits; ``analyse_seconds``: the
    analyses' wall time.
    """
    stages = {"teacher": teacher, "kd": f_n, **chosen}
    seconds = {k: float(v["seconds"]) for k, v in stages.items() if v and "seconds" in v}
    if analyse_seconds is not None:
        seconds["analyses"] = round(analyse_seconds, 2)
    splits = {f_n.get("split"), *(s.get("split") for s in chosen.values())}
    counts = result.counts
    data = {
        **base_,
        "error": None,
        "selected_on": "val" if splits == {"val"} else "test",
        "recipe_deviations": deviations(suite.recipe, suite.pair, suite.kd_stage.tau_squared),
        "searched": sorted(suite.search.ranges()),
        "protocol": resolve(to_plain(suite.protocol), base_["num_classes"]),
        "degenerate": allocations == 1,
        "allocations_log10": math.log10(allocations),
        "num_layers": result.num_layers,
        "f_n_val_acc": float(f_n["metrics"]["val_acc"]),
        "evaluation": {
            "split": "test",
            "total": counts.total,
            **{n: _plain(counts.net(n)) for n in ("f_N", "f_R", "f_D")},
        },
        "analyses": {k: _plain(v) for k, v in result.fields.items()},
        "best": {m: s["config"] for m, s in chosen.items()},
        "configuration": {
            m: s["configuration"] for m, s in chosen.items() if s.get("configuration")
        }
        or None,
        "trials": {m: s["trials"] for m, s in chosen.items()},
        "stage_seconds": seconds or None,
        "searches": {m: s["history"] for m, s in chosen.items() if "history" in s} or None,
        "per_example": per_example_rel(base_["id"]),
        "per_example_sha256": hashlib.sha256(per_example_bytes(result.per_example)).hexdigest(),
        "networks": getattr(result, "networks", None),
        "report": report_rel(base_["id"]),
    }
    return make(data), result.per_example
