"""The driver side of Ray: searches as Ray Tune experiments, analyses as Ray tasks.

A stage's job becomes a trainable through ``tune.with_parameters`` (the suite and the data go
to the object store once, not into ``param_space``); ``param_space`` holds only the searched
settings (:class:`ray.tune.search.optuna.OptunaSearch`, first point the stage's start point). A
failed trial is retried (``FailureConfig(max_failures=retries)``) from its own checkpoint
(:mod:`bench.executors.ray.trial`); an interrupted experiment is restored with its searcher
(``Tuner.restore``). Every trial's outcome goes back to the runner, which picks the winner
(:func:`bench.pipeline.search.best_of`). The searches of a wave run concurrently, each driving its own
experiment from a Ray task on the driver's node, and the analyses of different cells run as Ray
tasks in parallel, retried (``max_retries``) when their worker or node dies.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from ..base import SearchResult, SearchSpec, TrialOutcome
from ..events import LOG, Progress, failure_reason, log_event
from .connect import init_ray
from .trial import call, call_forwarding, named_trainable

HEARTBEAT_S = 30.0  # seconds between "still analysing" lines
DRIVER_MEMORY = 256 * 2**20  # bytes a Ray Train driver trial reserves


def _callback(progress: Progress):
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
                progress.epoch(trial.trial_id, result["epoch"], result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            last = trial.last_result or {}
            progress.mark(
                "trial_end",
                trial.trial_id,
                node_ip=last.get("node_ip"),
                workers=last.get("workers"),
            )
            progress.finished(trial.last_result or {}, failed=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.mark("trial_end", trial.trial_id)
            event("failed", trial)
            progress.finished({}, failed=True)

        def on_trial_recover(self, iteration, trials, trial, **info):
            event("retry", trial)

    return Callback()


class RayExecutor:
    """Runs searches as Ray Tune experiments and tasks as Ray tasks (module docstring)."""

    def __init__(self, suite, run_dir: Path, address: str | None):
        self.suite, self.run_dir, self.address = suite, run_dir, address
        self.storage = str((run_dir / "tune").resolve())
        self._resources = None

    @property
    def resources(self):
        """The suite's resources, data-parallel trials cut to the workers the cluster holds
        (:func:`bench.executors.ray.train.effective_resources`; decided once, said in one line)."""
        if self._resources is None:
            import ray

            from .train import effective_resources

            init_ray(self.run_dir, self.address)
            self._resources = effective_resources(self.suite.resources, ray.cluster_resources())
        return self._resources

    def _trial_resources(self) -> dict:
        """What Tune reserves for a trial: its CPUs and GPUs, or for a Ray Train driver no CPU
        (it only waits; its workers ask for theirs) and a little memory (Tune refuses an empty
        reservation)."""
        res = self.resources
        if res.workers > 1:
            return {"cpu": 0, "gpu": 0, "memory": DRIVER_MEMORY}
        return {"cpu": res.cpus, "gpu": res.gpus}

    def search(self, spec: SearchSpec) -> SearchResult:
        """One search as a Ray Tune experiment (created, or restored with its searcher)."""
        from optuna.samplers import TPESampler
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        init_ray(self.run_dir, self.address)
        res, ranges = self.resources, spec.ranges
        trainable = tune.with_resources(
            tune.with_parameters(
                named_trainable(spec.name),
                spec=spec,
                resources=res,
                storage=str((self.run_dir / "train").resolve()),
            ),
            self._trial_resources(),
        )
        path = os.path.join(self.storage, spec.name)
        if tune.Tuner.can_restore(path):
            log_event(self.run_dir, event="restore", experiment=spec.name)
            # the callbacks (progress, event log) and the searcher come back with the experiment
            tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
        else:
            space = {
                k: (tune.loguniform if r.log else tune.uniform)(r.low, r.high)
                for k, r in ranges.items()
            }
            if spec.grid:  # whole configurations: one trial each (Ray Tune's grid search)
                space = {"configuration": tune.grid_search(list(spec.grid))}
            search_alg = scheduler = None
            if ranges:
                search_alg = OptunaSearch(
                    sampler=TPESampler(seed=self.suite.seed),
                    points_to_evaluate=[{k: spec.start[k] for k in ranges}],
                )
            if ranges and self.suite.search.asha:
                scheduler = ASHAScheduler(time_attr="epoch", max_t=spec.epochs, grace_period=1)
            samples = spec.num_samples if ranges else 1
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(
                    num_samples=samples,
                    # no trial waits for workers the cluster cannot give it
                    max_concurrent_trials=self._slots() if res.workers > 1 else None,
                    search_alg=search_alg,
                    scheduler=scheduler,
                    metric="score" if ranges else None,
                    mode="max" if ranges else None,
                ),
                run_config=tune.RunConfig(
                    name=spec.name,
                    storage_path=self.storage,
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=self.suite.retries),
                    callbacks=[
                        _callback(
                            Progress(
                                spec.name, len(spec.grid) or samples, spec.epochs, self.run_dir
                            )
                        )
                    ],
                ),
            )
        grid = tuner.fit()
        outcomes = []
        for r in grid:
            params = {**spec.start, **{k: r.config[k] for k in ranges}}
            if spec.grid:
                params = {"configuration": r.config["configuration"]}
            metrics = {
                k: v for k, v in (r.metrics or {}).items() if isinstance(v, int | float | str)
            }
            error = None if r.error is None else failure_reason(r.error)
            file = spec.trial_file(params) if error is None else None
            outcomes.append(TrialOutcome(params, metrics, error, file))
        if spec.grid:  # in the grid's order, as --local runs them (the tie-break's order)
            outcomes.sort(key=lambda t: spec.grid.index(t.params["configuration"]))
        return SearchResult(outcomes)

    def searches(self, specs: list[SearchSpec]) -> Iterator[tuple[SearchSpec, SearchResult]]:
        """The searches of a wave at once, each driving its experiment from a Ray task on this
        node, at most ``max_concurrent`` at a time (default: as many as fill the cluster); their
        progress lines come back through a queue. One search (or ``max_concurrent: 1``) runs
        in this process."""
        limit = self.suite.max_concurrent
        if len(specs) > 1 and limit != 1:
            init_ray(self.run_dir, self.address)
            limit = limit or self._fill(specs)
        if len(specs) <= 1 or limit == 1:
            for spec in specs:
                yield spec, self.search(spec)
            return
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        # the progress lines' queue lives with the driver too: a worker host lost mid-run would
        # take it along (tests/test_two_hosts.py)
        lines = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        # on this node: the run folder (trial files, Ray Tune's storage) is this node's disk
        task = ray.remote(num_cpus=0, max_retries=0, scheduling_strategy=here)(call_forwarding)
        todo, pending = list(specs), {}
        try:
            while todo or pending:
                while todo and len(pending) < limit:
                    spec = todo.pop(0)
                    pending[task.remote(partial(self.search, spec), lines)] = spec
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                self._print(lines)
                for ref in ready:
                    spec = pending.pop(ref)
                    try:
                        yield spec, ray.get(ref)
                    except Exception as e:  # a search that breaks does not stop the others
                        yield spec, SearchResult([], failure_reason(e))
            self._print(lines)
        finally:
            ray.kill(lines.actor)

    def _fill(self, specs: list[SearchSpec]) -> int:
        """How many searches keep the cluster busy: the trials it fits at once (by CPUs and GPUs
        per trial) over the trials one search runs at once; no more (each search is a process
        driving Ray Tune on this node)."""
        per_search = max((len(s.grid) or s.num_samples for s in specs), default=1)
        return max(1, math.ceil(self._slots() / per_search))

    def _slots(self) -> int:
        """Trials the cluster runs at once, by CPUs and GPUs per trial (all of its workers)."""
        import ray

        total, res = ray.cluster_resources(), self.resources
        slots = total.get("CPU", 1) / res.cpus
        if res.gpus:
            slots = min(slots, total.get("GPU", 0) / res.gpus)
        return max(1, math.floor(slots + 1e-9))

    def _print(self, lines) -> None:
        while not lines.empty():
            LOG.info(lines.get())

    def tasks(self, calls: dict) -> Iterator[tuple[object, object, str | None]]:
        """Every call as a Ray task with a trial's resources, in parallel; yields each as it
        finishes, and a line every 30 s while they run."""
        import ray

        init_ray(self.run_dir, self.address)
        res = self.resources  # an analysis runs in one process: a trial's, or one worker's
        task = ray.remote(
            num_cpus=res.cpus_per_worker,
            num_gpus=res.gpus_per_worker,
            max_retries=self.suite.retries,
        )(call)
        pending = {task.remote(fn): key for key, fn in calls.items()}
        total, t0 = len(pending), time.time()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=HEARTBEAT_S)
            finished = total - len(pending)
            elapsed = time.time() - t0
            if not ready:  # a line now and then while long analyses run
                eta = f", ETA {elapsed / finished * len(pending) / 60:.1f} min" if finished else ""
                LOG.info(
                    f"  [analyse] {finished}/{total} cell(s) done, {len(pending)} running or "
                    f"queued, {elapsed / 60:.1f} min so far{eta}"
                )
                continue
            key = pending.pop(ready[0])
            eta = elapsed / (finished + 1) * len(pending)
            LOG.info(f"  [analyse] cell {finished + 1}/{total} done, ETA {eta / 60:.1f} min")
            try:
                yield key, ray.get(ready[0]), None
            except Exception as e:  # one cell's failure does not stop the others
                yield key, None, failure_reason(e)
