"""Records as data: one JSON file per record under a *board* folder, checked as untrusted input.

A board (the repository's ``leaderboard/``, or a run folder) keeps ``records/<id>.json`` (the
id's ``/`` are folders: ``records/default/b0107eab9688/resnet18-I-80-s0.json``),
``per_example/<id>.json`` (every test example's correctness under every allocation: the evidence
of the record's counts) and ``reports/<id>/``. Adding a row writes new files and touches no other
(RobustBench keeps ``model_info/`` the same way): no lock, no rewrite, and two pull requests that
add rows never conflict. A record read from anywhere is :func:`bench.records.verify.parse`d
(every field checked, every derived field recomputed); one being added is checked in depth (its
suite text built as a suite) and has its per-example file verified against its counts and hash.
No torch where a board is only read: the views read this.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dptq.faults import failpoint
from dptq.io import atomic_file, remove_stale_temps, write_atomic

from ..names import PER_EXAMPLE, RECORDS, REPORTS
from . import reproductions
from .record import RecordError, per_example_bytes, per_example_rel, record_rel
from .verify import parse, read_json, verify_per_example

__all__ = ["RECORDS", "PER_EXAMPLE", "REPORTS", "RecordError", "load", "add", "read_json"]


def load(board: Path, deep: bool = False) -> list:
    """Every record of a board, verified (:func:`bench.records.verify.parse`; ``deep``: its
    suite text built as a suite too, which loads the trainers), sorted by id; a bad file stops
    with one line."""
    folder = Path(board) / RECORDS
    records = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        rec = parse(read_json(path), str(path), deep=deep)
        if path != Path(board) / record_rel(rec.id):
            raise RecordError(
                f"{path}: holds record {rec.id!r}; a record's file is named by its id"
            )
        records.append(rec)
    return records


def load_any(source: Path) -> tuple[list, Path]:
    """The records of a run folder or board to be added somewhere (untrusted: checked in depth)
    and the folder they come from."""
    source = Path(source)
    if not source.is_dir():
        raise RecordError(f"{source}: no such run folder or board")
    return load(source, deep=True), source


def _copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as fh, atomic_file(dest) as out:
        shutil.copyfileobj(fh, out)


def _as_record(r, where: str):
    if isinstance(r, dict):
        return parse(r, where, deep=True)
    return r


def add(
    records: list,
    board: Path,
    per_example: dict[str, dict] | None = None,
    source: Path | None = None,
    notes: list | None = None,
) -> int:
    """Write each record whose id is not on ``board`` yet; returns how many were written.

    A record whose id is on the board already is never dropped in silence nor written over: a
    run of the same cell made elsewhere (another machine, commit or date) becomes a reproduction
    entry beside the board's record (:mod:`bench.records.reproductions`), the record itself a
    no-op; ``notes`` gets a line for each, saying which and how the numbers compare.

    Records may be typed (a run's) or JSON data (untrusted: read and verified in depth first). Nothing is
    written for a board that already holds a broken file, and a bad record stops the whole add
    before any write. A successful record's per-example data come from ``per_example`` (by id)
    or from ``source`` (a run folder or board: ``per_example/<id>.json``) and must be its own
    (:func:`verify_per_example`); its report folder ``reports/<id>/`` is copied from ``source``
    (regular files only). Every file is written whole (temp file, fsync, rename): a kill leaves
    each record there or not.
    """
    board = Path(board)
    load(board)  # a broken board stops here, before anything is written
    todo, again = [], []  # (record, its per-example data): new ones; ones the board holds
    for i, r in enumerate(records):
        rec = _as_record(r, f"record {i + 1}")
        known = (board / record_rel(rec.id)).exists()
        if known and rec.error is not None:
            continue
        where = f"record {rec.id[:80]!r}"
        pe = (per_example or {}).get(rec.id)
        src = Path(source) / per_example_rel(rec.id) if source else None
        if known and pe is None and (src is None or not src.is_file()):
            _note(
                notes, f"record {rec.id}: already on the board; no per-example file to keep it by"
            )
            continue
        if rec.error is None:
            if pe is None:
                if src is None or not src.is_file():
                    raise RecordError(
                        f"{where}: its per-example results are missing (looked for {src}); a "
                        "successful record needs them (they recompute its numbers)"
                    )
                pe = read_json(src)
            verify_per_example(rec, pe, where)
        (again if known else todo).append((rec, pe))
    for folder in (board / RECORDS, board / PER_EXAMPLE):
        for sub in [folder, *folder.rglob("*")] if folder.is_dir() else []:
            if sub.is_dir():
                remove_stale_temps(sub)
    for rec, pe in todo:
        rid = rec.id
        dest = board / per_example_rel(rid)
        if rec.error is None:
            write_atomic(dest, per_example_bytes(pe))
            report = Path(source) / REPORTS / rid if source else None
            if (
                report is not None
                and report.is_dir()
                and report.resolve() != (board / REPORTS / rid).resolve()
            ):
                for f in sorted(report.iterdir()):
                    if f.is_file() and not f.is_symlink() and not f.name.startswith("."):
                        _copy(f, board / REPORTS / rid / f.name)
        with atomic_file(board / record_rel(rid)) as fh:
            fh.write((json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n").encode())
            failpoint("store:before-rename")
    for rec, pe in again:
        original = parse(read_json(board / record_rel(rec.id)), rec.id, deep=False)
        kept = reproductions.write(board, original, rec, pe)
        if kept is None:
            _note(notes, f"record {rec.id}: already on the board, the same run; nothing added")
        else:
            what = reproductions.describe(original, rec)
            _note(notes, f"record {rec.id}: already on the board; kept as a reproduction: {what}")
    return len(todo)


def _note(notes: list | None, line: str) -> None:
    if notes is not None:
        notes.append(line)
