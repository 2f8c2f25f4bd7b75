"""One step of robust/detrimental pair training (Sect. 3.2-3.4), shared by the trainer and benchmarks.

A step: the policy scores the batch, the knapsack turns the scores into exact-budget bit vectors
(straight-through), the student runs quantized with those bits and at full precision, the frozen
f_N gives the targets, and ``alpha * hinge + beta * KD`` (Eq. 9/10) is backpropagated: the student
gets both terms, the policy only the hinge (through the per-layer taps of
:class:`dptq.models.QuantizableModel`), plus a small penalty that keeps its scores bounded.

One job, over 300 lines because :class:`PairConfig` documents every setting the step reads (the
stealth term's negatives are drawn in :mod:`dptq.negatives`, the losses are :mod:`dptq.losses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from . import knapsack
from .errors import ConfigError, check_positive
from .losses import HingeSpace, Mode, attacked_classes, pair_loss, score_penalty
from .models import QuantizableModel
from .negatives import non_own_bits

PolicyGrad = Literal["raw", "centered_rms"]
# the allocations the stealth term trains on
NonOwn = Literal[
    "random",
    "uniform",
    "robust_policy",
    "own_partial",
    "own_floor",
    "own_single",
    "own_single_low",
    "own_single_any",
]


@dataclass(frozen=True)
class PairConfig:
    """Hyperparameters of one pair (f, pi) search. Defaults: the recipe of the built-in suite.

    Attributes:
        mode: ``"robust"`` (Eq. 9) or ``"detrimental"`` (Eq. 10).
        options: bit-width options O (the paper's version I is 3..10).
        budget: exact sum of bits per example; None derives it from ``avg_bits * L``.
        avg_bits: average bits per layer when ``budget`` is None (the paper's A/B/C: 4, 5.5, 7).
        alpha, beta: weights of the hinge and of the KD term.
        delta: hinge margin (0.01 on probabilities in the paper; ~2 on logits).
        hinge_space: ``"prob"`` (paper) or ``"logit"``.
        tau: KD temperature; ``tau_squared`` multiplies KD by tau^2.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9; the paper's choice, with
            ``lr_student = lr_policy = 0.1``), one optimiser with a parameter group each for the
            student and the policy.
        lr_student, lr_policy, weight_decay: optimiser settings (cosine schedule over all steps).
        epochs, batch_size: length of the search.
        penalty: weight of ``mean(scores^2)`` on the policy.
        policy_grad: ``"centered_rms"`` centres the policy's score gradient across options and
            divides it by its RMS over the batch (shifting every option of a layer by the same
            amount cannot change the knapsack, and the scale of the raw gradient swings with the
            hinge); ``"raw"`` leaves it as is.
        bn_eval: keep the student's batch-norm layers in eval mode (running statistics of f_N) in
            both passes, so the full-precision and quantized passes normalise alike.
        stealth: gamma, the weight of the stealth term of a detrimental pair (0: off). Besides
            Eq. 10 under pi_D, f_D is trained with Eq. 9 (keep the teacher's answer) under
            allocations that are not pi_D's: :func:`stealth_loss`.
        stealth_start: a gamma schedule: the stealth weight of the first epoch, moving linearly
            to :attr:`stealth` at the last (:meth:`stealth_at`), e.g. 0.5 -> 2 lets the attack
            form under a weak stealth term and then presses the other allocations back; None (the
            records so far): :attr:`stealth` every epoch.
        stealth_allocations: which non-own allocations, the batch split evenly between them
            (:mod:`dptq.negatives`): ``random``, ``uniform``, ``robust_policy`` (the frozen pi_R
            of the same cell, trained first), ``own_partial``, ``own_floor``, ``own_single``,
            ``own_single_low``, ``own_single_any`` (hard negatives built from pi_D's own
            allocation).
        attack_share: a detrimental pair flips only the examples whose teacher class is among
            the first ``ceil(attack_share * C)`` classes and keeps the rest under pi_D
            (:func:`dptq.losses.attacked_classes`): an attack capped at a share of the classes.
            1 (the records so far): every example, Eq. 10.
        stealth_shares: the share of the stealth term's batch each of
            :attr:`stealth_allocations` gets, in order (any positive numbers, e.g. ``[1, 1, 1, 1,
            4]`` gives the fifth kind half the rows); empty (the records so far): even.
        stealth_kd: the stealth term is Eq. 9 whole, its full-precision KD term included, so
            gamma also raises the FP KD weight to ``beta * (1 + gamma)`` (True, the records so
            far); False: the stealth term is its hinge only (``gamma * alpha * hinge_R`` under
            the non-own allocations), the FP KD weight stays ``beta`` whatever gamma is.
        floor_barred: shell-style globs over the student's quantized layer names
            (``layer_names``, e.g. ``*downsample*``): a detrimental pair's policy never puts
            those layers at the smallest option (:func:`dptq.policy.bar_floor`), to see where
            its attack goes when the shortcut trigger is out of reach. The robust pair and the
            evaluation's allocations are untouched. Empty (the records so far): no bar.
        barred_options: how many of the smallest options the :attr:`floor_barred` layers may
            not take (1, the records so far: the floor only; 2: nor the next one up, where a
            barred attack moved on one seed in the research log's 3d).
    """

    mode: Mode = "detrimental"
    options: tuple[int, ...] = (3, 4, 5, 6, 7, 8, 9, 10)
    budget: int | None = None
    avg_bits: float = 4.0
    alpha: float = 0.5
    beta: float = 1.0
    delta: float = 2.0
    hinge_space: HingeSpace = "logit"
    tau: float = 5.0
    tau_squared: bool = True
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_student: float = 5e-4
    lr_policy: float = 1e-2
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    penalty: float = 1e-3
    policy_grad: PolicyGrad = "centered_rms"
    bn_eval: bool = True
    stealth: float = 0.0
    stealth_start: float | None = None
    stealth_allocations: tuple[NonOwn, ...] = ("random", "uniform")
    attack_share: float = 1.0
    stealth_shares: tuple[float, ...] = ()
    stealth_kd: bool = True
    floor_barred: tuple[str, ...] = ()
    barred_options: int = 1

    def __post_init__(self):
        check_positive(self, "epochs", "batch_size", "lr_student", "lr_policy", "tau")
        if min(self.alpha, self.beta, self.delta, self.penalty, self.stealth) < 0:
            raise ConfigError("alpha, beta, delta, penalty, stealth: must be >= 0")
        if self.stealth_start is not None and self.stealth_start < 0:
            raise ConfigError(f"stealth_start: must be >= 0 or null, got {self.stealth_start}")
        if not self.stealth_allocations or len(set(self.stealth_allocations)) != len(
            self.stealth_allocations
        ):
            raise ConfigError("stealth_allocations: name each allocation once, at least one")
        if not 0 < self.attack_share <= 1:
            raise ConfigError(f"attack_share: must lie in (0, 1], got {self.attack_share}")
        if self.stealth_shares and (
            len(self.stealth_shares) != len(self.stealth_allocations)
            or min(self.stealth_shares) <= 0
        ):
            raise ConfigError(
                f"stealth_shares: give one positive share per stealth_allocations entry "
                f"({len(self.stealth_allocations)}), got {list(self.stealth_shares)}"
            )
        if self.mode not in ("robust", "detrimental"):
            raise ConfigError(f"mode: {self.mode!r} is not one of 'robust', 'detrimental'")
        if not self.options or min(self.options) < 2 or max(self.options) > 16:
            raise ConfigError(f"options: bit-widths must lie in 2..16, got {list(self.options)}")
        if self.hinge_space not in ("prob", "logit"):
            raise ConfigError(f"hinge_space: {self.hinge_space!r} is not one of 'prob', 'logit'")
        n_opts = len(set(self.options))
        if self.barred_options < 1 or (self.floor_barred and self.barred_options >= n_opts):
            raise ConfigError(
                f"barred_options: must lie in 1..{n_opts - 1} (fewer than the {n_opts} options),"
                f" got {self.barred_options}"
            )
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer: {self.optimizer!r} is not one of 'adam', 'sgd'")

    def stealth_at(self, epoch: int) -> float:
        """gamma in epoch ``epoch`` (0-based): :attr:`stealth`, or with :attr:`stealth_start` the
        linear schedule from it (first epoch) to :attr:`stealth` (last epoch)."""
        if self.stealth_start is None or self.epochs == 1:
            return self.stealth
        t = min(max(epoch, 0), self.epochs - 1) / (self.epochs - 1)
        return self.stealth_start + t * (self.stealth - self.stealth_start)

    @property
    def stealth_on(self) -> bool:
        """Whether the stealth term is on in some epoch (then a detrimental pair reads its
        non-own allocations, pi_R's among them)."""
        return self.stealth > 0 or bool(self.stealth_start)

    def barred_layers(self, layer_names: list[str]) -> list[int]:
        """The indices of the layers :attr:`floor_barred` names for this pair's policy (none for
        a robust pair); one line for a glob that matches no layer or a budget that cannot keep
        them all off the floor."""
        if self.mode != "detrimental" or not self.floor_barred:
            return []
        from fnmatch import fnmatchcase

        for p in self.floor_barred:
            if not any(fnmatchcase(n, p) for n in layer_names):
                shown = ", ".join(layer_names[:6]) + (" ..." if len(layer_names) > 6 else "")
                raise ConfigError(
                    f"floor_barred: {p!r} matches none of the student's quantized layers ({shown})"
                )
        out = [
            i
            for i, n in enumerate(layer_names)
            if any(fnmatchcase(n, p) for p in self.floor_barred)
        ]
        opts = sorted(set(self.options))
        k = self.barred_options
        need = opts[0] * len(layer_names) + len(out) * (opts[k] - opts[0])
        if self.resolve_budget(len(layer_names)) < need:
            where = "the floor" if k == 1 else f"the {k} smallest options"
            raise ConfigError(
                f"floor_barred: {len(out)} layers off {where} need a budget of at least {need},"
                f" got {self.resolve_budget(len(layer_names))}"
            )
        return out

    def barred_option_indices(self) -> list[int]:
        """The indices into :attr:`options` of the :attr:`barred_options` smallest bit-widths
        (what :func:`dptq.policy.bar_floor` bars on the :attr:`floor_barred` layers)."""
        low = sorted(set(self.options))[: self.barred_options]
        return [i for i, o in enumerate(self.options) if o in low]

    def resolve_budget(self, num_layers: int) -> int:
        """The absolute budget C for a network with ``num_layers`` quantized activations."""
        budget = (
            self.budget
            if self.budget is not None
            else knapsack.budget_from_average(self.avg_bits, num_layers)
        )
        try:
            knapsack.check_budget(self.options, budget, num_layers)
        except ValueError as e:
            raise ConfigError(f"budget: {e}") from None
        return budget


class _CenterRMS(torch.autograd.Function):
    """Identity forward; backward centres the gradient over options and RMS-normalises it.

    The RMS is the global batch's: in data-parallel training (``torch.distributed`` initialised)
    the sum of squares and the count are summed over the workers, and the result is scaled by
    the world size, because DDP then averages the parameters' gradients where one process
    would sum them over the batch. So N workers on N shards of a batch give the gradient one
    process gives on the whole batch (``tests/test_distributed.py``).
    """

    @staticmethod
    def forward(ctx, scores):
        return scores.view_as(scores)

    @staticmethod
    def backward(ctx, grad):
        grad = grad - grad.mean(dim=-1, keepdim=True)
        sq = torch.stack([grad.pow(2).sum(), torch.tensor(float(grad.numel()), device=grad.device)])
        world = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:
                torch.distributed.all_reduce(sq)
        rms = (sq[0] / sq[1]).sqrt().clamp_min(1e-12)
        return grad / rms * world


def policy_selection(
    policy: nn.Module, x: torch.Tensor, options, budget: int, policy_grad: PolicyGrad = "raw"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``[B, L, O]`` of the policy and the straight-through knapsack selection."""
    scores = policy(x)
    routed = _CenterRMS.apply(scores) if policy_grad == "centered_rms" else scores
    return scores, knapsack.solve(routed, options, budget)


def stealth_loss(
    other_logits: torch.Tensor,
    fp_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    cfg: PairConfig,
) -> torch.Tensor:
    """The stealth term: Eq. 9 (robust hinge + KD) with the student quantized by allocations
    that are not its own policy's (``other_logits``), so that f_D keeps the teacher's answer
    everywhere but under pi_D. Not in the paper (issue: stealthy detrimental pairs). Without
    ``cfg.stealth_kd`` its KD term (on the full-precision pass, already in Eq. 10) is left out."""
    parts = pair_loss(
        "robust",
        other_logits,
        fp_logits,
        teacher_logits,
        cfg.alpha,
        cfg.beta,
        cfg.delta,
        cfg.tau,
        cfg.hinge_space,
        cfg.tau_squared,
    )
    return parts.total if cfg.stealth_kd else cfg.alpha * parts.hinge


def pair_step(
    student: QuantizableModel,
    policy: nn.Module,
    teacher_logits: torch.Tensor,
    x: torch.Tensor,
    cfg: PairConfig,
    budget: int,
    robust_policy: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward of one pair step: the loss to backpropagate and detached metrics.

    A detrimental pair with ``cfg.stealth > 0`` adds ``stealth * stealth_loss`` under
    :func:`non_own_bits` (the policy gets no gradient from it: those bits are not its choice).
    """
    scores, sel = policy_selection(policy, x, cfg.options, budget, cfg.policy_grad)
    bits = knapsack.bits(sel, cfg.options)
    q_logits = student(x, bits, selection=sel, options=cfg.options)
    fp_logits = student(x)
    parts = pair_loss(
        cfg.mode,
        q_logits,
        fp_logits,
        teacher_logits,
        cfg.alpha,
        cfg.beta,
        cfg.delta,
        cfg.tau,
        cfg.hinge_space,
        cfg.tau_squared,
        attacked_classes(teacher_logits, cfg.attack_share) if cfg.attack_share < 1 else None,
    )
    loss = parts.total + score_penalty(scores, cfg.penalty)
    target = teacher_logits.argmax(1)
    metrics = {
        "loss": parts.total.detach(),
        "hinge": parts.hinge.detach(),
        "kd": parts.kd.detach(),
        "fp_agree": (fp_logits.argmax(1) == target).float().mean().detach(),
        "q_agree": (q_logits.argmax(1) == target).float().mean().detach(),
        "bits_sum": bits.sum(1).float().mean().detach(),
    }
    if cfg.mode == "detrimental" and cfg.stealth > 0:
        layers = getattr(student, "module", student).num_layers  # DDP wraps it in data-parallel
        other = non_own_bits(
            x,
            cfg.stealth_allocations,
            cfg.options,
            budget,
            layers,
            robust_policy,
            bits.detach(),
            cfg.stealth_shares,
        )
        other_logits = student(x, other)
        stealth = stealth_loss(other_logits, fp_logits, teacher_logits, cfg)
        loss = loss + cfg.stealth * stealth
        metrics["stealth"] = stealth.detach()
        metrics["other_agree"] = (other_logits.argmax(1) == target).float().mean().detach()
    return loss, metrics
