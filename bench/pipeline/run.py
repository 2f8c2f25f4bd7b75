"""``bench.run``: a suite's stages in order, then its records, its views and (asked) its submission.

One stage loop: the plan's waves (:func:`bench.pipeline.plan.waves`: teachers, KD stages, pair searches)
go to an executor one wave at a time, every search of a wave at once where the executor can; a
stage whose summary exists is done and skipped; a stage whose inputs failed is left out (its
cell's record says why). The winner of each search is picked once (:func:`bench.pipeline.search.best_of`)
and its trial file is the stage's artifact. Then every cell's chosen pairs are analysed and
become a record (:mod:`bench.pipeline.cells`; the test split is read there, once). The runner decides
only *where* each stage runs (:class:`bench.executors.local.LocalExecutor` or
:class:`bench.executors.ray.executor.RayExecutor`); the stages themselves are :mod:`bench.pipeline.stages`.
Safe to call again on the same run folder after any interruption: finished stages are kept,
unfinished searches resume (their trials from their last epoch), and records already written
are reused. Layout of the run folder: :mod:`bench.names`. One job, kept in one module: a run
from its suite to its records (the stage loop), with the smoke run, board and submission around it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import yaml

from dptq.io import write_atomic, write_json

from ..config.suite import Suite, SuiteError, parse_suite, suite_text
from ..executors.base import SearchSpec
from ..executors.events import LOG, log_event
from ..names import Layout, run_folder
from ..records import store
from . import plan, search, stages
from .cells import Failure, analyse_cells


@dataclass
class RunResult:
    """What a run made: its records, its failures, its plan; the run's board page, and how many
    records went to the leaderboard (``submit``)."""

    records: list
    failed: list[Failure]
    plan: list
    run_dir: Path
    board: Path | None = None
    added: int = 0
    smoke: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every stage finished, 1 some failed."""
        return 1 if self.failed else 0

    def invalid(self) -> list[str]:
        """A line per row that does not count, with its reasons."""
        return [
            f"INVALID {r.id}: {'; '.join(r.invalid_reasons)}"
            for r in self.records
            if r.error is None and not r.valid
        ]

    def smoke_verdict(self) -> str:
        """One line: the smoke run passed, or which cells broke (their reasons are above)."""
        cells = len(self.records)
        broken = [r.id.split("/")[2] for r in self.records if r.error]
        if not self.failed and not broken:
            return f"smoke passed: {cells} cell(s), every stage and analysis ran end to end"
        named = ", ".join(broken) if broken else "none (a stage failed, above)"
        return f"smoke FAILED: {len(broken)} of {cells} cell(s) broken: {named}"


def prepare(suite: Suite, run_dir: Path, dry_run: bool):
    """Load the data and plan the cells; everything that can be wrong fails here, in one line."""
    from dptq.data import UnreadableImages

    downloads = bool(getattr(suite.dataset.options, "download", False))
    # a dry run never downloads; otherwise a missing dataset fails here, before any stage
    try:
        data = None if (dry_run and downloads) else suite.dataset.load(suite.protocol)
    except UnreadableImages as e:
        raise SuiteError(
            f"dataset: {e}, or set 'bad_images: skip' under the suite's dataset to leave them out"
        ) from None
    num_classes = data.num_classes if data is not None else 10  # L does not depend on it
    cells = plan.cells(suite, num_classes)
    LOG.info(plan.describe(suite, cells, run_dir))
    if data is not None and data.skipped:
        shown = ", ".join(data.skipped[:10]) + (" ..." if len(data.skipped) > 10 else "")
        LOG.info(
            f"warning: {len(data.skipped)} unreadable image(s) left out (bad_images: skip): {shown}"
        )
    return data, cells


def _claim(suite: Suite, layout: Layout, fresh: bool) -> None:
    """Create the run folder for ``suite``; refuse one that holds another suite's run."""
    if fresh and layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    if layout.suite_file.exists() and not _same_suite(layout.suite_file, suite):
        raise SuiteError(
            f"{layout.root}: holds a run of a different suite; use --fresh or another --out"
        )
    write_atomic(layout.suite_file, suite_text(suite))
    log_event(layout.root, event="start", suite=suite.name, suite_hash=suite.digest())


def _same_suite(file: Path, suite: Suite) -> bool:
    """Whether the run folder's ``suite.yaml`` is ``suite``: equal hashes, so a run started
    before an upgrade that added a field (at its default) resumes after it."""
    try:
        return parse_suite(yaml.safe_load(file.read_text()), str(file)).digest() == suite.digest()
    except (SuiteError, yaml.YAMLError):
        return False


def _executor(suite, root: Path, local: bool, address: str | None, workers: int):
    if local:
        from ..executors.local import LocalExecutor

        return LocalExecutor(suite, root, workers)
    from ..executors.ray.executor import RayExecutor

    return RayExecutor(suite, root, address)


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

        res.added = store.add(res.records, board, source=root)
        failpoint("leaderboard:added")
        regenerate(board)
    return res


