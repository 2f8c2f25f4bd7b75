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
import hashlib
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


class RecordError(ValueError):
    """A record file or record that cannot be read; one line naming file and line."""


def _parse(text: str, path: Path) -> list[dict]:
    """The records of a record file's text; a line that is not a record stops everything."""
    records = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            rec["id"]
        except (ValueError, KeyError, TypeError):
            raise RecordError(
                f"{path}:{i}: not a complete record (a write cut off, or an edit); nothing was "
                "written: fix or remove that line, then run the command again"
            ) from None
        records.append(rec)
    return records


def append_records(records: list[dict], path: Path) -> int:
    """Append the records whose ``id`` is not in ``path`` yet; returns how many were written.

    Under an exclusive lock (``<path>.lock``) the old bytes are copied unchanged into a new file,
    the new lines appended, the file flushed to disk and renamed over ``path``: a process killed
    at any moment leaves either the old file or the new one, never half a line; two writers
    serialise on the lock and both keep their records. A file with a broken line is not touched.
    """
    from dptq.engine import atomic_file

    from .faults import failpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a writer killed before its rename
            stale.unlink(missing_ok=True)
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        seen = {r["id"] for r in _parse(old, path)}
        new = []
        for r in records:
            if r["id"] not in seen:
                seen.add(r["id"])
                new.append(r)
        if not new:
            return 0
        if old and not old.endswith("\n"):
            old += "\n"
        with atomic_file(path) as fh:
            fh.write((old + "".join(json.dumps(r, sort_keys=True) + "\n" for r in new)).encode())
            failpoint("records:before-rename")
        _fsync_dir(path.parent)
        return len(new)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself reaches the disk
    finally:
        os.close(fd)


def build_records(
    suite,
    groups,
    best: dict,
    f_n_acc: dict,
    kd_files: dict,
    data,
    run_dir: Path,
    failed: list,
    events: list[dict] = (),
    out=print,
) -> list[dict]:
    """Analyse each (student, options, budget)'s best pairs and write its record.

    A record already in ``RUN/records.jsonl`` (a rerun after an interruption) is reused as it is,
    not analysed again. A failed one gets its own id (``.../failed-<hash of the reason>``) so a
    later successful run of the same suite still adds its row. ``retries`` lists the trial
    retries (node lost, worker died, ...) of every stage the row depends on.
    """
    from dptq.engine import RunOptions, load_checkpoint, make_accelerator
    from dptq.pipeline import cross_policy
    from dptq.policy import create_policy
    from dptq.report import write_pair_report
    from dptq.train import evaluate_pair, own_policy_bits

    from .runner import kd_name, load_f_n

    acc = make_accelerator(RunOptions(cpu=suite.resources.gpus == 0))
    env, now = environment(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    keys = dict.fromkeys((g.student, g.version, g.options, g.budget, g.key) for g in groups)
    done = run_dir / "records.jsonl"
    kept_records = {r["id"]: r for r in _parse(done.read_text(), done)} if done.exists() else {}
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
        stages = ("teacher", kd_name(student))
        base["retries"] = [
            {k: e.get(k) for k in ("experiment", "trial", "node", "epoch", "reason")}
            for e in events
            if e.get("event") == "retry" and e.get("experiment") in (*stages, *names.values())
        ]
        base["skipped_images"] = list(getattr(data, "skipped", ()))
        missing = [m for m, n in names.items() if n not in best]
        if student not in kd_files or missing:
            why = [
                f"{f['stage']}: {f['error']}"
                for f in failed
                if f["stage"] in ("teacher", f"kd {student}", *names.values())
            ]
            error = why[0] if why else f"no finished {', '.join(missing)} pair"
            digest = hashlib.sha256(error.encode()).hexdigest()[:8]
            records.append({**base, "id": f"{base['id']}/failed-{digest}", "error": error})
            continue
        if base["id"] in kept_records and Path(kept_records[base["id"]]["report"]).exists():
            records.append(kept_records[base["id"]])
            out(f"  {key}: record already written, reused")
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
