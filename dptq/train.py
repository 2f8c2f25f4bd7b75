"""The three trainers of the pipeline (Fig. 1 A-C) and their evaluation.

1. :func:`train_teacher`: the black box, supervised with label smoothing (AdamW, cosine).
2. :func:`distill`: patient-and-consistent KD into a random student (Sect. 3.1): the teacher is only
   queried for logits on the same augmented, mixed-up batch the student sees; KL at tau, no labels.
3. :func:`train_pair`: a copy of f_N with its own policy, trained with Eq. 9 or 10 against the frozen
   f_N (self-distillation, Sect. 3.2-3.4).

Each returns its evaluation; all share :func:`dptq.engine.fit`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from . import knapsack
from .data import (
    AugmentConfig,
    DatasetPair,
    kd_augmentation,
    mixup,
    normalize,
    with_train_transform,
)
from .engine import ConfigError, Loop, RunOptions, check_positive, fit
from .losses import kd_loss
from .models import QuantizableModel
from .pair import PairConfig, pair_step
from .policy import create_policy


@dataclass(frozen=True)
class StageConfig:
    """Hyperparameters of the teacher or the KD stage (defaults: the paper's KD stage).

    Attributes:
        epochs, batch_size: length of the stage (the paper: teacher 20 x 128, KD 1000 x 256).
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adamw"``.
        lr, min_lr: cosine schedule from ``lr`` to ``min_lr`` over all steps.
        weight_decay, momentum: optimiser settings.
        label_smoothing: teacher only (the paper: 0.1).
        tau: KD temperature (the paper: 5).
        augment: the per-image augmentation; None trains on the plain images.
        mixup: batch mixup with lam ~ U(0, 1) (KD only).
    """

    epochs: int = 1000
    batch_size: int = 256
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    min_lr: float = 0.0
    weight_decay: float = 1e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    tau: float = 5.0
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    mixup: bool = True

    def __post_init__(self):
        check_positive(self, "epochs", "batch_size", "lr", "tau")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer: {self.optimizer!r} is not one of 'sgd', 'adamw'")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr: {self.min_lr} must lie in [0, lr = {self.lr}]")


TEACHER_DEFAULTS = StageConfig(
    epochs=20,
    batch_size=128,
    optimizer="adamw",
    lr=4e-4,
    min_lr=4e-7,
    weight_decay=0.05,
    label_smoothing=0.1,
    augment=AugmentConfig(randaugment=False, color_jitter=False, crop_padding=False, mixup=False),
    mixup=False,
)


class BlackBox:
    """Query-only access to a trained model: logits for a batch, no gradients, no weights."""

    def __init__(self, model: nn.Module):
        self._model = model.eval()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._model(x)


def _optimizer(params, cfg: StageConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def predict(
    model: Callable, data: DatasetPair, acc: Accelerator, bits_fn=None, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and labels on the test split (in order), FP or with ``bits_fn(x)``.

    Puts ``model`` in eval mode (batch-norm running statistics); the caller's training loop sets
    train mode again at the next epoch.
    """
    if isinstance(model, nn.Module):
        model.eval()
    preds, labels = [], []
    for images, y in DataLoader(data.test, batch_size=batch_size, shuffle=False):
        x = normalize(images.to(acc.device), data.mean, data.std)
        logits = model(x) if bits_fn is None else model(x, bits_fn(x))
        preds.append(logits.argmax(1).cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: Callable, data: DatasetPair, acc: Accelerator, bits_fn=None) -> float:
    pred, y = predict(model, data, acc, bits_fn)
    return (pred == y).float().mean().item() * 100


def train_teacher(
    model: nn.Module,
    data: DatasetPair,
    cfg: StageConfig,
    ckpt: Path | None,
    opts: RunOptions,
    acc: Accelerator,
) -> dict:
    """Supervised training of the black box with label smoothing."""

    def step(batch, mods):
        images, y = batch
        x = normalize(images.to(acc.device), data.mean, data.std)
        logits = mods["model"](x)
        loss = F.cross_entropy(logits, y.to(acc.device), label_smoothing=cfg.label_smoothing)
        return loss, {"loss": loss.detach()}

    return _fit_stage("teacher", "model", model, data, cfg, step, ckpt, opts, acc)


def distill(
    student: nn.Module,
    teacher: BlackBox,
    data: DatasetPair,
    cfg: StageConfig,
    ckpt: Path | None,
    opts: RunOptions,
    acc: Accelerator,
) -> dict:
    """Patient-and-consistent KD (Sect. 3.1): KL(teacher || student) at ``tau`` on mixed-up views."""

    def step(batch, mods):
        images, _ = batch  # labels are never used: the teacher labels every view
        x = normalize(images.to(acc.device), data.mean, data.std)
        if cfg.mixup:
            x = mixup(x)
        loss = kd_loss(mods["student"](x), teacher(x), cfg.tau)
        return loss, {"kd": loss.detach()}

    return _fit_stage("kd", "student", student, data, cfg, step, ckpt, opts, acc)


def _fit_stage(name, key, model, data, cfg: StageConfig, step, ckpt, opts, acc) -> dict:
    """The teacher and KD stages: one model, its optimiser, test accuracy after each epoch."""
    train = _train_split(data, cfg)
    loop = Loop(
        name,
        {key: model},
        _optimizer(model.parameters(), cfg),
        cfg.epochs,
        train,
        cfg.batch_size,
        step,
        lambda: {"test_acc": accuracy(model, data, acc)},
        model.train,
        cfg.min_lr / cfg.lr,
        {"stage": asdict(cfg)},
    )
    return fit(loop, ckpt, opts, acc)


def _train_split(data: DatasetPair, cfg: StageConfig):
    if not cfg.augment:
        return data.train
    return with_train_transform(data, kd_augmentation(_size(data), cfg.augment))


def _size(data: DatasetPair) -> int:
    return int(data.test[0][0].shape[-1])


def own_policy_bits(policy: nn.Module, options, budget: int) -> Callable:
    """Deterministic bits of a trained policy: its scores through the knapsack (no sampling)."""

    def bits_fn(x):
        return knapsack.bits(knapsack.solve_hard(policy.eval()(x), options, budget), options)

    return bits_fn


def random_policy_bits(num_layers: int, options, budget: int, seed: int) -> Callable:
    """A budget-respecting random policy; the same seed gives the same bit vectors."""
    gen = torch.Generator().manual_seed(seed)

    def bits_fn(x):
        scores = knapsack.random_scores(x.shape[0], num_layers, len(options), gen, x.device)
        return knapsack.bits(knapsack.solve_hard(scores, options, budget), options)

    return bits_fn


def uniform_policy_bits(num_layers: int, options, budget: int) -> Callable:
    """The most even allocation of the budget, the same for every example."""

    def bits_fn(x):
        scores = knapsack.uniform_scores(x.shape[0], num_layers, options, budget).to(x.device)
        return knapsack.bits(knapsack.solve_hard(scores, options, budget), options)

    return bits_fn


def evaluate_pair(
    student: QuantizableModel,
    policy: nn.Module,
    data: DatasetPair,
    cfg: PairConfig,
    budget: int,
    acc: Accelerator,
    seed: int = 0,
) -> dict:
    """FP accuracy, quantized accuracy with the pair's own policy, drop, and per-example correctness.

    Also the same network under a random budgeted policy and the uniform allocation (the
    cross-policy signature of Table 3). Every evaluated bit vector is checked against the budget.
    """
    student.eval()
    checked = []

    def checking(fn):
        def wrapped(x):
            bits = fn(x)
            checked.append(bool(bits.sum(1).eq(budget).all()))
            return bits

        return wrapped

    fp_pred, y = predict(student, data, acc)
    q_pred, _ = predict(student, data, acc, checking(own_policy_bits(policy, cfg.options, budget)))
    r_pred, _ = predict(
        student,
        data,
        acc,
        checking(random_policy_bits(student.num_layers, cfg.options, budget, seed)),
    )
    u_pred, _ = predict(
        student, data, acc, checking(uniform_policy_bits(student.num_layers, cfg.options, budget))
    )
    if not all(checked):
        raise AssertionError("a bit vector missed the budget")  # the knapsack guarantees it
    pct = lambda p: (p == y).float().mean().item() * 100  # noqa: E731
    return {
        "fp_acc": pct(fp_pred),
        "q_acc": pct(q_pred),
        "drop": pct(fp_pred) - pct(q_pred),
        "random_acc": pct(r_pred),
        "uniform_acc": pct(u_pred),
        "budget": budget,
        "fp_correct": (fp_pred == y).tolist(),
        "q_correct": (q_pred == y).tolist(),
    }


def train_pair(
    f_n: QuantizableModel,
    data: DatasetPair,
    cfg: PairConfig,
    ckpt: Path | None,
    opts: RunOptions,
    acc: Accelerator,
    policy_name: str = "small_cnn",
    policy_kwargs: dict | None = None,
) -> tuple[QuantizableModel, nn.Module, dict]:
    """A robust or detrimental pair {f, pi} from f_N (Eq. 9/10); returns (f, pi, evaluation)."""
    budget = cfg.resolve_budget(f_n.num_layers)
    teacher = BlackBox(f_n)
    student = copy.deepcopy(f_n)
    policy = create_policy(
        policy_name, student.num_layers, len(cfg.options), **(policy_kwargs or {})
    )
    groups = [
        {"params": student.parameters(), "lr": cfg.lr_student},
        {"params": policy.parameters(), "lr": cfg.lr_policy},
    ]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)

    def train_mode():
        student.train()
        policy.train()
        if cfg.bn_eval:
            for m in student.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()

    def step(batch, mods):
        images, _ = batch
        x = normalize(images.to(acc.device), data.mean, data.std)
        return pair_step(mods["student"], mods["policy"], teacher(x), x, cfg, budget)

    def evaluate():
        res = evaluate_pair(student, policy, data, cfg, budget, acc, seed=opts.seed)
        return {k: v for k, v in res.items() if not k.endswith("_correct")}

    loop = Loop(
        f"pair-{cfg.mode}",
        {"student": student, "policy": policy},
        optimizer,
        cfg.epochs,
        data.train,
        cfg.batch_size,
        step,
        evaluate,
        train_mode,
        0.0,
        {"pair": asdict(cfg)},
    )
    fit(loop, ckpt, opts, acc)
    return student, policy, evaluate_pair(student, policy, data, cfg, budget, acc, seed=opts.seed)
