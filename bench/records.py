"""A leaderboard record from a cell's results: its numbers, its recipe's settings, its environment.

One record per cell (suite, architecture, bit options, budget). A failed cell is a record too,
with ``error`` set, no numbers, and an id of its own. Records are checked and stored by
:mod:`bench.store`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from pathlib import Path

from dptq import metrics

from . import plan
from .store import SCHEMA_VERSION, per_example_rel


def environment() -> dict:
    """Versions, hardware and git commit of the machine writing the record."""
    import accelerate
    import optuna
    import ray
    import timm
    import torch
    import torchvision

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "git_commit": commit,
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
            "accelerate": accelerate.__version__,
            "ray": ray.__version__,
            "optuna": optuna.__version__,
        },
        "hardware": {"cpu": platform.machine(), "cores": os.cpu_count(), "gpu": gpu},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def base(suite, cell: plan.Cell, env: dict, retries: list[dict]) -> dict:
    """The fields every record of ``cell`` has, failed or not."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": plan.record_id(suite.name, suite.digest(), cell),
        "suite": suite.name,
        "suite_hash": suite.digest(),
        "seed": suite.seed,
        "dataset": suite.dataset.name,
        "architecture": cell.student,
        "bit_options": cell.version,
        "options": list(cell.options),
        "budget": cell.budget,
        **env,
        "retries": retries,
    }


def failed(base_: dict, error: str) -> dict:
    return {**base_, "id": plan.failed_record_id(base_["id"], error), "error": error}


def success(base_: dict, analysed: dict, chosen: dict, f_n_acc: float) -> tuple[dict, dict]:
    """(record, per-example results) of a cell from :func:`bench.stages.analyse`'s output.

    ``chosen``: each mode's search summary (:func:`bench.search.summary`).
    """
    pairs = analysed["evaluation"]["pairs"]
    r, d = pairs["f_R"], pairs["f_D"]
    fields = analysed["fields"]
    rec = {
        **base_,
        "error": None,
        "num_layers": analysed["num_layers"],
        "f_n_acc": f_n_acc,
        "f_r_fp_acc": r["fp_acc"],
        "f_r_q_acc": r["q_acc"],
        "f_r_drop": metrics.drop(r),
        "f_d_fp_acc": d["fp_acc"],
        "f_d_q_acc": d["q_acc"],
        "f_d_drop": metrics.drop(d),
        "gap": metrics.gap(r, d),
        "fp_match": metrics.fp_match(r, d),
        "f_d_random_acc": d["random_acc"],
        **fields,  # what the suite's analyses add (transitory rates, corruption means, ...)
        "cross_policy": analysed["evaluation"]["cross_policy"],
        "best": {m: s["config"] for m, s in chosen.items()},
        "trials": {m: s["trials"] for m, s in chosen.items()},
        "per_example": per_example_rel(base_["id"]),
    }
    for k, v in rec.items():  # strict JSON: a rate of nothing is null, not NaN
        if isinstance(v, float) and not math.isfinite(v):
            rec[k] = None
    per_example = {
        mode: {"fp_correct": pairs[tag]["fp_correct"], "q_correct": pairs[tag]["q_correct"]}
        for mode, tag in (("robust", "f_R"), ("detrimental", "f_D"))
    }
    return rec, per_example
