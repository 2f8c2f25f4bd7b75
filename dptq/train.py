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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from .augment import AugmentConfig, kd_augmentation, mixup, with_train_transform
from .data import DatasetPair, normalize, selection_split
from .engine import Loop, RunOptions, fit
from .errors import ConfigError, check_positive
from .evaluate import accuracy, evaluate_pair
from .losses import kd_loss
from .models import QuantizableModel
from .pair import PairConfig, pair_step
from .policy import bar_floor, create_policy
from .teacher_cache import Indexed, TeacherCache


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
        tau_squared: multiply KD by tau^2 (Hinton et al.; the paper's Eq. 3 does not).
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
    tau_squared: bool = True
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
    augment=AugmentConfig(randaugment=False, color_jitter=False, crop_padding=False),
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
        loss = kd_loss(mods["student"](x), teacher(x), cfg.tau, cfg.tau_squared)
        return loss, {"kd": loss.detach()}

    return _fit_stage("kd", "student", student, data, cfg, step, ckpt, opts, acc)


def _fit_stage(name, key, model, data, cfg: StageConfig, step, ckpt, opts, acc) -> dict:
    """The teacher and KD stages: one model, its optimiser, ``val_acc`` after each epoch.

    (``test_acc`` only for a dataset loaded without a validation split: see ``selection_split``.)
    """
    split = selection_split(data)
    loop = Loop(
        name=name,
        modules={key: model},
        optimizer=_optimizer(model.parameters(), cfg),
        epochs=cfg.epochs,
        dataset=_train_split(data, cfg),
        batch_size=cfg.batch_size,
        step=step,
        evaluate=lambda: {
            "split": split,
            f"{split}_acc": accuracy(model, data, acc.device, split=split),
        },
        train_mode=model.train,
        min_lr_ratio=cfg.min_lr / cfg.lr,
        config={"stage": asdict(cfg)},
    )
    return fit(loop, ckpt, opts, acc)


def _train_split(data: DatasetPair, cfg: StageConfig):
    if not cfg.augment:
        return data.train
    return with_train_transform(data, kd_augmentation(_size(data), cfg.augment))


def _size(data: DatasetPair) -> int:
    return int(data.test[0][0].shape[-1])


def train_pair(
    f_n: QuantizableModel,
    data: DatasetPair,
    cfg: PairConfig,
    ckpt: Path | None,
    opts: RunOptions,
    acc: Accelerator,
    policy_name: str = "small_cnn",
    policy_options=None,
    robust_policy: nn.Module | None = None,
    select=None,
    cache_f_n: bool = True,
) -> tuple[QuantizableModel, nn.Module, dict]:
    """A robust or detrimental pair {f, pi} from f_N (Eq. 9/10); returns (f, pi, last epoch's result).

    The last epoch's result is what selection sees (no per-example lists: those are for records).
    ``robust_policy``: the frozen pi_R for a detrimental pair's stealth term (``robust_policy`` in
    ``cfg.stealth_allocations``). ``select``: ``Loop.select`` (end on the best-scoring epoch's
    pair on the validation split, not the last). ``cache_f_n``: f_N's answers computed once
    (:class:`TeacherCache`; the same numbers, the teacher's forward pass out of every step).
    The result says whether the cache served the trial (``f_n_cached``).
    """
    budget = cfg.resolve_budget(f_n.num_layers)
    teacher = BlackBox(f_n)
    cache = TeacherCache(teacher, data, cfg.batch_size, acc.device) if cache_f_n else None
    student = copy.deepcopy(f_n)
    policy = create_policy(policy_name, student.num_layers, len(cfg.options), policy_options)
    barred = cfg.barred_option_indices()
    policy = bar_floor(policy, cfg.barred_layers(student.layer_names), barred)
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

    epoch_cfg = [cfg]  # this epoch's settings: cfg with gamma on its schedule (stealth_at)

    def on_epoch(epoch):
        epoch_cfg[0] = replace(cfg, stealth=cfg.stealth_at(epoch), stealth_start=None)

    def step(batch, mods):
        images, _, *index = batch
        x = normalize(images.to(acc.device), data.mean, data.std)
        t = teacher(x) if cache is None else cache.logits(x, index[0])
        return pair_step(mods["student"], mods["policy"], t, x, epoch_cfg[0], budget, robust_policy)

    split = selection_split(data)

    def evaluate():  # on the validation split: what the search's objective and selection see
        res = evaluate_pair(
            student, policy, data, cfg.options, budget, acc.device, opts.seed, split
        )
        cached = {} if cache is None else {"f_n_cached": int(cache.on)}
        return {"split": split, **res, **cached}

    loop = Loop(
        name=f"pair-{cfg.mode}",
        modules={"student": student, "policy": policy},
        optimizer=optimizer,
        epochs=cfg.epochs,
        dataset=data.train if cache is None else Indexed(data.train),
        batch_size=cfg.batch_size,
        step=step,
        evaluate=evaluate,
        train_mode=train_mode,
        on_epoch=on_epoch,
        config={"pair": asdict(cfg)},
        select=select,
    )
    result = fit(loop, ckpt, opts, acc)
    return student, policy, result
