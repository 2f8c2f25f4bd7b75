"""Stages in this process, without Ray (``python -m bench run SUITE --local``).

The same stage functions, trial files and Optuna searcher settings as the Ray runner, so the
records are equal (``tests/test_runner.py``). A pair search asks Optuna directly (the same TPE
sampler, seed and start point that Ray Tune's ``OptunaSearch`` wraps) and runs its trials one
after another. Resuming needs no saved searcher: the sampler replays the same suggestions, and a
trial whose checkpoint is complete returns its last result without training. A trial that fails
is recorded as failed and the search goes on; there are no retries in-process.

``workers`` > 1 (``--workers N``; a ``--smoke`` run uses one per core): the searches of a wave and
the analyses of different cells run in that many worker processes (``spawn``, each with the
suite's torch threads) instead of one after another; every trial is seeded as before, so the
records are the same. With 1 (the default) everything runs in this process, for a debugger.
"""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path

from dptq.io import atomic_file

from .events import Progress, failure_reason, log_event, say
from .plan import stage_epochs
from .search import TrialOutcome
from .suite import Range


def _copier(src: Path) -> Callable[[Path], None]:
    def copy_to(dest: Path) -> None:
        with open(src, "rb") as fh, atomic_file(dest) as out:
            shutil.copyfileobj(fh, out)

    return copy_to


class LocalExecutor:
    """Runs every stage in this process, in order (tqdm bars and a line per epoch)."""

    def __init__(self, suite, run_dir: Path, out=say, workers: int = 1):
        self.suite, self.run_dir, self.out, self.workers = suite, run_dir, out, max(1, workers)

    def __getstate__(self):  # sent to a worker process: a printer that cannot go prints there
        state = dict(self.__dict__)
        try:
            pickle.dumps(state["out"])
        except Exception:
            state["out"] = say
        return state

    def _in_workers(self, calls: dict) -> Iterator[tuple[object, object, str | None]]:
        """``calls`` in worker processes: (key, result, None) or (key, None, reason)."""
        n = min(self.workers, len(calls))
        ctx = multiprocessing.get_context("spawn")  # not fork: torch's threads do not survive it
        threads = self.suite.resources.threads
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init, initargs=(threads,)) as pool:
            futures = {pool.submit(call): key for key, call in calls.items()}
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result(), None
                except Exception as e:  # one call's failure does not stop the others
                    yield futures[fut], None, failure_reason(e)

    def _trial(self, progress: Progress, name: str, job, ckpt: Path, params: dict | None):
        total = stage_epochs(self.suite, name)

        def report(epoch: int, result: dict) -> None:
            progress.epoch(name, epoch, total, result)

        try:
            args = (params,) if params is not None else ()
            result = job(*args, ckpt=ckpt, report=report, progress=True)
            metrics = {k: v for k, v in result.items() if isinstance(v, int | float)}
            outcome = TrialOutcome(dict(params or {}), metrics, None, _copier(ckpt))
        except Exception as e:  # a trial that goes bad is a result (a failed entry), not a crash
            reason = failure_reason(e)
            progress.event("failed", name, reason)
            outcome = TrialOutcome(dict(params or {}), {}, reason)
        progress.finished(outcome.metrics, failed=outcome.error is not None)
        return outcome

    def stage(self, name: str, job, ckpt: Path, artifact: Path) -> str | None:
        """A one-trial stage (teacher, KD); its final checkpoint becomes ``artifact``."""
        outcome = self._trial(Progress(name, 1, self.run_dir, self.out), name, job, ckpt, None)
        if outcome.error is None:
            outcome.copy_to(artifact)
        return outcome.error

    def search(
        self,
        name: str,
        job,
        ckpt_for: Callable[[dict], Path],
        ranges: dict[str, Range],
        start: dict,
        num_samples: int,
    ) -> tuple[list[TrialOutcome], float | None]:
        """The trials of one pair search (Optuna ask/tell); returns them and no top score."""
        import optuna
        from optuna.distributions import FloatDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        log_event(self.run_dir, event="search", experiment=name)
        progress = Progress(name, num_samples if ranges else 1, self.run_dir, self.out)
        if not ranges:
            return [self._trial(progress, name, job, ckpt_for(start), start)], None
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.suite.seed)
        )
        study.enqueue_trial({k: start[k] for k in ranges})
        dists = {k: FloatDistribution(r.low, r.high, log=r.log) for k, r in ranges.items()}
        outcomes = []
        for _ in range(num_samples):
            trial = study.ask(fixed_distributions=dists)
            params = {**start, **trial.params}
            outcome = self._trial(progress, name, job, ckpt_for(params), params)
            if outcome.error is None:
                study.tell(trial, outcome.metrics["score"])
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            outcomes.append(outcome)
        return outcomes, None

    def concurrently(self, calls: dict) -> Iterator[tuple[object, object, str | None]]:
        """The stages of a wave, one after another here, or in ``workers`` processes."""
        if self.workers > 1 and len(calls) > 1:
            yield from self._in_workers(calls)
            return
        for key, call in calls.items():
            yield key, call(), None

    def analyse(self, jobs: dict) -> Iterator[tuple[object, dict | None, str | None]]:
        """Each cell's analysis in turn: (key, result, None) or (key, None, reason)."""
        if self.workers > 1 and len(jobs) > 1:
            printer = self.__getstate__()["out"]
            yield from self._in_workers({k: partial(j, say=printer) for k, j in jobs.items()})
            return
        for key, job in jobs.items():
            try:
                yield key, job(say=self.out), None
            except Exception as e:  # one cell's failure does not stop the others
                yield key, None, failure_reason(e)


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
