"""Leaderboard records: one per (suite, architecture, bit options, budget), as JSON lines.

A record holds every headline number, the best delta/alpha/beta of each pair search, and the
environment (suite hash, seed, git commit, package versions, hardware, date). A failed search is a
record too, with ``error`` set and no numbers. Appends take an exclusive lock and write one
complete line, so two runs finishing at once keep both records; a record already present (same
``id``) is never written twice.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
import subprocess
from dataclasses import replace
from pathlib import Path

import torch

SCHEMA_VERSION = 1


def environment() -> dict:
    """Versions, hardware and git commit of the machine writing the record."""
    import accelerate
    import optuna
    import ray
    import timm
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
    }


def append_records(records: list[dict], path: Path) -> int:
    """Append records whose ``id`` is not in ``path`` yet; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            seen = set()
            for line in fh:
                try:
                    seen.add(json.loads(line)["id"])
                except (ValueError, KeyError, TypeError):
                    continue  # a broken line is reported by the leaderboard loader, not rewritten
            new = [r for r in records if r["id"] not in seen]
            if new:
                fh.seek(0, os.SEEK_END)
                fh.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in new))
                fh.flush()
                os.fsync(fh.fileno())
            return len(new)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_records(
    suite,
    groups,
    best: dict,
    f_n_acc: dict,
    kd_files: dict,
    data,
    run_dir: Path,
    failed: list,
    out=print,
) -> list[dict]:
    """Analyse each (student, options, budget)'s best pairs and write its record."""
    from dptq.engine import RunOptions, load_checkpoint, make_accelerator
    from dptq.pipeline import cross_policy
    from dptq.policy import create_policy
    from dptq.report import write_pair_report
    from dptq.train import evaluate_pair, own_policy_bits

    from .runner import load_f_n

    acc = make_accelerator(RunOptions(cpu=suite.resources.gpus == 0))
    env, now = environment(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    keys = dict.fromkeys((g.student, g.version, g.options, g.budget, g.key) for g in groups)
    records = []
    for student, version, options, budget, key in keys:
        base = {
            "schema_version": SCHEMA_VERSION,
            "id": f"{suite.name}/{suite.digest()}/{key}",
            "suite": suite.name,
            "suite_hash": suite.digest(),
            "seed": suite.seed,
            "dataset": suite.dataset.name,
            "architecture": student,
            "bit_options": version,
            "options": list(options),
            "budget": budget,
            "run_dir": str(run_dir),
            "date": now,
            **env,
        }
        names = {m: f"pair-{key}-{m}" for m in ("robust", "detrimental")}
        missing = [m for m, n in names.items() if n not in best]
        if student not in kd_files or missing:
            why = [f["error"] for f in failed if f["stage"] in (f"kd {student}", *names.values())]
            records.append(
                {**base, "error": why[0] if why else f"no finished {', '.join(missing)} pair"}
            )
            continue
        f_n = load_f_n(suite, student, kd_files[student], data.num_classes).to(acc.device)
        nets, pols, evals = {"f_N": f_n}, {}, {}
        for mode, name in names.items():
            ck = load_checkpoint(Path(best[name]["file"]), f"pair-{mode}")
            f = load_f_n(suite, student, kd_files[student], data.num_classes).to(acc.device)
            f.load_state_dict(ck["modules"]["student"])
            pi = create_policy(suite.policy, f.num_layers, len(options), **suite.policy_options).to(
                acc.device
            )
            pi.load_state_dict(ck["modules"]["policy"])
            tag = "f_R" if mode == "robust" else "f_D"
            nets[tag], pols[mode] = f.eval(), pi.eval()
            evals[mode] = evaluate_pair(
                f,
                pi,
                data,
                replace(suite.pair, mode=mode, options=options),
                budget,
                acc,
                seed=suite.seed,
            )
        cross = cross_policy(
            f_n,
            {m: (nets["f_R" if m == "robust" else "f_D"], pols[m], budget) for m in pols},
            data,
            options,
            acc,
            suite.seed,
        )
        bits = {
            "f_R": own_policy_bits(pols["robust"], options, budget),
            "f_D": own_policy_bits(pols["detrimental"], options, budget),
        }
        report_dir = run_dir / "reports" / key
        kept = write_pair_report(
            report_dir,
            nets,
            bits,
            evals["robust"],
            evals["detrimental"],
            f_n_acc[student],
            cross,
            data,
            f"{student} on {suite.dataset.name}, options {version} "
            f"{list(options)}, budget {budget}",
            analyses=[
                a for a in suite.analyses if a in ("layer_sweep", "histograms", "corruptions")
            ],
            device=str(acc.device),
            max_examples=suite.analysis_examples,
            seed=suite.seed,
        )
        r, d = evals["robust"], evals["detrimental"]
        per_example = report_dir / "per_example.json"
        per_example.write_text(
            json.dumps(
                {
                    m: {"fp_correct": evals[m]["fp_correct"], "q_correct": evals[m]["q_correct"]}
                    for m in evals
                }
            )
        )
        rec = {
            **base,
            "error": None,
            "num_layers": f_n.num_layers,
            "f_n_acc": f_n_acc[student],
            "f_r_fp_acc": r["fp_acc"],
            "f_r_q_acc": r["q_acc"],
            "f_r_drop": r["drop"],
            "f_d_fp_acc": d["fp_acc"],
            "f_d_q_acc": d["q_acc"],
            "f_d_drop": d["drop"],
            "gap": d["drop"] - r["drop"],
            "fp_match": abs(r["fp_acc"] - d["fp_acc"]),
            "f_d_random_acc": d["random_acc"],
            "transitory_rate_test": kept["transitory"]["rate_of_test"],
            "transitory_rate_both_correct": kept["transitory"]["rate_of_both_correct"],
            "corruption_mean_acc": kept["corruption_summary"],
            "cross_policy": cross,
            "best": {m: best[n]["config"] for m, n in names.items()},
            "trials": {m: best[n]["trials"] for m, n in names.items()},
            "per_example": str(per_example),
            "report": str(report_dir / "report.md"),
        }
        records.append(rec)
        out(
            f"  {key}: gap {rec['gap']:.1f} points (f_D drop {d['drop']:.1f}, f_R drop {r['drop']:.1f}), "
            f"FP match {rec['fp_match']:.1f}"
        )
    written = append_records(records, run_dir / "records.jsonl")
    out(f"{written} new record(s) in {run_dir / 'records.jsonl'}")
    return records
