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
import re
import shutil
from pathlib import Path

from dptq.faults import failpoint
from dptq.io import atomic_file, remove_stale_temps, write_json

SCHEMA_VERSION = 1
RECORDS, PER_EXAMPLE = "records", "per_example"
REQUIRED = {
    1: (
        "id",
        "suite",
        "suite_hash",
        "seed",
        "dataset",
        "architecture",
        "bit_options",
        "options",
        "budget",
        "error",
        "date",
        "git_commit",
        "versions",
        "hardware",
    ),
}
NUMBERS = (  # every successful record has them
    "f_n_acc",
    "f_r_fp_acc",
    "f_r_q_acc",
    "f_r_drop",
    "f_d_fp_acc",
    "f_d_q_acc",
    "f_d_drop",
    "gap",
    "fp_match",
    "f_d_random_acc",
)
OPTIONAL_NUMBERS = ("transitory_rate_test", "transitory_rate_both_correct")  # from analyses
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class RecordError(ValueError):
    """A record file or record that cannot be used; one line naming the file."""


def record_rel(rid: str) -> str:
    return f"{RECORDS}/{rid}.json"


def per_example_rel(rid: str) -> str:
    """Where a record's per-example results live, relative to its board."""
    return f"{PER_EXAMPLE}/{rid}.json"


def validate(rec: dict, where: str) -> dict:
    """Check one record against its schema version; returns it."""
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: a record must be a JSON object")
    version = rec.get("schema_version")
    if version not in REQUIRED:
        raise RecordError(
            f"{where}: schema_version {version!r} is not supported (this tool reads "
            f"{sorted(REQUIRED)}); upgrade dptq-bench or re-run the suite"
        )
    missing = [k for k in REQUIRED[version] if k not in rec]
    if missing:
        raise RecordError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(rec["id"], str) or not ID.fullmatch(rec["id"]) or ".." in rec["id"]:
        raise RecordError(f"{where}: id {rec['id']!r} is not a record id (names joined by '/')")
    if rec["error"] is None:
        absent = [k for k in NUMBERS if not _number(rec.get(k))]
        absent += [k for k in OPTIONAL_NUMBERS if k in rec and not _number(rec[k], none=True)]
        if absent:
            raise RecordError(f"{where}: a successful record needs numbers for {', '.join(absent)}")
    return rec


def _number(v, none: bool = False) -> bool:
    return (none and v is None) or (isinstance(v, int | float) and not isinstance(v, bool))


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


def load_legacy(path: Path) -> list[dict]:
    """The records of an old ``records.jsonl`` (one JSON object per line)."""
    records = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(
                f"{path}:{i}: not valid JSON ({e.msg}); fix or remove that line"
            ) from None
        records.append(validate(rec, f"{path}:{i}"))
    return records


def load_any(source: Path) -> tuple[list[dict], Path]:
    """Records from a board or run folder, or an old ``records.jsonl``; and the folder their
    per-example paths are relative to."""
    source = Path(source)
    if source.is_dir():
        return load(source), source
    if source.is_file():
        return load_legacy(source), source.parent
    raise RecordError(f"{source}: no such run folder, board or records.jsonl")


def add(
    records: list[dict],
    board: Path,
    per_example: dict[str, dict] | None = None,
    source: Path | None = None,
) -> int:
    """Write each record whose id is not on ``board`` yet; returns how many were written.

    Per-example results come from ``per_example`` (by id) or are copied from ``source`` (the
    folder the records' ``per_example`` paths are relative to). Every file is written whole
    (temp file, fsync, rename): a kill at any moment leaves each record there or not, never half.
    """
    board = Path(board)
    load(board)  # a broken board stops here, before anything is written
    for folder in (board / RECORDS, board / PER_EXAMPLE):
        for sub in [folder, *folder.rglob("*")] if folder.is_dir() else []:
            if sub.is_dir():
                remove_stale_temps(sub)
    written = 0
    for rec in records:
        rec = validate(dict(rec), rec.get("id", "record") if isinstance(rec, dict) else "record")
        target = board / record_rel(rec["id"])
        if target.exists():
            continue
        rel = per_example_rel(rec["id"])
        dest = board / rel
        if rec["error"] is None and per_example is not None and rec["id"] in per_example:
            write_json(dest, per_example[rec["id"]], indent=None)
        elif rec["error"] is None and source is not None and rec.get("per_example"):
            src = Path(rec["per_example"])
            src = src if src.is_absolute() else Path(source) / src
            if src.is_file() and src.resolve() != dest.resolve():
                with open(src, "rb") as fh, atomic_file(dest) as out:
                    shutil.copyfileobj(fh, out)
        if dest.is_file():
            rec["per_example"] = rel
        else:
            rec.pop("per_example", None)
        for volatile in ("run_dir", "report"):  # where a run kept it, not what it found
            rec.pop(volatile, None)
        with atomic_file(target) as fh:
            fh.write((json.dumps(rec, indent=1, sort_keys=True) + "\n").encode())
            failpoint("store:before-rename")
        written += 1
    return written
