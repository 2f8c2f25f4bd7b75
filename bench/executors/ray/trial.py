"""The worker side of Ray: what runs inside a Ray Tune trial and inside a Ray task.

A trial (:func:`trainable`) is a call of its stage's job (or, data-parallel, the driver of a
Ray Train run whose workers call it: :mod:`bench.executors.ray.train`) with the searched values over the
stage's start point: it resumes from its own checkpoint in the run folder (the one copy: the run
folder is the storage every node sees, so nothing is handed to Ray Tune to copy) and reports each
epoch's numbers, with the node it ran on, through ``tune.report``. A retried trial
(``FailureConfig``) therefore starts again from the last epoch its file holds.
"""

from __future__ import annotations

import hashlib

from .. import events
from ..base import SearchSpec, process_accelerator


def trainable(config: dict, *, spec: SearchSpec, resources, storage: str = "") -> None:
    """One trial of ``spec``: the stage's job with ``config`` (the searched values); with
    ``resources.workers > 1`` a Ray Train run of that many workers (:mod:`bench.executors.ray.train`)."""
    import ray
    import torch
    from ray import tune

    if resources.workers > 1:
        from .train import drive

        return drive(config, spec=spec, resources=resources, storage=storage)

    torch.set_num_threads(resources.threads)
    params = {**spec.start, **config}
    node, ip = ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()

    def report(epoch: int, result: dict) -> None:
        metrics = {k: v for k, v in result.items() if isinstance(v, int | float | str)}
        tune.report({**metrics, "node_id": node, "node_ip": ip, "workers": 1})

    acc = process_accelerator(resources)
    spec.job(params, ckpt=spec.trial_file(params), report=report, acc=acc)


def named_trainable(experiment: str):
    """:func:`trainable` under a name of its own per experiment. Ray Tune keeps a trainable and
    its ``with_parameters`` objects in the job's registry by the function's name: two searches
    running at once under one name would train each other's stage."""

    def fn(config: dict, **kwargs) -> None:
        trainable(config, **kwargs)

    tag = hashlib.sha256(experiment.encode()).hexdigest()[:10]
    fn.__name__ = fn.__qualname__ = f"_trainable_{tag}"
    return fn


def call(fn):
    """A task's call (an analysis), in a Ray worker."""
    return fn()


def call_forwarding(fn, lines):
    """A search driven from a Ray task: its progress lines go to the driver through ``lines``."""
    events.forward_to(lines.put)
    return fn()
