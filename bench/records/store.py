"""Records as data: one JSON file per record under a *board* folder, checked as untrusted input.

A board (the repository's ``leaderboard/``, or a run folder) keeps ``records/<id>.json`` (the
id's ``/`` are folders: ``records/default/b0107eab9688/resnet18-I-80-s0.json``),
``per_example/<id>.json`` (every test example's correctness under every allocation: the evidence
of the record's counts) and ``reports/<id>/``. Adding a row writes new files and touches no other
(RobustBench keeps ``model_info/`` the same way): no lock, no rewrite, and two pull requests that
add rows never conflict. A record read from anywhere is :func:`bench.records.legacy.read` (schema 3
verified field by field, schema 2 migrated, schema 1 history); one being added also has its
per-example file verified against its counts and hash. Old ``records.jsonl`` files are read as
input too. No torch: the views read this.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from dptq.faults import failpoint
from dptq.io import atomic_file, remove_stale_temps, write_atomic

from . import legacy
from .record import Record, RecordError, per_example_bytes, per_example_rel, record_rel

RECORDS, PER_EXAMPLE, REPORTS = "records", "per_example", "reports"
__all__ = ["RECORDS", "PER_EXAMPLE", "REPORTS", "RecordError", "load", "add", "read_json"]


def read_json(path: Path):
    """A JSON file's data; RecordError (one line) when it is not readable JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise RecordError(f"{path}: not readable JSON ({why}); fix or remove that file") from None


def _pe_file(board: Path, data) -> Path | None:
    rid = data.get("id") if isinstance(data, dict) else None
    return board / per_example_rel(rid) if isinstance(rid, str) and ".." not in rid else None


def load(board: Path, migrated: dict | None = None) -> list:
    """Every record of a board, validated, sorted by id; a bad file stops with one line.

    ``migrated``: filled with the schema-3 per-example files of the schema-2 records read (by id).
    """
    folder = Path(board) / RECORDS
    records = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        data = read_json(path)
        rec, new_pe = legacy.read(data, str(path), _pe_file(Path(board), data))
        if path != Path(board) / record_rel(rec.id):
            raise RecordError(
                f"{path}: holds record {rec.id!r}; a record's file is named by its id"
            )
        if new_pe is not None and migrated is not None:
            migrated[rec.id] = new_pe
        records.append(rec)
    return records


