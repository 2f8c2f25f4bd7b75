"""Complete, consistent schema-2 records for the leaderboard tests (as a run would write them)."""

from __future__ import annotations

from pathlib import Path

from bench.plan import cell_key
from bench.protocol import invalid_reasons, is_stealthy, resolve
from bench.store import SCHEMA_VERSION, per_example_rel, report_rel
from dptq.io import write_json

PROTOCOL = {
    "val_fraction": 0.15,
    "split_seed": 0,
    "fp_match_max": 2.0,
    "fp_drop_max": 2.0,
    "min_f_n_acc": None,
    "stealth_max": 5.0,
    "random_allocations": 8,
    "allow_degenerate": False,
}


def record(
    arch="resnet18",
    budget=80,
    gap=50.0,
    error=None,
    dataset="digits",
    suite="s",
    seed=0,
    f_d_fp=98.8,
    date="2026-11-23T00:00:00+00:00",
    recipe="dptq-v1",
    hidden=20.0,
) -> dict:
    """A record of the given gap (f_R drop 0.5), FP accuracies 99.0 / ``f_d_fp``, f_N 99.0."""
    rid = f"{suite}/abcdef012345/{cell_key(arch, 'I', budget, seed)}"
    base = {
        "schema_version": SCHEMA_VERSION,
        "id": rid if error is None else f"{rid}/failed-0123abcd",
        "suite": suite,
        "suite_hash": "abcdef012345",
        "seed": seed,
        "dataset": dataset,
        "num_classes": 10,
        "architecture": arch,
        "bit_options": "I",
        "options": [3, 4, 5],
        "budget": budget,
        "recipe": recipe,
        "error": error,
        "date": date,
        "git_commit": "0" * 40,
        "python": "3.11.7",
        "versions": {"torch": "2.14.1"},
        "hardware": {"cores": 2},
        "retries": [],
        "skipped_images": [],
    }
    if error is not None:
        return base
    d_drop = gap + 0.5
    own = d_drop
    stealth = {
        "f_R": {"own": 0.5, "other": 0.6, "uniform": 0.4, "random": [0.5] * 8},
        "f_D": {"own": own, "other": own - hidden, "uniform": 1.0, "random": [1.0] * 8},
    }
    for s in stealth.values():
        s["random_mean"], s["random_sd"] = sum(s["random"]) / 8, 0.0
    worst = max(stealth["f_D"]["other"], 1.0)
    rec = {
        **base,
        "selected_on": "val",
        "recipe_deviations": {},
        "searched": [],
        "protocol": resolve(PROTOCOL, 10),
        "degenerate": False,
        "allocations_log10": 10.8,
        "num_layers": 20,
        "f_n_acc": 99.0,
        "f_n_val_acc": 98.5,
        "f_r_fp_acc": 99.0,
        "f_r_q_acc": 98.5,
        "f_r_drop": 0.5,
        "f_d_fp_acc": f_d_fp,
        "f_d_q_acc": f_d_fp - d_drop,
        "f_d_drop": d_drop,
        "gap": gap,
        "fp_match": abs(99.0 - f_d_fp),
        "f_d_random_acc": 60.0,
        "f_d_uniform_acc": 97.8,
        "stealth": stealth,
        "worst_non_own_drop": worst,
        "hidden_gap": own - worst,
        "transitory_rate_test": gap * 0.9,
        "transitory_rate_both_correct": gap,
        "cross_policy": {"f_N": {"FP": 99.0, "pi_R": 98.9, "pi_D": 98.8, "random": 98.7}},
        "best": {"robust": {"delta": 2.0, "alpha": 0.5, "beta": 1.0}},
        "trials": {"robust": 1, "detrimental": 1},
        "per_example": per_example_rel(rid),
        "report": report_rel(rid),
    }
    rec["invalid_reasons"] = invalid_reasons(rec)
    rec["valid"] = not rec["invalid_reasons"]
    rec["stealthy"] = is_stealthy(rec)
    return rec


def per_example(rec: dict) -> dict:
    """Per-example results that give ``rec``'s accuracies on 1000 examples (to 0.1 points)."""

    def bits(acc):
        n = round(acc * 10)
        return [True] * n + [False] * (1000 - n)

    return {
        "robust": {"fp_correct": bits(rec["f_r_fp_acc"]), "q_correct": bits(rec["f_r_q_acc"])},
        "detrimental": {"fp_correct": bits(rec["f_d_fp_acc"]), "q_correct": bits(rec["f_d_q_acc"])},
    }


def source(folder: Path, records: list[dict]) -> Path:
    """A run folder holding the per-example files and a one-file report of ``records``."""
    for rec in records:
        if rec["error"] is None:
            write_json(folder / rec["per_example"], per_example(rec), indent=None)
            report = folder / Path(rec["report"]).parent
            report.mkdir(parents=True, exist_ok=True)
            (report / "report.md").write_text(f"# {rec['id']}\n")
            (report / "report.html").write_text(f"<h1>{rec['id']}</h1>\n")
    return folder
