"""``bench.run``: a suite run into its folder (:func:`bench.pipeline.loop.run_suite`), then the
run's board, and (asked) its submission to the leaderboard; ``--smoke`` runs the suite's smoke
version (:mod:`bench.pipeline.smoke`). The library entry point behind ``python -m bench run``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config.suite import Suite, SuiteError
from ..executors.events import LOG
from ..names import run_folder
from ..records import store
from .loop import run_suite
from .result import RunResult

__all__ = ["RunResult", "run", "run_suite"]


def run(
    suite: Suite,
    run_dir: str | Path | None = None,
    *,
    address: str | None = None,
    fresh: bool = False,
    dry_run: bool = False,
    local: bool = False,
    workers: int | None = None,
    leaderboard: str | Path | None = "leaderboard",
    submit: bool = False,
    smoke: bool = False,
    seeds: tuple[int, ...] | None = None,
    cells: tuple[str, ...] | None = None,
) -> RunResult:
    """Run ``suite`` (the library entry point behind ``python -m bench run``).

    Runs every stage into ``run_dir`` (default ``runs/<name>``; :func:`run_suite`), writes the
    run's board (``RUN/board``: its rows beside ``leaderboard``'s) and, with ``submit``, adds its
    records to ``leaderboard``. ``smoke``: the suite's smoke version (:mod:`bench.pipeline.smoke`) into
    ``runs/<name>-smoke``, its checkpoints deleted as it goes, never submitted. ``local``: in this
    process (``workers`` processes), else on Ray (``address`` joins a cluster). ``seeds``: only
    the cells of these of the suite's seeds; ``cells``: only the cells whose key matches one of
    these globs (:func:`run_suite`). Bad input raises
    (:class:`bench.config.suite.SuiteError` and the like), before anything is written.
    """
    from ..board.leaderboard import regenerate

    board = Path(leaderboard) if leaderboard else None
    if smoke:
        from .smoke import describe, smoke_suite

        if submit:
            raise SuiteError("--smoke: a smoke run is never submitted; drop --submit")
        small = smoke_suite(suite)
        LOG.info(describe(suite, small))
        suite, board = small, None
        workers = workers or os.cpu_count() or 1
    if board is not None and not dry_run:
        store.load(board)  # a broken leaderboard stops the run before any work
    root = Path(run_dir or run_folder(suite.name))
    res = run_suite(
        suite,
        root,
        address=address,
        fresh=fresh,
        dry_run=dry_run,
        local=local,
        workers=workers or 1,
        keep_checkpoints=not smoke,
        seeds=None if smoke else seeds,
        cells=None if smoke else cells,
    )
    res.smoke = smoke
    if res.records:
        regenerate(root, root / "board", extra=[board] if board else [])
        res.board = root / "board" / "index.html"
    if submit and board is not None and res.records:
        from dptq.faults import failpoint

        res.added = store.add(res.records, board, source=root, notes=res.notes)
        failpoint("leaderboard:added")
        regenerate(board)
    return res
