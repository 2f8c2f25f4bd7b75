"""``bench reproduce RECORD``: a board's record rerun on this machine, from its own suite text,
and kept beside it as a reproduction (:mod:`bench.records.reproductions`).

The record's suite (``suite_text``, resolved: the same hash, so the same record id) runs only the
record's cell (``--cells``: its teacher, KD and pair stages, then its analyses) into a run folder
of its own; the run's record is then added to the board, which keeps it as a reproduction entry
and says in one line whether it is identical, within tolerance or differs. The original record
is never touched.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..config.suite import parse_suite
from ..names import cell_key, run_folder
from ..records import store
from ..records.record import RecordError
from .run import run


def find(board: Path, rid: str):
    """The board's record ``rid`` (one line naming the close ones when there is none)."""
    records = store.load(board)
    hits = [r for r in records if r.id == rid]
    if not hits:
        near = [r.id for r in records if r.id.split("/")[0] == rid.split("/")[0]][:5]
        raise RecordError(f"{rid}: no such record on {board}" + (f"; e.g. {near}" if near else ""))
    return hits[0]


def reproduce(
    rid: str,
    board: Path = Path("leaderboard"),
    out: Path | None = None,
    local: bool = True,
    address: str | None = None,
    suite_file: Path | None = None,
) -> tuple[object, list[str]]:
    """Rerun record ``rid`` of ``board`` here and keep it as a reproduction; returns the run's
    result and the board's lines about it. ``suite_file``: the suite, for a record written
    before records carried theirs (it must give the record's hash)."""
    from ..config.suite import load_suite

    original = find(board, rid)
    if original.error is not None:
        raise RecordError(f"{rid}: a failed record has no cell to rerun")
    if original.suite_text is not None:
        suite = parse_suite(yaml.safe_load(original.suite_text), f"{rid}: suite_text")
    elif suite_file is not None:
        suite = load_suite(suite_file)
    else:
        raise RecordError(
            f"{rid}: the record carries no suite text; give its suite with --suite FILE"
        )
    if suite.digest() != original.suite_hash:
        raise RecordError(
            f"{rid}: the suite gives hash {suite.digest()}, the record {original.suite_hash}; "
            "cannot rerun it as it was"
        )
    key = cell_key(original.architecture, original.bit_options, original.budget, original.seed)
    where = Path(out) if out else run_folder(f"reproduce-{suite.name}")
    res = run(suite, where, local=local, address=address, leaderboard=None, cells=(key,))
    notes: list[str] = []
    mine = [r for r in res.records if r.id == rid]
    if mine:
        store.add(mine, board, source=where, notes=notes)
    return res, notes
