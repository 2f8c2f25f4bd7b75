"""A tiny model and policy trained a few steps with the detrimental objective lower it."""

import copy

import torch

from dptq import knapsack
from dptq.losses import pair_loss
from dptq.models import QuantizableModel
from dptq.policy import create_policy
from tests.test_models import tiny_net

OPTIONS = [2, 3, 4, 5, 6, 8]


def test_detrimental_objective_decreases():
    torch.manual_seed(0)
    x = torch.randn(32, 3, 8, 8)
    teacher = QuantizableModel(tiny_net(5))
    teacher.eval()
    student = copy.deepcopy(teacher)
    policy = create_policy(
        "small_cnn", student.num_layers, len(OPTIONS), width=8, depth=2, input_size=None
    )
    budget = 3 * student.num_layers
    opt = torch.optim.Adam([*student.parameters(), *policy.parameters()], lr=3e-3)
    with torch.no_grad():
        t_logits = teacher(x)

    def objective():
        scores = policy(x)
        sel = knapsack.solve(scores, OPTIONS, budget)
        bits = knapsack.bits(sel, OPTIONS)
        assert bits.sum(1).eq(budget).all()
        q = student(x, bits, selection=sel, options=OPTIONS)
        return pair_loss(
            "detrimental", q, student(x), t_logits, alpha=1.0, beta=1.0, delta=1.0, space="logit"
        )

    first = objective().total.item()
    for _ in range(30):
        opt.zero_grad()
        objective().total.backward()
        opt.step()
    final = objective()
    assert final.total.item() < 0.5 * first
    assert final.hinge.item() < 0.5 * first
