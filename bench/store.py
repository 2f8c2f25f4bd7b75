"""Records as data: one JSON file per record, checked against its schema, under a *board* folder.

A board (the repository's ``leaderboard/``, or a run folder) keeps ``records/<id>.json`` (the id's
``/`` are folders: ``records/default/81c094ea9767/resnet18-I-80.json``) and
``per_example/<id>.json`` (each pair's per-example correctness on the test split). Adding a row
writes one new file and touches no other (RobustBench keeps ``model_info/`` the same way): no
lock, no rewrite, and two pull requests that add rows never conflict. Old ``records.jsonl`` files
are still read as input (``bench leaderboard --add``). Standard library only: the views read this
without torch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dptq.faults import failpoint
from dptq.io import atomic_file, remove_stale_temps, write_json

from .validate import (  # noqa: F401 (the store's schema, re-exported)
    NUMBERS,
    OPTIONAL_NUMBERS,
    PER_EXAMPLE,
    RECORDS,
    REPORTS,
    SCHEMA_VERSION,
    RecordError,
    per_example_rel,
    record_rel,
    report_rel,
    validate,
)

LEGACY = {"run_dir", "report"}  # schema 1 kept where a run had been: dropped on the way in


def read_json(path: Path):
    """A JSON file's data; RecordError (one line) when it is not readable JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise RecordError(f"{path}: not readable JSON ({why}); fix or remove that file") from None


def load(board: Path) -> list[dict]:
    """Every record of a board, validated, sorted by id; a bad file stops with one line."""
    folder = Path(board) / RECORDS
    records = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        rec = validate(read_json(path), str(path))
        if path != Path(board) / record_rel(rec["id"]):
            raise RecordError(
                f"{path}: holds record {rec['id']!r}; a record's file is named by its id"
            )
        records.append(rec)
    return records


def load_legacy(path: Path) -> tuple[list[dict], dict[str, Path]]:
    """The records of an old ``records.jsonl`` (one JSON object per line), and where each one's
    per-example file is (only inside the file's own folder: a path that leaves it is refused)."""
    path = Path(path)
    folder = path.parent.resolve()
    records, files = [], {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(
                f"{where}: not valid JSON ({e.msg}); fix or remove that line"
            ) from None
        if not isinstance(rec, dict):
            raise RecordError(f"{where}: a record must be a JSON object")
        old = rec.get("per_example")
        rec = {k: v for k, v in rec.items() if k not in LEGACY | {"per_example"}}
        validate(rec, where)
        if old is not None:
            src = (folder / str(old)).resolve()
            if not isinstance(old, str) or not src.is_relative_to(folder) or not src.is_file():
                raise RecordError(
                    f"{where}: per_example {str(old)[:80]!r} is not a file inside {folder}"
                )
            files[rec["id"]] = src
            rec["per_example"] = per_example_rel(rec["id"])
        records.append(rec)
    return records, files


def load_any(source: Path) -> tuple[list[dict], Path, dict[str, Path]]:
    """Records from a board or run folder, or an old ``records.jsonl``: (records, the folder they
    come from, legacy per-example files by id)."""
    source = Path(source)
    if source.is_dir():
        return load(source), source, {}
    if source.is_file():
        records, files = load_legacy(source)
        return records, source.parent, files
    raise RecordError(f"{source}: no such run folder, board or records.jsonl")


def _copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as fh, atomic_file(dest) as out:
        shutil.copyfileobj(fh, out)


def add(
    records: list[dict],
    board: Path,
    per_example: dict[str, dict] | None = None,
    source: Path | None = None,
    files: dict[str, Path] | None = None,
) -> int:
    """Write each record whose id is not on ``board`` yet; returns how many were written.

    Every record is validated first (:func:`validate`): nothing is written for a board that
    already holds a broken file, and a bad record stops the whole add before any write. A
    record's per-example results come from ``per_example`` (by id), from ``files`` (by id: an old
    ``records.jsonl``'s), or from ``source`` (a run folder or board: ``per_example/<id>.json``);
    its report folder ``reports/<id>/`` is copied from ``source`` (regular files only). Every
    file is written whole (temp file, fsync, rename): a kill leaves each record there or not.
    """
    board = Path(board)
    load(board)  # a broken board stops here, before anything is written
    checked = [validate(dict(r) if isinstance(r, dict) else r, _name(r)) for r in records]
    todo = []  # (record, where its per-example results come from) for every new record
    for rec in checked:
        rid = rec["id"]
        if (board / record_rel(rid)).exists():
            continue
        src = (files or {}).get(rid) or (Path(source) / per_example_rel(rid) if source else None)
        fresh = per_example is not None and rid in per_example
        if rec["error"] is None and rec["schema_version"] >= 2 and not fresh:
            if src is None or not src.is_file():
                raise RecordError(
                    f"record {rid!r}: its per-example results are missing (looked for {src}); "
                    "a successful record needs them (they recompute its numbers)"
                )
        todo.append((rec, src))
    for folder in (board / RECORDS, board / PER_EXAMPLE):
        for sub in [folder, *folder.rglob("*")] if folder.is_dir() else []:
            if sub.is_dir():
                remove_stale_temps(sub)
    for rec, src in todo:
        rid = rec["id"]
        for volatile in LEGACY - {"report"}:  # where a run kept it, not what it found
            rec.pop(volatile, None)
        if rec["error"] is None:
            dest = board / per_example_rel(rid)
            if per_example is not None and rid in per_example:
                write_json(dest, per_example[rid], indent=None)
            elif src is not None and src.is_file() and src.resolve() != dest.resolve():
                _copy(src, dest)
            report = Path(source) / REPORTS / rid if source else None
            if (
                report is not None
                and report.is_dir()
                and report.resolve() != (board / REPORTS / rid).resolve()
            ):
                for f in sorted(report.iterdir()):
                    if f.is_file() and not f.is_symlink() and not f.name.startswith("."):
                        _copy(f, board / REPORTS / rid / f.name)
            if not dest.is_file():
                rec.pop("per_example", None)
            if rec["schema_version"] == 1:
                rec.pop("report", None)
        with atomic_file(board / record_rel(rid)) as fh:
            fh.write((json.dumps(rec, indent=1, sort_keys=True) + "\n").encode())
            failpoint("store:before-rename")
    return len(todo)


def _name(rec) -> str:
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"record {str(rid)[:80]!r}" if rid else "a record"
