"""The Ray edge: with :mod:`bench.ray_init`, the only code that imports Ray (Ray Tune for trials,
Ray tasks for analyses and for the searches of a stage, which run at once).

A stage function becomes a trainable through ``tune.with_parameters`` (the suite and the data go
to the object store once, not into ``param_space``); ``param_space`` holds only the searched
settings. Each trial reports every epoch with its checkpoint (``tune.report``); a retried trial
(``FailureConfig(max_failures=retries)``) starts from the newer of its own file and Ray Tune's
copy (``tune.get_checkpoint``); an interrupted experiment is restored with its searcher
(``Tuner.restore``). The winner of a search comes from ``ResultGrid.get_best_result`` plus the
deterministic tie-break of :mod:`bench.search`. Analyses of different cells run as Ray tasks in
parallel, retried (``max_retries``) when their worker or node dies. The searches (and KD stages) of
a stage run concurrently, each driving its own experiment from a Ray task on the driver's node
(:meth:`RayExecutor.concurrently`); every trainable is registered under a name of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from dptq.io import atomic_file

from . import events
from .events import Progress, failure_reason, log_event, say
from .plan import stage_epochs
from .ray_init import init_ray
from .search import TrialOutcome, best_of
from .suite import Range

TUNE_FILE = "state.pt"
HEARTBEAT_S = 30.0  # seconds between "still analysing" lines  # the stage checkpoint's name inside every Ray Tune checkpoint


def load_checkpoint_epoch(path: Path) -> int:
    """The epoch a trial's own checkpoint reached (-1 when it cannot be read: Ray Tune's wins)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # unreadable own file: take Ray Tune's copy instead of failing the trial
        return -1


def _restore_from_tune(ckpt_file: Path) -> None:
    """On a retry, take the last checkpoint Ray Tune kept for this trial unless a newer one is here.

    The trial's own file (written every epoch, atomically) is at least as new as Ray Tune's copy
    when it exists; on a node that cannot see it (no shared filesystem) Ray Tune's copy is used.
    """
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return
    with ckpt.as_directory() as d:
        theirs = load_checkpoint_epoch(Path(d) / TUNE_FILE)
        if ckpt_file.exists() and load_checkpoint_epoch(ckpt_file) >= theirs:
            return
        ckpt_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(d) / TUNE_FILE, ckpt_file)


def _reporter(ckpt_file: Path) -> Callable[[int, dict], None]:
    """Each epoch to Ray Tune: the numeric results, the node, the stage checkpoint."""
    import ray
    from ray import tune

    node = ray.get_runtime_context().get_node_id()

    def report(epoch: int, result: dict) -> None:
        with tempfile.TemporaryDirectory() as d:
            shutil.copy2(ckpt_file, Path(d) / TUNE_FILE)
            metrics = {k: v for k, v in result.items() if isinstance(v, int | float)}
            tune.report({**metrics, "node_id": node}, checkpoint=tune.Checkpoint.from_directory(d))

    return report


def _trainable(config: dict, *, job, start: dict | None, ckpt_for, threads: int) -> None:
    """Every trial: the stage ``job`` with the searched values ``config`` over ``start``."""
    torch.set_num_threads(threads)
    params = None if start is None else {**start, **config}
    ckpt = ckpt_for(params)
    _restore_from_tune(ckpt)
    args = () if params is None else (params,)
    job(*args, ckpt=ckpt, report=_reporter(ckpt))


def _named_trainable(experiment: str):
    """:func:`_trainable` under a name of its own per experiment. Ray Tune keeps a trainable and
    its ``with_parameters`` objects in the job's registry by the function's name: two searches
    running at once under one name would train each other's stage."""
    import hashlib

    def trainable(config: dict, **kwargs) -> None:
        _trainable(config, **kwargs)

    tag = hashlib.sha256(experiment.encode()).hexdigest()[:10]
    trainable.__name__ = trainable.__qualname__ = f"_trainable_{tag}"
    return trainable


