"""The deployer's audit: the worst bit allocation at an exact budget for a frozen network.

Not in the paper. The paper's attacker trains the network and its policy together; a deployer who
ships an honestly trained model under dynamic quantization asks what a bit allocator *alone* can
do to it. The audit trains only an adversarial policy pi_A (the network is frozen: no weight, no
batch-norm statistic changes) to flip the model's own full-precision answer under quantization,
with the detrimental hinge of Eq. 8 on logits and the exact-budget knapsack (Eq. 11-14) as in a
detrimental pair; the policy's gradient comes through the same per-layer taps
(:class:`dptq.models.QuantizableModel`). It trains on the training split, reports each epoch on the
validation split, and :func:`audit_scores` reads the test split once. One job: the adversary,
trained (:func:`train_adversary`) or searched per example (:func:`oracle_bits`), and its scores;
reading a model's weights from any checkpoint is :mod:`dptq.checkpoints`.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch import nn
from tqdm import tqdm

from . import knapsack
from .data import DatasetPair, normalize, selection_split
from .engine import Loop, RunOptions, fit, seed_everything
from .errors import ConfigError, check_positive
from .evaluate import (
    accuracy,
    correct,
    count,
    own_policy_bits,
    random_policy_bits,
    random_seeds,
    uniform_policy_bits,
)
from .losses import detrimental_hinge, score_penalty
from .models import QuantizableModel
from .pair import PolicyGrad, policy_selection
from .policy import create_policy
from .splits import subset

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class AuditConfig:
    """How the adversarial policy is trained.

    Attributes:
        epochs, batch_size, lr: Adam on the policy only, cosine schedule.
        delta: margin of the detrimental hinge (Eq. 8) on logits.
        penalty: weight of ``mean(scores^2)`` on the policy (keeps scores bounded).
        policy_grad: as :class:`dptq.pair.PairConfig`'s.
        max_train: examples of the training split per epoch (a seeded, stratified subset; null:
            all of it).
        oracle_steps: also search each test example's own allocation directly (free scores, the
            same hinge, taps and knapsack, Adam at ``oracle_lr``) for this many steps, keeping
            any allocation that flips the example: an attacker that is not limited to a policy
            of the image (the true worst case is at least as bad; 0: off).
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-2
    delta: float = 2.0
    penalty: float = 1e-3
    policy_grad: PolicyGrad = "centered_rms"
    max_train: int | None = None
    oracle_steps: int = 0
    oracle_lr: float = 0.1

    def __post_init__(self):
        check_positive(self, "epochs", "batch_size", "lr", "oracle_lr")
        if not 0 <= self.oracle_steps <= 10_000:
            raise ConfigError(f"oracle_steps: must lie in 0..10000, got {self.oracle_steps}")
        if self.delta < 0 or self.penalty < 0:
            raise ConfigError("delta, penalty: must be >= 0")
        if self.max_train is not None and self.max_train < 1:
            raise ConfigError(f"max_train: must be >= 1 (or null), got {self.max_train}")


def audit_step(
    model: QuantizableModel,
    policy: nn.Module,
    x: torch.Tensor,
    options,
    budget: int,
    cfg: AuditConfig,
) -> tuple[torch.Tensor, dict]:
    """One step of the adversary: Eq. 8 against the model's own FP answer, the policy's bits."""
    with torch.no_grad():
        fp_logits = model(x)
    scores, sel = policy_selection(policy, x, options, budget, cfg.policy_grad)
    q_logits = model(x, knapsack.bits(sel, options), selection=sel, options=options)
    hinge = detrimental_hinge(q_logits, fp_logits, cfg.delta, "logit")
    loss = hinge + score_penalty(scores, cfg.penalty)
    agree = (q_logits.argmax(1) == fp_logits.argmax(1)).float().mean()
    return loss, {"hinge": hinge.detach(), "q_agree": agree.detach()}


def _freeze(model: nn.Module) -> list[bool]:
    """Eval mode, no parameter gradients; returns the flags :func:`_restore` puts back."""
    flags = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    return flags


def _restore(model: nn.Module, flags: list[bool]) -> None:
    for p, flag in zip(model.parameters(), flags):
        p.requires_grad_(flag)


def train_adversary(
    model: QuantizableModel,
    data: DatasetPair,
    options,
    budget: int,
    cfg: AuditConfig,
    ckpt: Path | None,
    opts: RunOptions,
    acc: Accelerator,
    policy_name: str = "small_cnn",
    policy_options=None,
) -> tuple[nn.Module, dict]:
    """pi_A for the frozen ``model`` (on ``acc.device``, left unchanged); returns (pi_A, last
    epoch's validation result: ``adv_acc``)."""
    knapsack.check_budget(options, budget, model.num_layers)
    flags = _freeze(model)
    seed_everything(opts.seed)  # the policy's initialisation
    policy = create_policy(policy_name, model.num_layers, len(options), policy_options)
    split = selection_split(data)
    train = subset(data.train, cfg.max_train, opts.seed)

    def step(batch, mods):
        x = normalize(batch[0].to(acc.device), data.mean, data.std)
        return audit_step(model, mods["policy"], x, options, budget, cfg)

    def evaluate():
        bits = own_policy_bits(policy, options, budget)
        return {"split": split, "adv_acc": accuracy(model, data, acc.device, bits, split=split)}

    loop = Loop(
        name="audit",
        modules={"policy": policy},
        optimizer=torch.optim.Adam(policy.parameters(), lr=cfg.lr),
        epochs=cfg.epochs,
        dataset=train,
        batch_size=min(cfg.batch_size, len(train)),
        step=step,
        evaluate=evaluate,
        train_mode=policy.train,
        config={"audit": asdict(cfg), "options": list(options), "budget": budget},
    )
    try:
        result = fit(loop, ckpt, opts, acc)
    finally:
        _restore(model, flags)
    return policy.eval(), result


