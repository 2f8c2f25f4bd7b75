"""The training engine shared by every stage (ConvNeXt's ``engine.py`` shape).

A stage supplies a :class:`Loop`: ``step(batch) -> (loss, metrics)`` and ``evaluate() ->
metrics``. :func:`train_one_epoch` runs one epoch of it under an ``accelerate.Accelerator``
(device placement, gradient accumulation, mixed precision, several processes); :func:`fit` is
the thin loop around it: resume from the checkpoint, then per epoch train, evaluate (the
selection split, never the test split), write a checkpoint atomically (model states, optimiser,
scheduler, epoch, RNG state, config, history) and report. Each epoch's data order depends only on
(seed, epoch), so a resumed run sees the same batches as an uninterrupted one. The teacher, KD,
pair and audit trainers (:mod:`dptq.train`, :mod:`dptq.audit`) differ only in their step and
what they evaluate. One job in one module (over 300 lines): the loop, its checkpoint, resume and
the epoch selection (``Loop.select``) share one saved state.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .faults import failpoint
from .io import atomic_file


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (truncated, foreign, from another stage)."""


def cosine_lr(step: int, total_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Half-period cosine decay from ``base_lr`` at step 0 to ``min_lr`` at ``total_steps``."""
    t = min(step, total_steps) / max(total_steps, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t))


def cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, min_lr_ratio: float):
    """A LambdaLR following :func:`cosine_lr` for every parameter group (min = ratio x base)."""
    fn = lambda step: cosine_lr(step, total_steps, 1.0, min_lr_ratio)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` through :func:`atomic_file`."""
    with atomic_file(path) as fh:
        torch.save(obj, fh)


def load_checkpoint(path: Path, stage: str) -> dict:
    """Load a checkpoint with ``weights_only=True``; one clear error if it is unusable."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, foreign pickle, not a checkpoint at all
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(e).__name__}); delete it to redo stage '{stage}'"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("stage") != stage:
        found = ckpt.get("stage") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: checkpoint of stage {found!r}, expected {stage!r}; delete it or use another run folder"
        )
    return ckpt


def checkpoint_epoch(path: Path) -> int:
    """The epoch a stage's checkpoint reached (-1 when there is none or it cannot be read)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # missing, half written by a kill, or not a checkpoint
        return -1


@dataclass(kw_only=True)
class Loop:
    """Everything :func:`fit` needs from a stage (built with keywords).

    Attributes:
        name: the stage's name; checkpoints record it and refuse another stage's file.
        modules: what is trained and checkpointed, by name.
        optimizer: over the modules' parameters; a cosine schedule is attached by :func:`fit`.
        epochs, dataset, batch_size: what one epoch iterates over.
        step: ``(batch, prepared modules) -> (loss, metrics)``.
        evaluate: ``() -> metrics`` after each epoch (the selection split, never the test split).
        train_mode: puts the modules in training mode at the start of each epoch.
        on_epoch: ``(epoch) -> None`` at the start of each epoch (0-based; a resumed run calls
            it with the epoch it resumes at), for settings on a per-epoch schedule; None: none.
        min_lr_ratio: the schedule's floor, as a fraction of each group's learning rate.
        config: saved in every checkpoint.
        select: ``(epoch's evaluation) -> score`` (larger is better): :func:`fit` keeps the
            modules of the best-scoring epoch (the earliest on a tie) and ends with them and its
            evaluation (``selected_epoch``; ``epoch`` and ``seconds`` stay the whole run's);
            None: the last epoch's.
    """

    name: str
    modules: dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    epochs: int
    dataset: Dataset
    batch_size: int
    step: Callable[[tuple, dict[str, nn.Module]], tuple[torch.Tensor, dict]]
    evaluate: Callable[[], dict]
    train_mode: Callable[[], None]
    on_epoch: Callable[[int], None] | None = None
    min_lr_ratio: float = 0.0
    config: dict = field(default_factory=dict)
    select: Callable[[dict], float] | None = None


@dataclass
class RunOptions:
    """How (not what) to train: seed, device, precision, accumulation, workers, progress."""

    seed: int = 0
    cpu: bool = False
    mixed_precision: str = "no"
    grad_accum: int = 1
    num_workers: int = 0
    progress: bool = True
    callback: Callable[[str, int, dict], None] | None = None


def make_accelerator(opts: RunOptions) -> Accelerator:
    """The Accelerator of a stage. ``split_batches``: a stage's ``batch_size`` is the global
    batch, each of N data-parallel processes taking 1/N of it (one process: no change), so N
    workers take the steps one process takes (``tests/test_distributed.py``)."""
    return Accelerator(
        cpu=opts.cpu,
        mixed_precision=opts.mixed_precision,
        gradient_accumulation_steps=opts.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )


def _loader(loop: Loop, opts: RunOptions, epoch: int, acc: Accelerator) -> DataLoader:
    gen = torch.Generator().manual_seed(opts.seed * 100_003 + epoch)
    dl = DataLoader(
        loop.dataset,
        batch_size=loop.batch_size,
        shuffle=True,
        drop_last=True,
        generator=gen,
        num_workers=opts.num_workers,
        pin_memory=acc.device.type == "cuda",
        persistent_workers=False,
    )
    return acc.prepare_data_loader(dl) if acc.num_processes > 1 else dl


def train_one_epoch(
    loop: Loop,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader,
    acc: Accelerator,
    epoch: int,
    progress: bool,
) -> float:
    """One pass over ``loader``: the stage's step, backward, update, schedule; the mean loss.

    A non-finite loss stops the stage (``FloatingPointError``, naming it and the epoch).
    """
    if loop.on_epoch is not None:
        loop.on_epoch(epoch)
    loop.train_mode()
    bar = tqdm(
        loader,
        desc=f"{loop.name} {epoch + 1}/{loop.epochs}",
        disable=not (progress and acc.is_main_process),
        leave=False,
        dynamic_ncols=True,
    )
    loss_sum, n_steps = 0.0, 0
    for batch in bar:
        with acc.accumulate(*modules.values()):
            loss, metrics = loop.step(batch, modules)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"stage '{loop.name}': loss is {loss.item()} at epoch {epoch + 1}"
                )
            acc.backward(loss)
            optimizer.step()
            if acc.sync_gradients:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum, n_steps = loss_sum + float(loss.detach()), n_steps + 1
        bar.set_postfix({k: f"{float(v):.3g}" for k, v in metrics.items()})
    mean = acc.gather_for_metrics(torch.tensor([loss_sum / n_steps], device=acc.device))
    return float(mean.mean())


