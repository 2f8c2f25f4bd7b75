"""The Ray edge: the only module that imports Ray (Ray Tune for trials, Ray tasks for analyses).

A stage function becomes a trainable through ``tune.with_parameters`` (the suite and the data go
to the object store once, not into ``param_space``); ``param_space`` holds only the searched
settings. Each trial reports every epoch with its checkpoint (``tune.report``); a retried trial
(``FailureConfig(max_failures=retries)``) starts from the newer of its own file and Ray Tune's
copy (``tune.get_checkpoint``); an interrupted experiment is restored with its searcher
(``Tuner.restore``). The winner of a search comes from ``ResultGrid.get_best_result`` plus the
deterministic tie-break of :mod:`bench.search`. Analyses of different cells run as Ray tasks in
parallel, retried (``max_retries``) when their worker or node dies.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from dptq.io import atomic_file

from .events import Progress, failure_reason, log_event, say
from .plan import stage_epochs
from .search import TrialOutcome, best_of
from .suite import Range

TUNE_FILE = "state.pt"  # the stage checkpoint's name inside every Ray Tune checkpoint


def _pythonpath() -> str:
    parts = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


def init_ray(run_dir: Path, address: str | None, suite) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``), else start Ray on this machine, on loopback only."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        # a run on one machine talks over loopback only; Ray otherwise takes the machine's
        # outward address even for a local instance (read when Ray is first imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ray.is_initialized():
        return
    # workers import a suite's ``module:function`` models from where the command was run
    kwargs = dict(
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": _pythonpath()}},
    )
    if address:
        ray.init(address=address, **kwargs)
        return
    from ray._private import ray_constants

    # Ray was imported earlier in this process (tests, notebooks): the same switch, set directly
    ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] != "0"
    tmp = run_dir / "ray"
    if len(str(tmp)) > 40:  # Ray's unix sockets live under the temp dir (~107 characters at most)
        tmp = Path(tempfile.gettempdir()) / f"dptq-ray-{suite.digest()}"
    ray.init(num_cpus=os.cpu_count(), _temp_dir=str(tmp), **kwargs)


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
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "epoch" in result:  # a line per epoch while the stage trains
                progress.epoch(trial.trial_id, result["epoch"], epochs, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finished(trial.last_result or {}, failed=False)

        def on_trial_error(self, iteration, trials, trial, **info):
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
                _trainable, job=job, start=start, ckpt_for=ckpt_for, threads=res.threads
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

    def analyse(self, jobs: dict) -> Iterator[tuple[object, dict | None, str | None]]:
        """Every cell's analysis as a Ray task, in parallel; yields each as it finishes."""
        import ray

        init_ray(self.run_dir, self.address, self.suite)
        res = self.suite.resources
        task = ray.remote(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=self.suite.retries)(
            _run_job
        )
        pending = {task.remote(job): key for key, job in jobs.items()}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(done)
            try:
                yield key, ray.get(done), None
            except Exception as e:  # one cell's failure does not stop the others
                yield key, None, failure_reason(e)


def _run_job(job):
    return job()