class _FreeScores(nn.Module):
    """A "policy" that is one free score tensor for one batch (the oracle's search variable)."""

    def __init__(self, batch: int, num_layers: int, num_options: int):
        super().__init__()
        self.scores = nn.Parameter(torch.zeros(batch, num_layers, num_options))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores


def oracle_bits(
    model: QuantizableModel, x: torch.Tensor, options, budget: int, cfg: AuditConfig
) -> torch.Tensor:
    """Per-example worst allocations ``[B, L]`` for the batch ``x``: the scores themselves are
    optimised (Eq. 8 against the model's own FP answer, through the taps and the knapsack); an
    example keeps the first allocation that flips it, else its last one."""
    with torch.no_grad():
        fp = model(x).argmax(1)
    free = _FreeScores(x.shape[0], model.num_layers, len(options)).to(x.device)
    opt = torch.optim.Adam(free.parameters(), lr=cfg.oracle_lr)
    kept = torch.zeros(x.shape[0], model.num_layers, dtype=torch.long, device=x.device)
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    with torch.enable_grad():
        for _ in range(cfg.oracle_steps):
            loss, _ = audit_step(model, free, x, options, budget, cfg)
            with torch.no_grad():
                bits = knapsack.bits(knapsack.solve_hard(free.scores, options, budget), options)
                flipped = model(x, bits).argmax(1) != fp
            new = flipped & ~found
            kept[new], found = bits[new], found | flipped
            if bool(found.all()):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    bits = knapsack.bits(knapsack.solve_hard(free.scores.detach(), options, budget), options)
    return torch.where(found[:, None], kept, bits)


class _Tally:
    """A bits function that also sums the bits it hands out (the mean bits per layer of an
    evaluation pass, without a second one)."""

    def __init__(self, bits_fn, num_layers: int):
        self.bits_fn, self.total, self.n = bits_fn, torch.zeros(num_layers), 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bits_fn(x)
        self.total += b.float().sum(0).cpu()
        self.n += b.shape[0]
        return b

    def mean(self) -> list[float]:
        return (self.total / max(self.n, 1)).tolist()


@torch.no_grad()
def audit_scores(
    model: QuantizableModel,
    policy: nn.Module,
    data: DatasetPair,
    options,
    budget: int,
    device,
    seed: int = 0,
    random_allocations: int = 8,
    split: str = "test",
    cfg: AuditConfig | None = None,
) -> dict:
    """The audit's numbers on ``split``, as counts of ``total`` examples: right at full precision
    (``fp``), under pi_A (``adversarial``), under the uniform allocation and under each of
    ``random_allocations`` random ones, the flipped examples (right at FP, wrong under pi_A: the
    transitory points of a single network) and the mean bits per layer under pi_A; with
    ``cfg.oracle_steps``, also under the per-example oracle (:func:`oracle_bits`). Per example:
    ``fp_correct``, ``adversarial_correct`` (bool tensors)."""
    L = model.num_layers
    fp = correct(model, data, device, split=split)
    tally = _Tally(own_policy_bits(policy, options, budget), L)
    adv = correct(model, data, device, tally, split=split)
    uniform = count(model, data, device, uniform_policy_bits(L, options, budget), split=split)[0]
    rand = [
        count(model, data, device, random_policy_bits(L, options, budget, s), split=split)[0]
        for s in random_seeds(seed, random_allocations)
    ]
    extra = {}
    if cfg is not None and cfg.oracle_steps:
        flags = _freeze(model)
        bar = tqdm(total=len(getattr(data, split)), desc="audit oracle", leave=False)
        try:

            def oracle(x):
                bits = oracle_bits(model, x, options, budget, cfg)
                bar.update(x.shape[0])
                return bits

            extra["oracle"] = count(
                model, data, device, oracle, split=split, batch_size=cfg.batch_size
            )[0]
        finally:
            bar.close()
            _restore(model, flags)
    return {
        "split": split,
        "options": list(options),
        "budget": budget,
        "total": len(fp),
        "fp": int(fp.sum()),
        "adversarial": int(adv.sum()),
        "uniform": uniform,
        "random": rand,
        "oracle": extra.get("oracle"),
        "flipped": int((fp & ~adv).sum()),
        "mean_bits": tally.mean(),
        "fp_correct": fp,
        "adversarial_correct": adv,
    }


def starved_layers(mean: list[float], names: list[str], k: int = 3) -> list[dict]:
    """The ``k`` layers pi_A gives the fewest bits on average (the layers it attacks)."""
    order = sorted(range(len(mean)), key=lambda i: (mean[i], i))[:k]
    return [{"layer": i + 1, "name": names[i], "mean_bits": mean[i]} for i in order]


def audit_table(scores: dict) -> pd.DataFrame:
    """The audit's accuracies (%) as one table: FP, pi_A, the oracle (when run), uniform, random
    (mean +- sd over the random allocations)."""
    import pandas as pd

    n = scores["total"]
    pct = lambda c: 100 * c / n  # noqa: E731
    rand = [pct(c) for c in scores["random"]]
    rows = {
        "full precision": (pct(scores["fp"]), 0.0),
        "adversarial policy pi_A": (pct(scores["adversarial"]), 0.0),
    }
    if scores.get("oracle") is not None:
        rows["per-example search (oracle)"] = (pct(scores["oracle"]), 0.0)
    rows["uniform"] = (pct(scores["uniform"]), 0.0)
    sd = statistics.stdev(rand) if len(rand) > 1 else 0.0
    rows["random (mean)"] = (sum(rand) / len(rand), sd)
    return pd.DataFrame(rows, index=["accuracy (%)", "sd"]).T