def _callback(progress: Progress, epochs: int):
    from ray import tune

    def event(kind: str, trial) -> None:
        try:
            err = Path(trial.error_file).read_text() if trial.error_file else None
        except OSError:
            err = None
        last = trial.last_result or {}
        reason = failure_reason(err) if err is not None else "unknown"
        progress.event(kind, trial.trial_id, reason, last.get("node_id"), last.get("epoch"))

    class Callback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.mark("trial_start", trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "epoch" in result:  # a line per epoch while the stage trains
                progress.epoch(trial.trial_id, result["epoch"], epochs, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.mark("trial_end", trial.trial_id)
            progress.finished(trial.last_result or {}, failed=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.mark("trial_end", trial.trial_id)
            event("failed", trial)
            progress.finished({}, failed=True)

        def on_trial_recover(self, iteration, trials, trial, **info):
            event("retry", trial)

    return Callback()


def _copier(result) -> Callable[[Path], None]:
    def copy_to(dest: Path) -> None:  # copied beside it, then renamed: never half a file
        with result.checkpoint.as_directory() as d, atomic_file(dest) as fh:
            with open(Path(d) / TUNE_FILE, "rb") as src:
                shutil.copyfileobj(src, fh)

    return copy_to


class RayExecutor:
    """Runs the stages as Ray Tune experiments and the analyses as Ray tasks."""

    def __init__(self, suite, run_dir: Path, address: str | None, out=say):
        self.suite, self.run_dir, self.address, self.out = suite, run_dir, address, out
        self.storage = str((run_dir / "tune").resolve())

    def _fit(self, name, job, ckpt_for, start, space, num_samples, search_alg=None, scheduler=None):
        from ray import tune

        init_ray(self.run_dir, self.address, self.suite)  # only when a stage has work to do
        res = self.suite.resources
        trainable = tune.with_resources(
            tune.with_parameters(
                _named_trainable(name), job=job, start=start, ckpt_for=ckpt_for, threads=res.threads
            ),
            {"cpu": res.cpus, "gpu": res.gpus},
        )
        path = os.path.join(self.storage, name)
        if tune.Tuner.can_restore(path):
            log_event(self.run_dir, event="restore", experiment=name)
            # the callbacks (progress, event log) and the searcher come back with the experiment
            tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(
                    num_samples=num_samples,
                    search_alg=search_alg,
                    scheduler=scheduler,
                    metric="score" if start is not None else None,
                    mode="max" if start is not None else None,
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=self.storage,
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=self.suite.retries),
                    # the latest epoch only: a retry resumes from it and the winner is its last
                    # epoch (every epoch kept filled 2 GB per resnet18 pair trial at 8 epochs)
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=[
                        _callback(
                            Progress(name, num_samples, self.run_dir, self.out),
                            stage_epochs(self.suite, name),
                        )
                    ],
                ),
            )
        return tuner.fit()

    def stage(self, name: str, job, ckpt: Path, artifact: Path) -> str | None:
        """A one-trial stage (teacher, KD) as an experiment; its final checkpoint -> ``artifact``."""
        grid = self._fit(name, job, lambda _: ckpt, None, {}, 1)
        if grid[0].error is not None:
            return failure_reason(grid[0].error)
        _copier(grid[0])(artifact)
        return None

    def search(
        self,
        name: str,
        job,
        ckpt_for: Callable[[dict], Path],
        ranges: dict[str, Range],
        start: dict,
        num_samples: int,
    ) -> tuple[list[TrialOutcome], float | None]:
        """One pair search: OptunaSearch over ``ranges`` (first point ``start``), optional ASHA."""
        from optuna.samplers import TPESampler
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        space = {
            k: (tune.loguniform if r.log else tune.uniform)(r.low, r.high)
            for k, r in ranges.items()
        }
        search_alg = None
        if ranges:
            search_alg = OptunaSearch(
                sampler=TPESampler(seed=self.suite.seed),
                points_to_evaluate=[{k: start[k] for k in ranges}],
            )
        scheduler = None
        if self.suite.search.asha:
            scheduler = ASHAScheduler(
                time_attr="epoch", max_t=self.suite.pair.epochs, grace_period=1
            )
        grid = self._fit(
            name, job, ckpt_for, start, space, num_samples if ranges else 1, search_alg, scheduler
        )
        outcomes = [
            TrialOutcome(
                {**start, **{k: r.config[k] for k in ranges}},
                {k: v for k, v in (r.metrics or {}).items() if isinstance(v, int | float)},
                None if r.error is None else failure_reason(r.error),
                _copier(r) if r.error is None and r.checkpoint is not None else None,
            )
            for r in grid
        ]
        top = None
        if best_of(outcomes) is not None:
            top = grid.get_best_result(metric="score", mode="max", scope="last").metrics["score"]
        return outcomes, top

    def concurrently(self, calls: dict) -> Iterator[tuple[object, object, str | None]]:
        """Run the zero-argument ``calls`` (each a whole stage or search, driving its own Ray Tune
        experiment) at once, as Ray tasks on this node, at most ``max_concurrent`` at a time;
        yields ``(key, result, None)`` or ``(key, None, reason)`` as each ends. Their progress
        lines come back through a queue and are printed here. One call (or ``max_concurrent:
        1``) runs in this process."""
        limit = self.suite.max_concurrent
        if len(calls) > 1 and limit != 1:
            init_ray(self.run_dir, self.address, self.suite)
            limit = limit or self._fill()
        if len(calls) <= 1 or limit == 1:
            for key, call in calls.items():
                yield key, call(), None
            return
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        lines = Queue(actor_options={"num_cpus": 0})
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        # on this node: the run folder (trial files, Ray Tune's storage) is this node's disk
        task = ray.remote(num_cpus=0, max_retries=0, scheduling_strategy=here)(_call_printing)
        todo, pending = list(calls.items()), {}
        while todo or pending:
            while todo and len(pending) < limit:
                key, call = todo.pop(0)
                pending[task.remote(call, lines)] = key
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            self._print(lines)
            for ref in ready:
                key = pending.pop(ref)
                try:
                    yield key, ray.get(ref), None
                except Exception as e:  # a search that breaks does not stop the others
                    yield key, None, failure_reason(e)
        self._print(lines)
        ray.kill(lines.actor)

    def _fill(self) -> int:
        """How many searches keep the cluster busy: the trials it fits at once (by CPUs and GPUs
        per trial) over the trials one search runs at once; no more (each search is a process
        driving Ray Tune on this node)."""
        import math

        import ray

        total, res = ray.cluster_resources(), self.suite.resources
        slots = total.get("CPU", 1) / res.cpus
        if res.gpus:
            slots = min(slots, total.get("GPU", 0) / res.gpus)
        per_search = self.suite.search.num_samples if self.suite.search.ranges() else 1
        return max(1, math.ceil(slots / per_search))

    def _print(self, lines) -> None:
        while not lines.empty():
            self.out(lines.get())

    def analyse(self, jobs: dict) -> Iterator[tuple[object, dict | None, str | None]]:
        """Every cell's analysis as a Ray task, in parallel; yields each as it finishes."""
        import ray

        init_ray(self.run_dir, self.address, self.suite)
        res = self.suite.resources
        task = ray.remote(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=self.suite.retries)(
            _run_job
        )
        pending = {task.remote(job): key for key, job in jobs.items()}
        total, t0 = len(pending), time.time()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=HEARTBEAT_S)
            finished = total - len(pending)
            elapsed = time.time() - t0
            if not ready:  # a line now and then while long analyses run
                eta = f", ETA {elapsed / finished * len(pending) / 60:.1f} min" if finished else ""
                self.out(
                    f"  [analyse] {finished}/{total} cell(s) done, {len(pending)} running or "
                    f"queued, {elapsed / 60:.1f} min so far{eta}"
                )
                continue
            key = pending.pop(ready[0])
            eta = elapsed / (finished + 1) * len(pending)
            self.out(f"  [analyse] cell {finished + 1}/{total} done, ETA {eta / 60:.1f} min")
            try:
                yield key, ray.get(ready[0]), None
            except Exception as e:  # one cell's failure does not stop the others
                yield key, None, failure_reason(e)


def _run_job(job):
    return job()


def _call_printing(call, lines):
    """A stage or search inside a Ray task: what it prints goes to the driver through ``lines``."""
    events.SINK = lines.put
    return call()
