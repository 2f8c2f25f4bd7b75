"""Data-parallel trials: a Ray Tune trial that drives a Ray Train run (``resources.workers > 1``).

Ray's current pattern (Ray Train V2, ``doc/source/train/user-guides/hyperparameter-optimization.rst``
in the Ray repository): the Tune trial function is only the Train *driver*. It starts
``ray.train.torch.TorchTrainer(train_fn_per_worker, scaling_config=ScalingConfig(...),
run_config=RunConfig(name=<stable per trial>, storage_path=<run folder>))`` and waits; the
workers' reports reach Tune through :class:`ray.tune.integration.ray_train.TuneReportCallback`,
so the search, its scheduler and the progress lines see a data-parallel trial as any other.

Inside each worker Ray has set up the process group (gloo on CPUs, NCCL on GPUs) and the
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables; Accelerate picks them up
(:func:`bench.executors.base.process_accelerator`) and prepares model, optimizer and loaders as in a
one-process trial: DDP, each worker taking its share of the stage's (global) batch
(``split_batches``), so N workers take the steps one process takes (``tests/test_distributed.py``;
batch norm in train mode uses each worker's own statistics, as DDP does without SyncBatchNorm,
which needs GPUs). The stage's job is the same function a one-process trial calls.

Checkpoints: rank 0 writes the stage's checkpoint to the trial's file in the run folder (the one
copy every node reads, as for any trial) and hands it to ``ray.train.report(..., checkpoint=...)``
each epoch; a restarted run (a worker lost, the trial retried by Tune, the driver killed and
the run resumed) starts from the newer of the two.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from dptq.engine import checkpoint_epoch

from ...config.sections import Resources
from ..base import SearchSpec, process_accelerator
from ..events import LOG

CKPT_NAME = "stage.pt"  # the trial's checkpoint file inside a Ray Train checkpoint


def workers_that_fit(res: Resources, cluster: dict) -> int:
    """How many of ``res.workers`` the cluster can run at once: by GPUs where a worker takes
    GPUs, else by CPUs."""
    if res.gpus_per_worker:
        fit = cluster.get("GPU", 0) / res.gpus_per_worker
    else:
        fit = cluster.get("CPU", 0) / res.cpus_per_worker
    return max(1, min(res.workers, math.floor(fit + 1e-9)))


def effective_resources(res: Resources, cluster: dict) -> Resources:
    """``res``, or one process per trial where the cluster has a single device for it (said in
    one line), or as many workers as fit."""
    if res.workers == 1:
        return res
    fit = workers_that_fit(res, cluster)
    device = "GPU" if res.gpus_per_worker else "CPU"
    have = cluster.get(device, 0)
    if fit == 1:
        LOG.warning(
            f"resources.workers {res.workers}: the cluster has {have:g} {device}(s) for "
            f"{getattr(res, device.lower() + 's_per_worker'):g} per worker, one device: each "
            f"trial trains in one process"
        )
        return res.single()
    if fit < res.workers:
        LOG.warning(
            f"resources.workers {res.workers}: the cluster holds {fit} workers of "
            f"{getattr(res, device.lower() + 's_per_worker'):g} {device}: each trial runs {fit}"
        )
        return replace(res, workers=fit)  # each worker's share kept, the trial's totals follow
    return res


def drive(config: dict, *, spec: SearchSpec, resources: Resources, storage: str) -> None:
    """The Tune trial as a Train driver: ``resources.workers`` workers run the stage's job."""
    from ray import train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    params = {**spec.start, **config}
    per_worker = {"CPU": resources.cpus_per_worker}
    if resources.gpus_per_worker:
        per_worker["GPU"] = resources.gpus_per_worker
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"params": params, "spec": spec, "resources": resources},
        torch_config=TorchConfig(backend="nccl" if resources.gpus_per_worker else "gloo"),
        scaling_config=train.ScalingConfig(
            num_workers=resources.workers,
            use_gpu=bool(resources.gpus_per_worker),
            resources_per_worker=per_worker,
        ),
        run_config=train.RunConfig(
            # stable across restarts of the trial and of the run: its stage and trial file
            name=f"{spec.name}-{spec.trial_file(params).stem}",
            storage_path=storage,
            # a lost worker fails the trial; Tune retries it (FailureConfig) from its checkpoint
            # and the row records the retry
            failure_config=train.FailureConfig(max_failures=0),
            checkpoint_config=train.CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def _worker(loop_config: dict) -> None:
    """One Ray Train worker: the stage's job with Accelerate's DDP over the run's workers."""
    import ray
    import torch
    import torch.distributed as dist
    from ray import train

    spec: SearchSpec = loop_config["spec"]
    res: Resources = loop_config["resources"]
    params = loop_config["params"]
    torch.set_num_threads(res.threads)
    ctx = train.get_context()
    rank, file = ctx.get_world_rank(), spec.trial_file(params)
    if rank == 0:
        _restore(train.get_checkpoint(), file)
    if dist.is_initialized():
        dist.barrier()  # every worker resumes from the file rank 0 brought up to date
    node, ip = ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()

    def report(epoch: int, result: dict) -> None:
        metrics = {k: v for k, v in result.items() if isinstance(v, int | float | str)}
        metrics |= {"node_id": node, "node_ip": ip, "workers": ctx.get_world_size()}
        if rank != 0 or not file.exists():
            train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            _link_or_copy(file, Path(tmp) / CKPT_NAME)
            train.report(metrics, checkpoint=train.Checkpoint.from_directory(tmp))

    acc = process_accelerator(res)
    if acc.num_processes != ctx.get_world_size():
        raise RuntimeError(
            f"Accelerate sees {acc.num_processes} process(es), Ray Train started "
            f"{ctx.get_world_size()}: the workers would train apart"
        )
    spec.job(params, ckpt=file, report=report, acc=acc)


def _restore(checkpoint, file: Path) -> None:
    """Bring the trial's file up to Ray Train's last checkpoint where that one is newer."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as folder:
        saved = Path(folder) / CKPT_NAME
        if saved.exists() and checkpoint_epoch(saved) > checkpoint_epoch(file):
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(".restore")
            shutil.copyfile(saved, tmp)
            tmp.replace(file)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)  # the same bytes: Ray copies them into its storage
    except OSError:
        shutil.copyfile(src, dst)
