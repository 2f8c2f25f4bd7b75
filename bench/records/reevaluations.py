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
that the self-consistency check accepts. Other float arithmetic (another CPU, or torch on other
vector kernels: a ``capability``, torch build or BLAS unlike the record's) may move an example
lying on a decision boundary: a re-evaluation with the record's own arithmetic must be
identical, one with other arithmetic may differ in any allocation by at most
:data:`TOLERANCE_SHARE` of the test split's examples (:func:`agrees`).
"""

from __future__ import annotations

import math
from pathlib import Path

from dptq.io import write_json

from ..names import REEVALUATIONS
from .record import Record, RecordError
from .reproductions import NAME, machine_of, stem

# the share of the test split one allocation may differ by in a re-evaluation with other
# arithmetic than the record's and still agree with it (:func:`tolerance`): measured by
# re-evaluating the closed rows with torch, oneDNN and MKL held to AVX2 and to SSE4.1 kernels on
# the AVX-512 machine that made them (at most 4 of 450 examples, 0.9%, in any allocation;
# docs/leaderboard.md, "Checking a result"), doubled and rounded up; a forgery that moves an
# attack's numbers moves far more (the stealth forgery: every non-own allocation); within it a
# forgery can move a gap (four allocations: f_D and f_R at FP and under their policies) by at
# most 4 x 2% = 8 points
TOLERANCE_SHARE = 0.02
# what of a machine's fingerprint sets its float arithmetic (``capability`` is ATen's vector
# kernels; oneDNN's and MKL's own limits, ONEDNN_MAX_CPU_ISA and MKL_ENABLE_INSTRUCTIONS, are
# not in the fingerprint: a check run with only those set counts as the record's arithmetic)
ARITHMETIC = ("capability", "torch", "blas")

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


def arithmetic(hw: dict | None) -> tuple:
    """What sets a machine's float arithmetic, from its fingerprint: the machine, the vector
    kernels torch used, torch's build and its BLAS (a field a fingerprint lacks is None)."""
    hw = hw or {}
    return (machine_of(hw), *(hw.get(k) for k in ARITHMETIC))


def same_arithmetic(hw: dict | None, own: dict | None) -> bool:
    """Whether the fingerprints ``hw`` and ``own`` name the same float arithmetic."""
    return arithmetic(hw) == arithmetic(own)


def worst(entry: dict) -> int:
    """The most examples that differed in one allocation of ``entry`` (0: identical)."""
    return max((v[0] for v in entry["differences"].values()), default=0)


def tolerance(rec: Record) -> int:
    """The examples one allocation of ``rec`` may differ by in a re-evaluation with other
    arithmetic: :data:`TOLERANCE_SHARE` of its test split, rounded up (9 of 450)."""
    return math.ceil(TOLERANCE_SHARE * rec.evaluation.total) if rec.evaluation else 0


def agrees(entry: dict, rec: Record) -> bool:
    """Whether a re-evaluation agrees with its record: identical with the record's own
    arithmetic (:func:`arithmetic`), at most :func:`tolerance` examples apart in every
    allocation with other arithmetic."""
    same = same_arithmetic(entry["hardware"], rec.hardware)
    return worst(entry) <= (0 if same else tolerance(rec))


def summary(entries: list[dict], rec: Record) -> dict:
    """What ``rec``'s re-evaluations show: how many, on how many machines, how many of those
    other than the one that made it, whether every one was identical and whether every one
    agrees (:func:`agrees`), the most examples that differed in one allocation: over all, with
    the record's own arithmetic (None: no such entry) and with other arithmetic (and whether
    those with other arithmetic agree)."""
    machines = {machine_of(e["hardware"]) for e in entries}
    home = [e for e in entries if same_arithmetic(e["hardware"], rec.hardware)]
    away = [e for e in entries if not same_arithmetic(e["hardware"], rec.hardware)]
    return {
        "reevaluated": len(entries),
        "reevaluated_machines": len(machines),
        "reevaluated_elsewhere": len(machines - {machine_of(rec.hardware)}),
        "identical": all(not e["differences"] for e in entries) if entries else None,
        "agrees": all(agrees(e, rec) for e in entries) if entries else None,
        "reevaluated_images": max(map(worst, entries)) if entries else None,
        "reevaluated_own_images": max(map(worst, home)) if home else None,
        "reevaluated_other_images": max(map(worst, away)) if away else None,
        "other_agrees": all(agrees(e, rec) for e in away) if away else None,
    }
