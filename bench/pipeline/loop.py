"""The stage loop (``run_suite``): a suite's waves of stages to an executor, a wave at a time,
then every cell's record.

One stage loop: the plan's waves (:func:`bench.pipeline.plan.waves`: teachers, KD stages, pair
searches) go to an executor one wave at a time, every search of a wave at once where the
executor can; a stage whose summary exists is done and skipped; a stage whose inputs failed is
left out (its cell's record says why). The winner of each search is picked once
(:func:`bench.pipeline.search.best_of`) and its trial file is the stage's artifact. Then every
cell's chosen pairs are analysed and become a record (:mod:`bench.pipeline.cells`; the test
split is read there, once). Safe to call again on the same run folder after any interruption:
finished stages are kept, unfinished searches resume (their trials from their last epoch), and
records already written are reused. Layout of the run folder: :mod:`bench.names`.
"""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path

from dptq.io import write_json

from ..config.suite import Suite, SuiteError
from ..executors.base import SearchSpec
from ..executors.events import LOG
from ..names import Layout
from ..records import store
from . import plan, search, stages
from .cells import Failure, analyse_cells
from .folder import claim, executor, prepare
from .result import RunResult


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
    claim(suite, layout, fresh)
    if local:
        import torch

        torch.set_num_threads(suite.resources.threads)  # as a trial would
    ex = executor(suite, layout.root, local, address, workers)
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