def load_legacy(path: Path) -> tuple[list, dict[str, dict | Path]]:
    """The records of an old ``records.jsonl`` (one JSON object per line), and the per-example
    data (migrated) or file of each (only files inside the file's own folder: a path that leaves
    it is refused)."""
    path = Path(path)
    folder = path.parent.resolve()
    records, files = [], {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(
                f"{where}: not valid JSON ({e.msg}); fix or remove that line"
            ) from None
        if not isinstance(data, dict):
            raise RecordError(f"{where}: a record must be a JSON object")
        old = data.get("per_example")
        src = None
        if old is not None:
            src = (folder / str(old)).resolve()
            if not isinstance(old, str) or not src.is_relative_to(folder) or not src.is_file():
                raise RecordError(
                    f"{where}: per_example {str(old)[:80]!r} is not a file inside {folder}"
                )
        data = {k: v for k, v in data.items() if k not in ("run_dir", "report", "per_example")}
        if src is not None:
            data["per_example"] = per_example_rel(data.get("id", ""))
        rec, new_pe = legacy.read(data, where, src)
        records.append(rec)
        if new_pe is not None:
            files[rec.id] = new_pe
        elif src is not None:
            files[rec.id] = src  # schema 1: copied as it is
    return records, files


def load_any(source: Path) -> tuple[list, Path, dict[str, dict]]:
    """Records from a board or run folder, or an old ``records.jsonl``: (records, the folder they
    come from, per-example data by id where it is not that folder's own file)."""
    source = Path(source)
    if source.is_dir():
        migrated: dict = {}
        return load(source, migrated), source, migrated
    if source.is_file():
        records, files = load_legacy(source)
        return records, source.parent, files
    raise RecordError(f"{source}: no such run folder, board or records.jsonl")


def verify_per_example(rec: Record, pe: dict, where: str) -> None:
    """The per-example file is this record's: its hash, and every vector's count and length."""
    digest = hashlib.sha256(per_example_bytes(pe)).hexdigest()
    if digest != rec.per_example_sha256:
        raise RecordError(
            f"{where}: field per_example_sha256: the per-example file's hash is {digest[:12]}..., "
            f"the record's {rec.per_example_sha256[:12]}... (another record's file?)"
        )
    ev, total = rec.evaluation, rec.evaluation.total
    if pe.get("total") != total:
        raise RecordError(f"{where}: per_example: {pe.get('total')} examples, the record {total}")
    for net, by in pe.get("evaluation", {}).items():
        counts = getattr(ev, net)
        for alloc, bits in by.items():
            want = getattr(counts, alloc)
            vectors, wants = (bits, want) if isinstance(bits, list) else ([bits], [want])
            if len(vectors) != len(wants or []):
                raise RecordError(f"{where}: per_example {net}.{alloc}: not one vector per count")
            for v, w in zip(vectors, wants):
                if len(v) != total or set(v) - {"0", "1"} or v.count("1") != w:
                    raise RecordError(
                        f"{where}: field evaluation.{net}.{alloc}: {w} correct, its per-example "
                        f"vector says {v.count('1')} of {len(v)}"
                    )
    audit = (pe.get("analyses") or {}).get("audit")
    if audit and rec.analysis("audit") is not None:
        if audit["pi_A"].count("1") != rec.analysis("audit").adversarial:
            raise RecordError(
                f"{where}: field analyses.audit.adversarial: not its per-example count"
            )


def _copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as fh, atomic_file(dest) as out:
        shutil.copyfileobj(fh, out)


def _as_record(r, where: str):
    if isinstance(r, dict):
        return legacy.read(r, where)[0]
    return r


def add(
    records: list,
    board: Path,
    per_example: dict[str, dict] | None = None,
    source: Path | None = None,
) -> int:
    """Write each record whose id is not on ``board`` yet; returns how many were written.

    Records may be typed (a run's) or JSON data (untrusted: read and verified first). Nothing is
    written for a board that already holds a broken file, and a bad record stops the whole add
    before any write. A successful record's per-example data come from ``per_example`` (by id)
    or from ``source`` (a run folder or board: ``per_example/<id>.json``) and must be its own
    (:func:`verify_per_example`); its report folder ``reports/<id>/`` is copied from ``source``
    (regular files only). Every file is written whole (temp file, fsync, rename): a kill leaves
    each record there or not.
    """
    board = Path(board)
    load(board)  # a broken board stops here, before anything is written
    todo = []  # (record, its per-example data or file)
    for i, r in enumerate(records):
        rec = _as_record(r, f"record {i + 1}")
        if (board / record_rel(rec.id)).exists():
            continue
        where = f"record {rec.id[:80]!r}"
        pe = (per_example or {}).get(rec.id)
        src = Path(source) / per_example_rel(rec.id) if source else None
        if isinstance(pe, Path):
            pe, src = None, pe
        if isinstance(rec, Record) and rec.error is None:
            if pe is None:
                if src is None or not src.is_file():
                    raise RecordError(
                        f"{where}: its per-example results are missing (looked for {src}); a "
                        "successful record needs them (they recompute its numbers)"
                    )
                pe = read_json(src)
            verify_per_example(rec, pe, where)
        todo.append((rec, pe, src))
    for folder in (board / RECORDS, board / PER_EXAMPLE):
        for sub in [folder, *folder.rglob("*")] if folder.is_dir() else []:
            if sub.is_dir():
                remove_stale_temps(sub)
    for rec, pe, src in todo:
        rid = rec.id
        dest = board / per_example_rel(rid)
        if isinstance(rec, Record) and rec.error is None:
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
        elif src is not None and src.is_file() and src.resolve() != dest.resolve():
            _copy(src, dest)  # schema 1: its per-example file as it was
        with atomic_file(board / record_rel(rid)) as fh:
            fh.write((json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n").encode())
            failpoint("store:before-rename")
    return len(todo)