def _resume(loop: Loop, ckpt_path: Path, modules, optimizer, scheduler, acc) -> tuple:
    """(start epoch, history, epochs resumed at) from the stage's checkpoint, loaded in place."""
    ckpt = load_checkpoint(ckpt_path, loop.name)
    for k, m in modules.items():
        acc.unwrap_model(m).load_state_dict(ckpt["modules"][k])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"])
    start = ckpt["epoch"]
    return start, ckpt["history"], [*ckpt.get("resumed_from", []), start], ckpt.get("best")


def _states(modules: dict, acc) -> dict:
    """The modules' state dicts, copied (a later step must not change a kept epoch)."""
    return {
        k: {n: t.detach().clone() for n, t in acc.unwrap_model(m).state_dict().items()}
        for k, m in modules.items()
    }


def _selected(history: list, best: dict | None) -> dict:
    """The evaluation :func:`fit` ends with: the last epoch's, or the selected one's."""
    if best is None or best["epoch"] == len(history):
        return history[-1]
    last = {k: history[-1][k] for k in ("epoch", "seconds") if k in history[-1]}  # trained
    return {**history[best["epoch"] - 1], **last, "selected_epoch": best["epoch"]}


def fit(loop: Loop, ckpt_path: Path | None, opts: RunOptions, acc: Accelerator) -> dict:
    """Train ``loop`` for its epochs (resuming from ``ckpt_path``); returns the last evaluation
    (with ``loop.select``: the selected epoch's, the modules and the final checkpoint its).

    After each epoch (:func:`train_one_epoch`): the stage's evaluation, a checkpoint written
    whole, ``opts.callback(stage, epoch, result)`` (or a printed line; the last epoch's report
    is the selected evaluation).
    """
    steps_per_epoch = len(loop.dataset) // loop.batch_size // opts.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(
            f"stage '{loop.name}': batch size {loop.batch_size} x accumulation "
            f"{opts.grad_accum} exceeds the {len(loop.dataset)} training examples"
        )
    scheduler = cosine_scheduler(loop.optimizer, steps_per_epoch * loop.epochs, loop.min_lr_ratio)
    names = list(loop.modules)
    prepared = acc.prepare(*loop.modules.values(), loop.optimizer)
    modules = dict(zip(names, prepared[:-1]))
    optimizer = prepared[-1]
    start, history, resumed, best = 0, [], [], None
    if ckpt_path is not None and ckpt_path.exists():
        start, history, resumed, best = _resume(loop, ckpt_path, modules, optimizer, scheduler, acc)
        # the restored epoch is reported again: a caller killed between the save and its report
        # (a pre-empted Ray Tune driver) would otherwise never hear of it
        if history and opts.callback is not None:
            opts.callback(
                loop.name, start, _selected(history, best) if start >= loop.epochs else history[-1]
            )
        if start >= loop.epochs:
            return _selected(history, best) if history else loop.evaluate()
    for epoch in range(start, loop.epochs):
        began = time.perf_counter()
        loader = _loader(loop, opts, epoch, acc)
        loss = train_one_epoch(
            loop, modules, optimizer, scheduler, loader, acc, epoch, opts.progress
        )
        result = {"epoch": epoch + 1, "train_loss": loss, **loop.evaluate()}
        # wall seconds of training and evaluation so far, over every resume (metadata, not a score)
        before = history[-1].get("seconds", 0.0) if history else 0.0
        result["seconds"] = round(before + time.perf_counter() - began, 2)
        history.append(result)
        if loop.select is not None:
            score = float(loop.select(result))
            if best is None or score > best["score"]:
                best = {"epoch": epoch + 1, "score": score, "modules": _states(modules, acc)}
        last = epoch + 1 == loop.epochs
        if last and best is not None and best["epoch"] != epoch + 1:  # end on the selected
            for k, m in modules.items():
                acc.unwrap_model(m).load_state_dict(best["modules"][k])
        if ckpt_path is not None and acc.is_main_process:
            save_atomic(
                {
                    "stage": loop.name,
                    "epoch": epoch + 1,
                    "config": loop.config,
                    "modules": {k: acc.unwrap_model(m).state_dict() for k, m in modules.items()},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(),
                    "history": history,
                    "resumed_from": resumed,
                    "best": best,
                },
                ckpt_path,
            )
        if opts.progress and opts.callback is None and acc.is_main_process:  # else it reports
            shown = ", ".join(
                f"{k} {v:.4g}"
                for k, v in result.items()
                if isinstance(v, float | int) and k != "epoch"
            )
            tqdm.write(f"{loop.name} epoch {epoch + 1}/{loop.epochs}: {shown}")
        if opts.callback is not None:
            opts.callback(loop.name, epoch + 1, _selected(history, best) if last else result)
        failpoint(f"epoch:{loop.name}:{epoch + 1}")  # tests: a kill with this epoch on disk
    return _selected(history, best)
