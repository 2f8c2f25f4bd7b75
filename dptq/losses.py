"""Losses of Frank & Ardis 2025: KD (Eq. 3), robust and detrimental hinges (Eq. 7-8), totals (Eq. 9-10).

Every loss is averaged over the batch. The hinges can be taken on softmax probabilities, as in the
paper (margin delta = 0.01), or on logits (``space="logit"``, margin on the logit scale, e.g. 2):
the probability hinge has gradient ~ p(1 - p) and stalls once the student is confident, which is
why the logit form is the default of the built-in suite (see ``docs/research-log.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

HingeSpace = Literal["prob", "logit"]
Mode = Literal["robust", "detrimental"]


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    tau: float = 5.0,
    tau_squared: bool = True,
) -> torch.Tensor:
    """KL(p_T || p_S) with temperature ``tau`` (Eq. 3), averaged over the batch.

    ``p = softmax(z / tau)``. With ``tau_squared`` the loss is multiplied by ``tau^2`` (Hinton et
    al. 2015): the gradient of the softened KL shrinks like ``1 / tau^2``, so the factor keeps the KD
    term on the same scale as the hinge whatever ``tau`` is. Without it, at tau = 5 the KD term is
    25x weaker and the hinge pulls the full-precision model away from f_N.
    """
    log_ps = F.log_softmax(student_logits / tau, dim=-1)
    log_pt = F.log_softmax(teacher_logits.detach() / tau, dim=-1)
    loss = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)
    return loss * tau**2 if tau_squared else loss


def _hinge_inputs(logits: torch.Tensor, space: HingeSpace) -> torch.Tensor:
    if space == "prob":
        return F.softmax(logits, dim=-1)
    if space == "logit":
        return logits
    raise ValueError(f"unknown hinge space {space!r}; use 'prob' or 'logit'")


def teacher_top2(teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's argmax i and second argmax j (the argmax once i is removed)."""
    top = teacher_logits.detach().topk(2, dim=-1).indices
    return top[:, 0], top[:, 1]


def robust_hinge(
    q_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    delta: float = 0.01,
    space: HingeSpace = "prob",
) -> torch.Tensor:
    """Eq. 7: ``max(0, s_j - s_i + delta)``; keeps the teacher's argmax i under quantization.

    ``s`` is the quantized student's softmax (``space="prob"``) or logits; i and j are the
    teacher's argmax and second argmax.
    """
    s = _hinge_inputs(q_logits, space)
    i, j = teacher_top2(teacher_logits)
    s_i, s_j = s.gather(1, i[:, None])[:, 0], s.gather(1, j[:, None])[:, 0]
    return F.relu(s_j - s_i + delta).mean()


def detrimental_hinge(
    q_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    delta: float = 0.01,
    space: HingeSpace = "prob",
) -> torch.Tensor:
    """Eq. 8: ``max(0, s_i - s_k + delta)``; pushes the quantized student off the teacher's argmax.

    i is the teacher's argmax; k is the quantized student's largest class other than i.
    """
    s = _hinge_inputs(q_logits, space)
    i, _ = teacher_top2(teacher_logits)
    s_i = s.gather(1, i[:, None])[:, 0]
    others = s.detach().scatter(1, i[:, None], float("-inf"))
    k = others.argmax(dim=1)
    s_k = s.gather(1, k[:, None])[:, 0]
    return F.relu(s_i - s_k + delta).mean()


HINGES = {"robust": robust_hinge, "detrimental": detrimental_hinge}


def attacked_classes(teacher_logits: torch.Tensor, share: float) -> torch.Tensor:
    """Which rows a subset attack flips: those whose teacher class is among the first
    ``ceil(share * C)`` of the ``C`` classes (``share`` 1: every row). Not in the paper (issue 24:
    an attack capped at a share of the classes instead of flipping every image)."""
    classes = math.ceil(share * teacher_logits.shape[1] - 1e-9)
    return teacher_logits.detach().argmax(1) < classes


def subset_hinge(
    q_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    attacked: torch.Tensor,
    delta: float = 0.01,
    space: HingeSpace = "prob",
) -> torch.Tensor:
    """Eq. 8 on the ``attacked`` rows and Eq. 7 on the others, averaged over the whole batch: f_D
    flips the attacked classes under its policy and keeps the rest (a capped attack)."""
    n, parts = len(q_logits), []
    for hinge, rows in ((detrimental_hinge, attacked), (robust_hinge, ~attacked)):
        if rows.any():
            parts.append(hinge(q_logits[rows], teacher_logits[rows], delta, space) * rows.sum())
    return sum(parts) / n


@dataclass(frozen=True)
class PairLoss:
    """The parts of the pair objective: ``total = alpha * hinge + beta * kd``."""

    total: torch.Tensor
    hinge: torch.Tensor
    kd: torch.Tensor


def pair_loss(
    mode: Mode,
    q_logits: torch.Tensor,
    fp_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 1.0,
    delta: float = 0.01,
    tau: float = 5.0,
    space: HingeSpace = "prob",
    tau_squared: bool = True,
    attacked: torch.Tensor | None = None,
) -> PairLoss:
    """Eq. 9 (``mode="robust"``) or Eq. 10 (``mode="detrimental"``); a detrimental pair given
    ``attacked`` rows takes Eq. 10's hinge on those only (:func:`subset_hinge`).

    ``q_logits`` come from the quantized student pass, ``fp_logits`` from its full-precision pass,
    ``teacher_logits`` from the frozen f_N. The KD term depends only on the full-precision pass,
    which does not involve the policy, so backpropagating ``total`` gives the policy gradients from
    the hinge only and the student gradients from both terms (Sect. 3.3).
    """
    if mode not in HINGES:
        raise ValueError(f"unknown mode {mode!r}; use 'robust' or 'detrimental'")
    if mode == "detrimental" and attacked is not None:
        hinge = subset_hinge(q_logits, teacher_logits, attacked, delta, space)
    else:
        hinge = HINGES[mode](q_logits, teacher_logits, delta, space)
    kd = kd_loss(fp_logits, teacher_logits, tau, tau_squared)
    return PairLoss(alpha * hinge + beta * kd, hinge, kd)


def score_penalty(scores: torch.Tensor, weight: float = 1e-3) -> torch.Tensor:
    """``weight * mean(scores^2)``: keeps the policy's scores bounded (not in the paper)."""
    return weight * scores.pow(2).mean()
