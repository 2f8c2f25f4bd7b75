"""A leaderboard record from a cell's results: its numbers, how they were obtained, where.

One record per cell (suite, architecture, bit options, budget, seed). Besides the numbers (all on
the test split, read once) it says which split selection saw (``selected_on: val``), which recipe
made it and where the suite departs from that recipe, the protocol it is judged by and the
verdict (``valid`` with its reasons, ``stealthy``), whether the cell is degenerate, and the
environment. A failed cell is a record too, with ``error`` set, no numbers, and an id of its own.
Records are checked and stored by :mod:`bench.store`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from pathlib import Path

from dptq import metrics
from dptq.recipes import deviations

from . import plan
from .protocol import invalid_reasons, is_stealthy, resolve
from .schema import to_plain
from .store import SCHEMA_VERSION, per_example_rel, report_rel


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


def base(suite, cell: plan.Cell, env: dict, retries: list[dict], num_classes: int) -> dict:
    """The fields every record of ``cell`` has, failed or not."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": plan.record_id(suite.name, suite.digest(), cell),
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
        **env,
        "retries": retries,
    }


def failed(base_: dict, error: str) -> dict:
    return {**base_, "id": plan.failed_record_id(base_["id"], error), "error": error}


def success(
    suite, base_: dict, analysed: dict, chosen: dict, f_n_val_acc: float, allocations: int
) -> tuple[dict, dict]:
    """(record, per-example results) of a cell from :func:`bench.stages.analyse`'s output.

    ``chosen``: each mode's search summary (:func:`bench.search.summary`); ``f_n_val_acc``: f_N's
    reference accuracy on the validation split; ``allocations``: how many bit vectors the cell's
    budget admits.
    """
    ev = analysed["evaluation"]
    r, d = ev["pairs"]["f_R"], ev["pairs"]["f_D"]
    stealth = {tag: {k: v for k, v in ev["stealth"][tag].items()} for tag in ("f_R", "f_D")}
    rec = {
        **base_,
        "error": None,
        "selected_on": "val",
        "recipe_deviations": deviations(suite.recipe, suite.pair, suite.kd_stage.tau_squared),
        "searched": sorted(suite.search.ranges()),
        "protocol": resolve(to_plain(suite.protocol), base_["num_classes"]),
        "degenerate": allocations == 1,
        "allocations_log10": math.log10(allocations),
        "num_layers": analysed["num_layers"],
        "f_n_acc": ev["cross_policy"]["f_N"]["FP"],
        "f_n_val_acc": f_n_val_acc,
        "f_r_fp_acc": r["fp_acc"],
        "f_r_q_acc": r["q_acc"],
        "f_r_drop": metrics.drop(r),
        "f_d_fp_acc": d["fp_acc"],
        "f_d_q_acc": d["q_acc"],
        "f_d_drop": metrics.drop(d),
        "gap": metrics.gap(r, d),
        "fp_match": metrics.fp_match(r, d),
        "f_d_random_acc": d["random_acc"],
        "f_d_uniform_acc": d["uniform_acc"],
        "stealth": stealth,
        "worst_non_own_drop": metrics.worst_non_own_drop(stealth["f_D"]),
        "hidden_gap": metrics.hidden_gap(stealth["f_D"]),
        **analysed["fields"],  # what the suite's analyses add (transitory rates, corruptions, ...)
        "cross_policy": ev["cross_policy"],
        "best": {m: s["config"] for m, s in chosen.items()},
        "trials": {m: s["trials"] for m, s in chosen.items()},
        "per_example": per_example_rel(base_["id"]),
        "report": report_rel(base_["id"]),
    }
    for k, v in rec.items():  # strict JSON: a rate of nothing is null, not NaN
        if isinstance(v, float) and not math.isfinite(v):
            rec[k] = None
    rec["invalid_reasons"] = invalid_reasons(rec)
    rec["valid"] = not rec["invalid_reasons"]
    rec["stealthy"] = is_stealthy(rec)
    per_example = {
        mode: {
            "fp_correct": ev["pairs"][tag]["fp_correct"],
            "q_correct": ev["pairs"][tag]["q_correct"],
        }
        for mode, tag in (("robust", "f_R"), ("detrimental", "f_D"))
    }
    return rec, per_example
