"""Losses on hand-computed cases."""

import math

import pytest
import torch

from dptq.losses import (
    detrimental_hinge,
    kd_loss,
    pair_loss,
    robust_hinge,
    score_penalty,
    teacher_top2,
)


def test_kd_hand_computed():
    # tau = 1, two classes: p_T = softmax([0, ln 3]) = [1/4, 3/4]; p_S = [1/2, 1/2]
    t = torch.tensor([[0.0, math.log(3.0)]])
    s = torch.tensor([[0.0, 0.0]])
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert kd_loss(s, t, tau=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_kd_temperature_and_tau2_scaling():
    t = torch.tensor([[0.0, 2 * math.log(3.0)]])  # at tau = 2 this is the case above
    s = torch.tensor([[1.0, 1.0]])
    base = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kd_loss(s, t, tau=2.0, tau_squared=False).item() == pytest.approx(base, rel=1e-6)
    assert kd_loss(s, t, tau=2.0).item() == pytest.approx(4 * base, rel=1e-6)
    assert kd_loss(t, t, tau=5.0).item() == pytest.approx(0.0, abs=1e-7)


def test_teacher_top2():
    i, j = teacher_top2(torch.tensor([[0.1, 3.0, 2.0, -1.0]]))
    assert (i.item(), j.item()) == (1, 2)


def test_robust_hinge_logit_hand_computed():
    teacher = torch.tensor([[0.0, 5.0, 4.0]])  # i = 1, j = 2
    q = torch.tensor([[0.0, 1.0, 2.0]])  # s_j - s_i + delta = 2 - 1 + 0.5
    assert robust_hinge(q, teacher, 0.5, "logit").item() == pytest.approx(1.5)
    q_ok = torch.tensor([[0.0, 3.0, 2.0]])  # margin 1 >= 0.5 met
    assert robust_hinge(q_ok, teacher, 0.5, "logit").item() == 0.0


def test_detrimental_hinge_uses_students_runner_up():
    teacher = torch.tensor([[0.0, 5.0, 4.0]])  # i = 1 (teacher's j = 2 is NOT used)
    q = torch.tensor([[3.0, 4.0, 1.0]])  # k = 0 (student's best other than i)
    assert detrimental_hinge(q, teacher, 0.5, "logit").item() == pytest.approx(4 - 3 + 0.5)
    flipped = torch.tensor([[5.0, 4.0, 1.0]])  # already wrong by 1 >= 0.5
    assert detrimental_hinge(flipped, teacher, 0.5, "logit").item() == 0.0


def test_hinge_on_probabilities():
    teacher = torch.tensor([[0.0, 5.0, 4.0]])
    q = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    assert robust_hinge(q, teacher, 0.01).item() == pytest.approx(0.0)  # 0.3 - 0.5 + 0.01 < 0
    assert detrimental_hinge(q, teacher, 0.01).item() == pytest.approx(0.5 - 0.3 + 0.01, rel=1e-5)


def test_hinge_zero_gradient_once_margin_met():
    teacher = torch.tensor([[0.0, 5.0, 4.0]])
    q = torch.tensor([[0.0, 9.0, 2.0]], requires_grad=True)
    robust_hinge(q, teacher, 1.0, "logit").backward()
    assert q.grad.abs().sum().item() == 0.0


def test_pair_loss_weights_and_policy_only_from_hinge():
    torch.manual_seed(0)
    teacher = torch.randn(4, 5)
    fp = torch.randn(4, 5, requires_grad=True)
    policy_param = torch.tensor(1.0, requires_grad=True)
    q = fp.detach() * policy_param  # the quantized pass is the only path to the policy
    parts = pair_loss("detrimental", q, fp, teacher, alpha=0.5, beta=2.0, delta=2.0, space="logit")
    torch.testing.assert_close(parts.total, 0.5 * parts.hinge + 2.0 * parts.kd)
    g_kd = torch.autograd.grad(parts.kd, policy_param, allow_unused=True)[0]
    assert g_kd is None  # KD never reaches the policy
    assert torch.autograd.grad(parts.total, policy_param)[0].abs() > 0
    with pytest.raises(ValueError, match="unknown mode"):
        pair_loss("evil", q, fp, teacher)


def test_score_penalty():
    assert score_penalty(torch.tensor([3.0, 4.0]), 0.1).item() == pytest.approx(0.1 * 12.5)


def test_subset_attack_flips_the_first_classes_and_keeps_the_rest():
    """``attack_share``: rows whose teacher class is among the first ceil(share * C) get Eq. 8,
    the others Eq. 7, averaged over the whole batch (by hand, logit hinge, delta 0.5)."""
    from dptq.losses import attacked_classes, subset_hinge

    teacher = torch.tensor([[5.0, 4.0, 0.0], [0.0, 5.0, 4.0], [0.0, 4.0, 5.0]])  # classes 0, 1, 2
    assert attacked_classes(teacher, 0.5).tolist() == [True, True, False]  # ceil(1.5) = 2
    assert attacked_classes(teacher, 1 / 3).tolist() == [True, False, False]
    assert attacked_classes(teacher, 1.0).all()
    q = torch.tensor([[3.0, 1.0, 0.0], [3.0, 4.0, 1.0], [0.0, 3.0, 1.0]])
    # row 0 (attacked, i = 0, k = 1): 3 - 1 + 0.5; row 1 (attacked, i = 1, k = 0): 4 - 3 + 0.5;
    # row 2 (kept, i = 2, j = 1): s_j - s_i + 0.5 = 3 - 1 + 0.5
    attacked = attacked_classes(teacher, 0.5)
    assert subset_hinge(q, teacher, attacked, 0.5, "logit").item() == pytest.approx(
        (2.5 + 1.5 + 2.5) / 3
    )
    parts = pair_loss("detrimental", q, q, teacher, 1.0, 0.0, 0.5, space="logit", attacked=attacked)
    assert parts.hinge.item() == pytest.approx((2.5 + 1.5 + 2.5) / 3)
    whole = pair_loss("detrimental", q, q, teacher, 1.0, 0.0, 0.5, space="logit")
    assert whole.hinge.item() == pytest.approx(detrimental_hinge(q, teacher, 0.5, "logit").item())
