"""Stages in this process, without Ray (``python -m bench run SUITE --local``).

The same stage functions, trial files and Optuna searcher settings as on Ray, so the records are
equal (``tests/test_runner.py``). A search asks Optuna directly (the same TPE sampler, seed and
start point that Ray Tune's ``OptunaSearch`` wraps) and runs its trials one after another.
Resuming needs no saved searcher: the sampler replays the same suggestions, and a trial whose
checkpoint is complete returns its last result without training. A trial that fails is recorded
as failed and the search goes on; there are no retries in-process.

``workers`` > 1 (``--workers N``; a ``--smoke`` run uses one per core): the searches of a wave and
the analyses of different cells run in that many worker processes (``spawn``, each with the
suite's torch threads) instead of one after another; every trial is seeded as before, so the
records are the same. With 1 (the default) everything runs in this process, for a debugger.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path

from . import events
from .base import SearchResult, SearchSpec, TrialOutcome, process_accelerator
from .events import LOG, Progress, failure_reason, log_event


class LocalExecutor:
    """Runs every search and task in this process, in order, or in ``workers`` processes."""

    def __init__(self, suite, run_dir: Path, workers: int = 1):
        self.suite, self.run_dir, self.workers = suite, run_dir, max(1, workers)
        self.resources = suite.resources.single()
        if suite.resources.workers > 1:
            LOG.warning(
                f"resources.workers {suite.resources.workers}: --local trains each trial in one "
                f"process (data-parallel trials run on Ray: leave out --local)"
            )

    def _pool(self, calls: dict) -> Iterator[tuple[object, object, str | None]]:
        """``calls`` in worker processes: (key, result, None) or (key, None, reason)."""
        n = min(self.workers, len(calls))
        ctx = multiprocessing.get_context("spawn")  # not fork: torch's threads do not survive it
        init = (self.resources.threads, events.printing())
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init, initargs=init) as pool:
            futures = {pool.submit(call): key for key, call in calls.items()}
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result(), None
                except Exception as e:  # one call's failure does not stop the others
                    yield futures[fut], None, failure_reason(e)

    def _trial(self, spec: SearchSpec, progress: Progress, params: dict) -> TrialOutcome:
        ckpt = spec.trial_file(params)
        acc = process_accelerator(self.resources)
        label = f"trial {progress.done + 1}"

        def report(epoch: int, result: dict) -> None:
            progress.epoch(label, epoch, result)

        try:
            result = spec.job(params, ckpt=ckpt, report=report, acc=acc)
            metrics = {k: v for k, v in result.items() if isinstance(v, int | float | str)}
            outcome = TrialOutcome(dict(params), metrics, None, ckpt)
        except Exception as e:  # a trial that goes bad is a result (a failed entry), not a crash
            reason = failure_reason(e)
            progress.event("failed", label, reason)
            outcome = TrialOutcome(dict(params), {}, reason)
        progress.finished(outcome.metrics, failed=outcome.error is not None)
        return outcome

    def search(self, spec: SearchSpec) -> SearchResult:
        """The trials of one search (Optuna ask/tell when something is searched)."""
        import optuna
        from optuna.distributions import FloatDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        log_event(self.run_dir, event="search", experiment=spec.name)
        if spec.grid:  # whole configurations, one trial each, in order
            progress = Progress(spec.name, len(spec.grid), spec.epochs, self.run_dir)
            return SearchResult(
                [self._trial(spec, progress, {"configuration": name}) for name in spec.grid]
            )
        total = spec.num_samples if spec.ranges else 1
        progress = Progress(spec.name, total, spec.epochs, self.run_dir)
        if not spec.ranges:
            return SearchResult([self._trial(spec, progress, dict(spec.start))])
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.suite.seed)
        )
        study.enqueue_trial({k: spec.start[k] for k in spec.ranges})
        dists = {k: FloatDistribution(r.low, r.high, log=r.log) for k, r in spec.ranges.items()}
        outcomes = []
        for _ in range(spec.num_samples):
            trial = study.ask(fixed_distributions=dists)
            outcome = self._trial(spec, progress, {**spec.start, **trial.params})
            if outcome.error is None:
                study.tell(trial, outcome.metrics["score"])
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            outcomes.append(outcome)
        return SearchResult(outcomes)

    def searches(self, specs: list[SearchSpec]) -> Iterator[tuple[SearchSpec, SearchResult]]:
        """The searches of a wave, one after another here, or in ``workers`` processes."""
        by_name = {s.name: s for s in specs}
        calls = {s.name: partial(self.search, s) for s in specs}
        for name, result, error in self.tasks(calls):
            yield by_name[name], result if error is None else SearchResult([], error)

    def tasks(self, calls: dict) -> Iterator[tuple[object, object, str | None]]:
        """Each call in turn (or in ``workers`` processes): (key, result, None) or (key, None,
        reason)."""
        if self.workers > 1 and len(calls) > 1:
            yield from self._pool(calls)
            return
        for key, call in calls.items():
            try:
                yield key, call(), None
            except Exception as e:  # one call's failure does not stop the others
                yield key, None, failure_reason(e)


def _init(threads: int, printing: bool) -> None:
    import torch

    torch.set_num_threads(threads)
    if printing:
        events.to_stdout()
