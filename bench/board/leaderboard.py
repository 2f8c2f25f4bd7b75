"""The leaderboard: views regenerated from the records of one or more boards (:mod:`bench.records.store`).

A *board* is a folder of records (``leaderboard/``, or a run folder). :func:`regenerate` writes,
from every record of the given boards, byte-identical views for identical records:
``README.md`` (ranked tables per dataset), ``leaderboard.csv``, ``gap.png``, ``fp_vs_gap.png``,
``index.html`` (:mod:`bench.board.page`) and ``schema.json`` (what a record file is). This module and those it imports read data only: pandas and
matplotlib, never torch or a trainer (``tests/test_imports.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dptq.faults import failpoint
from dptq.io import write_atomic

from ..names import figure_name, roc_name
from ..records import reevaluations, reproductions, store
from ..records.store import RecordError
from .figures import render_pngs
from .page import render_html
from .paper_table import board_markdown
from .readme import RESULTS_BEGIN, RESULTS_END
from .readme import results_section as _results_section
from .views import frame, render_csv, render_markdown

LEADERBOARD = Path("leaderboard")


def load_boards(boards: list[Path]) -> tuple[list, dict[str, Path], dict[str, dict]]:
    """Every record of ``boards`` (the first board's copy of an id wins), each one's board, and
    how far each was checked (by id: :func:`bench.records.reproductions.trust` and
    :func:`bench.records.reevaluations.summary`, and whether those checks passed)."""
    records, roots, checks = [], {}, {}
    for board in boards:
        everything = {r.id: r for r in store.load(board)}
        entries = reproductions.read(board, everything)  # checks of every record it holds
        again = reevaluations.read(board, everything)
        mine = {rid: r for rid, r in everything.items() if rid not in roots}
        for rid, rec in mine.items():
            roots[rid] = Path(board)
            records.append(rec)
            check = reproductions.trust(rec, entries.get(rid, []))
            check.update(reevaluations.summary(again.get(rid, []), rec))
            # a check passes: the row was reproduced or re-evaluated, no reproduction lies
            # outside tolerance and every re-evaluation agrees (one check never rescues another)
            checked = check["level"] == "reproduced" or bool(check["reevaluated"])
            check["passed"] = (
                checked and check["within"] is not False and check["agrees"] is not False
            )
            checks[rid] = check
    return records, roots, checks


def regenerate(
    board: Path = LEADERBOARD, out: Path | None = None, extra=(), trusted: bool = False
) -> list[Path]:
    """Write every view of ``board``'s records (and those of the ``extra`` boards) into ``out``
    (default: the board itself); returns the written paths. ``trusted``: only the rows checked
    by a reproduction within tolerance or a re-evaluation that agrees enter the views (``bench leaderboard --trusted``)."""
    out = Path(out or board)
    boards = [Path(b) for b in (board, *extra) if Path(b).is_dir()]
    records, roots, checks = load_boards(boards)
    if trusted:
        records = [r for r in records if checks[r.id]["passed"]]
    df = frame(records, roots, checks)
    out.mkdir(parents=True, exist_ok=True)
    # each view is replaced whole: a kill leaves the old file or the new one
    write_atomic(out / "README.md", board_readme(df))
    write_atomic(out / "leaderboard.csv", render_csv(df))
    failpoint("leaderboard:views")
    pngs = render_pngs(df, out)  # before the page, which shows the figures that exist
    for stale in {*out.glob(figure_name("*")), *out.glob(roc_name("*"))} - {*pngs}:
        stale.unlink()  # a per-dataset figure whose rows are gone (e.g. no closed record yet)
    write_atomic(out / "index.html", render_html(df, out))
    write_atomic(out / "schema.json", schema_text())
    written = [out / "README.md", out / "leaderboard.csv", out / "index.html", out / "schema.json"]
    return [*written, *pngs]


def board_readme(df) -> str:
    """The board's ``README.md``: the ranked tables, then Table 1 beside the paper's."""
    return render_markdown(df) + board_markdown(df)


def schema_text() -> str:
    """``schema.json``: the JSON Schema of a record file (:func:`bench.records.record.json_schema`)."""
    import json

    from ..records.record import json_schema

    return json.dumps(json_schema(), indent=1, sort_keys=True) + "\n"


def submit(source: Path, board: Path = LEADERBOARD, notes: list | None = None) -> int:
    """Add the records of a run folder (or another board) to ``board``, verified in depth; a
    record the board holds already becomes a reproduction entry (``notes``: a line each)."""
    store.load(board)  # a broken board stops here, before anything is read or copied
    records, base = store.load_any(source)
    return store.add(records, board, source=base, notes=notes)


def results_section(board: Path = LEADERBOARD, figures: str = str(LEADERBOARD)) -> str:
    """README.md's results, generated from ``board``'s records (``figures``: the board's
    folder as the README links it)."""
    records, roots, checks = load_boards([board])
    return _results_section(frame(records, roots, checks), figures)


def update_readme(readme: Path, board: Path = LEADERBOARD) -> bool:
    """Replace README's results section (between its markers) by :func:`results_section`."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(RESULTS_BEGIN), text.find(RESULTS_END)
    if start < 0 or end < start:
        raise RecordError(f"{readme}: no results markers ({RESULTS_BEGIN} ... {RESULTS_END})")
    figures = Path(os.path.relpath(Path(board).resolve(), readme.resolve().parent)).as_posix()
    new = text[:start] + results_section(board, figures) + text[end + len(RESULTS_END) :]
    if new != text:
        write_atomic(readme, new)
    return new != text


def compare(records: list, a: str, b: str) -> pd.DataFrame:
    """Two run ids or architectures side by side per (options, budget), with B - A differences."""

    def pick(key):
        sel = [
            r
            for r in records
            if r.error is None and (r.id.startswith(key) or r.architecture == key)
        ]
        if not sel:
            raise RecordError(
                f"no successful record matches {key!r} (a run id prefix or an architecture)"
            )
        return {(r.dataset, r.bit_options, r.budget): r for r in sel}

    ra, rb = pick(a), pick(b)
    rows = []
    for key in sorted(set(ra) & set(rb), key=str):
        row = {"dataset": key[0], "options": key[1], "budget": key[2]}
        for k in ("f_n_acc", "f_d_drop", "f_r_drop", "gap", "fp_match"):
            row[f"{k} A"], row[f"{k} B"] = getattr(ra[key], k), getattr(rb[key], k)
            row[f"{k} B-A"] = getattr(rb[key], k) - getattr(ra[key], k)
        rows.append(row)
    if not rows:
        raise RecordError(f"{a!r} and {b!r} share no (dataset, options, budget)")
    return pd.DataFrame(rows)


__all__ = [
    "regenerate",
    "board_readme",
    "submit",
    "compare",
    "frame",
    "render_markdown",
    "results_section",
    "update_readme",
    "RecordError",
]