def run_suite(
    suite: Suite,
    run_dir: str | Path,
    address: str | None = None,
    fresh: bool = False,
    dry_run: bool = False,
    local: bool = False,
    workers: int = 1,
    keep_checkpoints: bool = True,
    seeds: tuple[int, ...] | None = None,
    cells: tuple[str, ...] | None = None,
) -> RunResult:
    """Every stage of ``suite`` under ``run_dir``, then its records (module docstring).

    ``keep_checkpoints=False`` (a smoke run): a search's losing trials are deleted once its
    winner is chosen, and every checkpoint (with the stage summaries naming them) once the
    records are written (a 224 px grid keeps about 12 GB otherwise); records, reports and events
    stay, and the same command again trains the stages anew and reuses the records.

    ``seeds``: only the cells of these seeds (and the stages they need). A cell depends on its
    own seed's stages only (with ``share_stages``, on the first seed's teacher and KD), so their
    records are the whole run's, and a later run without ``seeds`` reuses them and does the rest:
    a long suite gives its first seed's records hours before its last.

    ``cells``: likewise, only the cells whose key (``<student>-<version>-<budget>-s<seed>``, e.g.
    ``resnet18-II-130-s0``) matches one of these shell-style globs (``resnet18-*``, ``*-II-*``): a
    grid split into parts that each finish on their own (over machines, or over days).
    """
    layout = Layout(Path(run_dir).resolve())
    plan.select([], suite, seeds)  # an unknown seed is one line before anything is read
    patterns = cells
    data, cells = prepare(suite, layout.root, dry_run)
    n, cells = len(cells), plan.select(cells, suite, seeds, patterns)
    if patterns is not None:
        LOG.info(f"--cells: {len(cells)} of {n} cells: {', '.join(c.key for c in cells)}")
    if dry_run:
        return RunResult([], [], cells, layout.root)
    address = address or os.environ.get("RAY_ADDRESS")
    if not local and address:  # before anything is written: one line if it cannot be reached
        from ..executors.ray.connect import check_reachable

        check_reachable(address)
    _claim(suite, layout, fresh)
    if local:
        import torch

        torch.set_num_threads(suite.resources.threads)  # as a trial would
    ex = _executor(suite, layout.root, local, address, workers)
    done: dict[str, dict] = {}  # stage name -> its summary
    failed: list[Failure] = []
    for wave in plan.waves(suite, cells):
        specs, stages_of = [], {stage.name: stage for stage in wave}
        for stage in wave:
            if layout.summary(stage.name).exists():
                done[stage.name] = _finished(suite, stage, layout)
            elif all(n in done for n in stage.needs):  # else its inputs failed
                LOG.info(f"stage {stage.name}")
                specs.append(_spec(suite, data, stage, layout, done))
        for spec, result in ex.searches(specs):
            failed += [Failure(spec.name, t.error) for t in result.trials if t.error]
            if result.error is not None:
                failed.append(Failure(spec.name, result.error))
            best = search.best_of(result.trials)
            if best is None:
                continue
            info = search.summary(best, result.trials, layout.root)
            info["settings"] = plan.stage_settings(suite, stages_of[spec.name])
            write_json(layout.summary(spec.name), info)  # marks the stage done: last, whole
            done[spec.name] = info
            if not keep_checkpoints:
                for t in result.trials:
                    if t.file is not None and t.file != best.file:
                        t.file.unlink(missing_ok=True)
                shutil.rmtree(layout.tune / spec.name, ignore_errors=True)
    built = analyse_cells(suite, data, cells, layout, ex, done, failed)
    if not keep_checkpoints:  # the stages' summaries name the deleted files: they go too
        for folder in (layout.trials, layout.tune, layout.artifacts):
            shutil.rmtree(folder, ignore_errors=True)
        LOG.info("checkpoints deleted (records, reports and events kept)")
    return RunResult(built, failed, cells, layout.root)


def _finished(suite: Suite, stage: plan.Stage, layout: Layout) -> dict:
    """A finished stage's summary, its checkpoint checked first: a truncated, foreign or other
    stage's file, or one trained from other settings (:func:`bench.pipeline.plan.stage_settings`, e.g.
    copied from another suite), stops the run here in one line, not inside a later stage."""
    from dptq.engine import load_checkpoint

    file = layout.summary(stage.name)
    info = store.read_json(file)
    expected = plan.stage_settings(suite, stage)
    if info.get("settings", expected) != expected:  # a summary from before settings: as it is
        raise SuiteError(
            f"{file}: stage {stage.name} was trained from other settings than suite "
            f"{suite.name!r} gives it (copied from another suite?); delete it and "
            f"trials/{stage.name}/ to train it here, or copy it from a suite whose settings match"
        )
    kind = f"pair-{stage.mode}" if stage.kind == "pair" else stage.kind
    load_checkpoint(layout.root / info["file"], kind)
    return info


def _spec(suite, data, stage: plan.Stage, layout: Layout, done: dict) -> SearchSpec:
    """A stage as the executor runs it: its job with the files it reads, its trials' space."""
    file = lambda name: layout.root / done[name]["file"]  # noqa: E731
    inputs: dict = {}
    ranges, start, samples, grid = {}, {}, 1, ()
    if stage.kind == "kd":
        inputs["teacher"] = file(stage.needs[0])
    elif stage.kind == "pair":
        kd = stage.needs[0]
        inputs = {"kd": file(kd), "f_n_acc": stages.f_n_accuracy(done[kd])}
        robust = stage.cell.search("robust")
        if robust in done:
            inputs["robust"] = file(robust)
        grid = search.grid(suite, stage.mode)
        ranges, start = ({}, {}) if grid else search.space(suite)
        samples = search.num_trials(suite, stage.mode)
    return SearchSpec(
        stage,
        stages.job(suite, data, stage, inputs),
        partial(layout.trial, stage.name),
        ranges,
        start,
        samples,
        stage.epochs(suite),
        grid,
    )
