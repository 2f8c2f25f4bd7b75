"""Stages in this process, without Ray (``python -m bench run SUITE --local``).

The same stage functions, trial files and Optuna searcher settings as the Ray runner, so the
records are equal (``tests/test_runner.py``). A pair search asks Optuna directly (the same TPE
sampler, seed and start point that Ray Tune's ``OptunaSearch`` wraps) and runs its trials one
after another. Resuming needs no saved searcher: the sampler replays the same suggestions, and a
trial whose checkpoint is complete returns its last result without training. A trial that fails
is recorded as failed and the search goes on; there are no retries in-process.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
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

    def __init__(self, suite, run_dir: Path, out=say):
        self.suite, self.run_dir, self.out = suite, run_dir, out

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

    def analyse(self, jobs: dict) -> Iterator[tuple[object, dict | None, str | None]]:
        """Each cell's analysis in turn: (key, result, None) or (key, None, reason)."""
        for key, job in jobs.items():
            try:
                yield key, job(), None
            except Exception as e:  # one cell's failure does not stop the others
                yield key, None, failure_reason(e)
