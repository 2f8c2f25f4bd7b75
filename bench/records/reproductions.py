"""Reproductions: another run of a record's cell, kept beside the record, never over it.

A record is *self-reported* until someone checks it. A **reproduction** is the same suite and
cell run again (on another machine, or another commit): its record has the same id, and adding
it to a board that holds the id writes an entry under ``reproductions/<id>/`` instead of being a
silent no-op or an overwrite. An entry is one file: the reproducing run's record and its
per-example file, untrusted input like any record (:func:`read`: the record verified, its
per-example file proving its counts, the id the board's). What an entry shows is derived when it
is read, never stored: the differences from the original (:func:`differences`: each headline
field in points, the largest count difference in test images) and whether they lie within the
stated tolerance (:data:`TOLERANCE`).

The board shows how far each row was checked (:func:`trust`): self-reported, or reproduced on
k machines other than the one that made it, with the largest difference seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dptq.io import write_json

from ..names import REPRODUCTIONS
from .record import Record, RecordError

# what a reproduction may differ by and still be "within tolerance", per field (points of the
# test split); retraining on another CPU changes float rounding from the first KD epoch on
# (README: "Numbers depend on the machine"), so a reproduction is never exact: the bounds are
# those measured between two CPUs on the default suite (docs/leaderboard.md, "Checking a
# result"), rounded up
TOLERANCE = {"gap": 3.0, "f_n_acc": 2.0, "f_r_fp_acc": 2.0, "f_d_fp_acc": 2.0}
FIELDS = ("gap", "hidden_gap", "f_d_drop", "f_r_drop", "fp_match")
FIELDS += ("f_n_acc", "f_r_fp_acc", "f_d_fp_acc")
NAME = re.compile(r"[0-9a-z]{1,32}-[0-9a-f]{8}-\d{8}T\d{6}")


def machine(rec: Record) -> str:
    """The machine that made ``rec`` (:func:`machine_of` its ``hardware``)."""
    return machine_of(rec.hardware)


def machine_of(hw: dict | None) -> str:
    """A machine from its fingerprint: its id where there is one, else its CPU model and vector
    extension (records from before the fingerprint), else ``unknown``."""
    hw = hw or {}
    if hw.get("machine_id"):
        return str(hw["machine_id"])
    known = [str(hw[k]) for k in ("cpu_model", "capability") if hw.get(k)]
    return "/".join(known) or "unknown"


def entry_name(rec: Record) -> str:
    """An entry's file name: the reproducing machine's id, its commit, its date."""
    return stem(rec.hardware, rec.git_commit, rec.date)


def stem(hardware: dict | None, commit: str | None, date: str) -> str:
    """A check's file name (a reproduction's or a re-evaluation's): machine, commit, date."""
    who = re.sub(r"[^0-9a-z]", "", machine_of(hardware).lower())[:12] or "unknown"
    when = re.sub(r"[^0-9T]", "", date)[:15]
    return f"{who}-{(commit or '0' * 8)[:8]}-{when}"


@dataclass(frozen=True)
class Reproduction:
    """One entry: the reproducing run's record (same id as the original) and its file."""

    record: Record
    file: Path


def differences(original: Record, again: Record) -> dict:
    """``again`` minus ``original``: each of :data:`FIELDS` in points, and ``images``: the largest
    difference in a count of test images right (any network, any allocation)."""
    out = {k: getattr(again, k) - getattr(original, k) for k in FIELDS}
    a, b = original.evaluation, again.evaluation
    worst = 0
    for net in ("f_N", "f_R", "f_D"):
        for k, v in getattr(a, net).__dict__.items():
            w = getattr(getattr(b, net), k)
            pairs = zip(v, w) if isinstance(v, list) and isinstance(w, list) else [(v, w)]
            worst = max([worst, *(abs(x - y) for x, y in pairs if x is not None and y is not None)])
    out["images"] = worst
    return out


def within(diff: dict) -> bool:
    """Whether a reproduction's differences lie within :data:`TOLERANCE`."""
    return all(abs(diff[k]) <= t for k, t in TOLERANCE.items())


def describe(original: Record, again: Record) -> str:
    """One line: identical, or within tolerance or differing, with the headline differences."""
    if again.per_example_sha256 == original.per_example_sha256:
        return "identical (the same per-example results)"
    d = differences(original, again)
    verdict = "within tolerance" if within(d) else "differs beyond tolerance"
    shown = ", ".join(f"{k} {d[k]:+.2f}" for k in ("gap", "hidden_gap", "f_d_fp_acc", "fp_match"))
    return f"{verdict}: {shown} points; counts differ by up to {d['images']} images"


def folder(board: Path, rid: str) -> Path:
    return Path(board) / REPRODUCTIONS / rid


def write(board: Path, original: Record, again: Record, pe: dict) -> Path | None:
    """Keep ``again`` (verified, with its per-example data ``pe``) as a reproduction of
    ``original``; None when it is the original itself (the same date, commit and machine) or
    an entry already there. One file, written whole."""
    if (again.date, again.git_commit, machine(again)) == (
        original.date,
        original.git_commit,
        machine(original),
    ):
        return None
    path = folder(board, original.id) / f"{entry_name(again)}.json"
    if path.exists():
        return None
    write_json(path, {"record": again.to_json(), "per_example": pe})
    return path


def read(board: Path, records: dict[str, Record], deep: bool = False) -> dict[str, list]:
    """Every entry of ``board``'s ``reproductions/``, by the id it reproduces, verified: the
    record parsed (:func:`bench.records.verify.parse`), its per-example data proving its counts,
    its id one of ``records`` and the file named by its machine, commit and date. A bad entry
    stops with one line naming its file."""
    from .verify import parse, read_json, verify_per_example

    out: dict[str, list] = {}
    base = Path(board) / REPRODUCTIONS
    for path in sorted(base.rglob("*.json")) if base.is_dir() else []:
        data = read_json(path)
        if not isinstance(data, dict) or set(data) != {"record", "per_example"}:
            raise RecordError(f"{path}: a reproduction holds a record and its per_example data")
        rec = parse(data["record"], str(path), deep=deep)
        if rec.error is not None:
            raise RecordError(f"{path}: a reproduction is a successful run")
        if path.parent != folder(board, rec.id) or rec.id not in records:
            raise RecordError(f"{path}: reproduces {rec.id!r}, which is not this board's record")
        if path.stem != entry_name(rec) or not NAME.fullmatch(path.stem):
            raise RecordError(f"{path}: an entry's file is named by its machine, commit and date")
        verify_per_example(rec, data["per_example"], str(path))
        out.setdefault(rec.id, []).append(Reproduction(rec, path))
    return out


def trust(original: Record, entries: list) -> dict:
    """How far ``original`` was checked: ``level`` (self-reported, or reproduced), the machines
    other than its own that reproduced it (``machines``), whether every such reproduction lies
    within tolerance, and the largest differences seen (gap in points, counts in images)."""
    others = [e.record for e in entries if machine(e.record) != machine(original)]
    if not others:
        return {
            "level": "self-reported",
            "machines": 0,
            "within": None,
            "gap": None,
            "images": None,
        }
    diffs = [differences(original, r) for r in others]
    return {
        "level": "reproduced",
        "machines": len({machine(r) for r in others}),
        "within": all(within(d) for d in diffs),
        "gap": max(abs(d["gap"]) for d in diffs),
        "images": max(d["images"] for d in diffs),
    }
