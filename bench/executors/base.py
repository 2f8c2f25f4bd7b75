"""Where stages run: the :class:`Executor` protocol, what it is handed, and the process's one
``Accelerator``.

The runner (:mod:`bench.pipeline.run`) decides *what* runs; an executor only *where*: in this process
or worker processes (:class:`bench.executors.local.LocalExecutor`, ``--local``) or on Ray
(:class:`bench.executors.ray.executor.RayExecutor`). It gets two kinds of work: searches
(:class:`SearchSpec`: a stage's trials, each a call of the stage's job) and tasks (a cell's
analyses: plain calls), and hands back each as it finishes. A third (Ray Train workers for
data-parallel trials) fits the same protocol.

One ``accelerate.Accelerator`` per process (CONVENTIONS 19): Accelerate keeps its state per
process, so a second one with other settings fails. :func:`process_accelerator` creates it from
the suite's resources the first time a trial or task of this process needs it and hands the same
one to every later stage and analysis (the audit included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config.sections import Range, Resources

Job = Callable[..., dict]  # job(params, *, ckpt, report, acc) -> the trial's last result


@dataclass
class TrialOutcome:
    """One finished (or failed) trial: its settings, its last reported metrics, its checkpoint."""

    params: dict
    metrics: dict
    error: str | None = None
    file: Path | None = None


@dataclass(frozen=True)
class SearchSpec:
    """One stage's search: ``num_samples`` trials of ``job`` over ``ranges`` (first trial at
    ``start``; none searched: one trial), or one trial per name of ``grid`` (params
    ``{"configuration": name}``, in order), each resuming from ``trial_file(params)``."""

    stage: Any  # the pipeline's bench.pipeline.plan.Stage (its name, kind, cell, mode)
    job: Job
    trial_file: Callable[[dict], Path]
    ranges: dict[str, Range]
    start: dict[str, float]
    num_samples: int
    epochs: int
    grid: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.stage.name


@dataclass
class SearchResult:
    """Every trial of a search (failed ones with their reason), or why the search broke."""

    trials: list[TrialOutcome]
    error: str | None = None


class Executor(Protocol):
    def searches(self, specs: list[SearchSpec]) -> Iterator[tuple[SearchSpec, SearchResult]]:
        """Run the searches (at once where it can); yield each as it ends."""
        ...

    def tasks(self, calls: dict) -> Iterator[tuple[Any, Any, str | None]]:
        """Run zero-argument calls (at once where it can): ``(key, result, None)`` or ``(key,
        None, reason)`` as each ends."""
        ...


_ACCELERATOR: tuple[tuple, Any] | None = None


def process_accelerator(res: Resources):
    """This process's Accelerator for ``res`` (module docstring). A later run in the same
    process with other settings (a notebook, a test session) replaces it: Accelerate's state is
    reset first, the only way to change it."""
    global _ACCELERATOR
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    key = (res.gpus_per_worker == 0, res.precision)
    if _ACCELERATOR is not None and _ACCELERATOR[0] == key:
        return _ACCELERATOR[1]
    AcceleratorState._reset_state(reset_partial_state=True)
    from accelerate.utils import DataLoaderConfiguration

    # a stage's batch size is the global batch (dptq.engine.make_accelerator)
    acc = Accelerator(
        cpu=key[0],
        mixed_precision=res.precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    _ACCELERATOR = (key, acc)
    return acc
