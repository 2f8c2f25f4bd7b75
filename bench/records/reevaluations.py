"""Re-evaluations: a record's own networks evaluated again, the result kept beside the record.

``python -m bench verify RECORD --rerun --checkpoints BUNDLE`` loads the networks a record names
(their SHA-256 hashes in its ``networks`` field) and recomputes every per-example string of its
evaluation (:mod:`bench.pipeline.bundle`). What it found is kept as an **entry**,
``reevaluations/<id>/<machine>-<commit>-<date>.json``: the record's id, the network hashes it
loaded, the machine (its fingerprint), commit and date of the check, the seconds it took, and
the allocations whose per-example strings differed (``[examples differing, right in the record,
right recomputed]``; empty: identical). An entry is untrusted input like a record (:func:`read`
checks its shape, its id and that it loaded the networks its record names); what it is worth
is who ran it, as a reproduction's is.

A re-evaluation checks the evaluation, not the training: it is exact on the machine that made
the networks, and it refuses a consistent forgery (edited strings, counts and derived fields)
that the self-consistency check accepts. Another CPU's float arithmetic may move a few examples
near a decision boundary; no tolerance has been measured for that yet, so a re-evaluation
counts as a check only when identical.
"""

from __future__ import annotations

import math
from pathlib import Path

from dptq.io import write_json

from ..names import REEVALUATIONS
from .record import Record, RecordError
from .reproductions import NAME, machine_of, stem

KEYS = {"id", "networks", "hardware", "git_commit", "date", "seconds", "differences"}


def make(rec: Record, result: dict, hardware: dict, commit: str | None, date: str) -> dict:
    """The entry of a re-evaluation of ``rec`` (``result``: :func:`bench.pipeline.bundle.rerun`'s)
    made on the machine ``hardware`` at ``commit`` and ``date``."""
    return {
        "id": rec.id,
        "networks": dict(rec.networks or {}),
        "hardware": hardware,
        "git_commit": commit,
        "date": date,
        "seconds": round(float(result["seconds"]), 1),
        "differences": {k: list(v) for k, v in result["differences"].items()},
    }


def _name(entry: dict) -> str:
    """An entry's file name: as a reproduction's, from its machine, commit and date."""
    return stem(entry["hardware"], entry["git_commit"], entry["date"])


def folder(board: Path, rid: str) -> Path:
    return Path(board) / REEVALUATIONS / rid


def write(board: Path, entry: dict) -> Path:
    """Keep ``entry`` on ``board`` (one file, written whole; an entry of the same machine,
    commit and date is replaced: the same check again)."""
    path = folder(board, entry["id"]) / f"{_name(entry)}.json"
    write_json(path, entry)
    return path


def _check(entry, path: Path, records: dict[str, Record], board: Path) -> None:
    if not isinstance(entry, dict) or set(entry) != KEYS:
        raise RecordError(f"{path}: a re-evaluation holds exactly the fields {sorted(KEYS)}")
    rec = records.get(entry["id"]) if isinstance(entry["id"], str) else None
    if rec is None or path.parent != folder(board, rec.id):
        raise RecordError(f"{path}: re-evaluates {entry['id']!r}, which is not this board's record")
    if not rec.networks or entry["networks"] != rec.networks:
        raise RecordError(
            f"{path}: field networks: not the networks record {rec.id} names (a re-evaluation "
            "checks the record's own networks)"
        )
    commit = entry["git_commit"]
    if not isinstance(entry["hardware"], dict) or not isinstance(entry["date"], str):
        raise RecordError(f"{path}: fields hardware and date: the machine and date of the check")
    if not (commit is None or isinstance(commit, str)):
        raise RecordError(f"{path}: field git_commit: the commit that ran the check, or null")
    seconds = entry["seconds"]
    number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not (number and math.isfinite(seconds) and seconds >= 0):
        raise RecordError(f"{path}: field seconds: the time the check took, in seconds")
    diffs = entry["differences"]
    if not isinstance(diffs, dict) or not all(_difference(v) for v in diffs.values()):
        raise RecordError(
            f"{path}: field differences: allocation -> [differing (at least 1), right in the "
            "record, right recomputed] (the two counts differ by at most the differing examples)"
        )
    if path.stem != _name(entry) or not NAME.fullmatch(path.stem):
        raise RecordError(f"{path}: an entry's file is named by its machine, commit and date")


def _difference(v) -> bool:
    """One allocation's ``[differing, right in the record, right recomputed]`` as
    :func:`bench.pipeline.bundle.rerun` writes it: counts, at least one example differing, and
    the two counts apart by at most the examples that differ."""
    if not isinstance(v, list) or len(v) != 3:
        return False
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in v):
        return False
    return v[0] >= 1 and abs(v[1] - v[2]) <= v[0]


def read(board: Path, records: dict[str, Record]) -> dict[str, list[dict]]:
    """Every entry of ``board``'s ``reevaluations/``, by the id it checks, verified (module
    docstring); a bad entry stops with one line naming its file."""
    from .verify import read_json

    out: dict[str, list[dict]] = {}
    base = Path(board) / REEVALUATIONS
    for path in sorted(base.rglob("*.json")) if base.is_dir() else []:
        entry = read_json(path)
        _check(entry, path, records, Path(board))
        out.setdefault(entry["id"], []).append(entry)
    return out


def summary(entries: list[dict], own: str) -> dict:
    """What a record's re-evaluations show: how many, on how many machines, how many of those
    other than ``own`` (the machine that made the record), whether every one was identical,
    the most examples that differed in one allocation."""
    machines = {machine_of(e["hardware"]) for e in entries}
    worst = max((v[0] for e in entries for v in e["differences"].values()), default=0)
    return {
        "reevaluated": len(entries),
        "reevaluated_machines": len(machines),
        "reevaluated_elsewhere": len(machines - {own}),
        "identical": all(not e["differences"] for e in entries) if entries else None,
        "reevaluated_images": worst if entries else None,
    }
