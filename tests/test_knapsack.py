"""Knapsack against brute force (small) and scipy's MILP solver (larger), plus the STE."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from dptq import knapsack


def brute_force(scores: torch.Tensor, options, budget):
    """Best total score over all O^L vectors summing exactly to the budget (one example)."""
    L, O = scores.shape
    best = -float("inf")
    for combo in itertools.product(range(O), repeat=L):
        if sum(options[o] for o in combo) == budget:
            best = max(best, sum(float(scores[l, o]) for l, o in enumerate(combo)))
    return best


def milp_optimum(scores: np.ndarray, options, budget) -> float:
    """Independent reference: the MCKP with equality as a binary integer programme (HiGHS)."""
    L, O = scores.shape
    one_per_layer = np.kron(np.eye(L), np.ones(O))
    weights = np.tile(np.asarray(options, float), L)
    res = milp(
        c=-scores.ravel(),
        integrality=np.ones(L * O),
        bounds=Bounds(0, 1),
        constraints=[
            LinearConstraint(one_per_layer, 1, 1),
            LinearConstraint(weights[None, :], budget, budget),
        ],
    )
    assert res.success
    return -res.fun


def check_selection(sel, options, budget):
    assert sel.sum(-1).eq(1).all(), "exactly one option per layer"
    assert knapsack.bits(sel, options).sum(-1).eq(budget).all(), "bits sum exactly to the budget"


@pytest.mark.parametrize("options,budget", [([2, 3, 4], 13), ([3, 5, 8], 22), ([4, 6], 20)])
def test_matches_brute_force(options, budget, gen):
    scores = torch.randn(16, 5, len(options), generator=gen)
    sel = knapsack.solve(scores, options, budget)
    check_selection(sel, options, budget)
    got = (sel * scores).sum((1, 2))
    for b in range(scores.shape[0]):
        assert got[b].item() == pytest.approx(brute_force(scores[b], options, budget), abs=1e-5)


@pytest.mark.parametrize("num_layers,avg", [(20, 4), (58, 5.5), (77, 7)])
def test_matches_milp(num_layers, avg, gen):
    options = list(range(3, 11))
    budget = knapsack.budget_from_average(avg, num_layers)
    scores = torch.randn(4, num_layers, len(options), generator=gen)
    sel = knapsack.solve(scores, options, budget)
    check_selection(sel, options, budget)
    got = (sel * scores).sum((1, 2))
    for b in range(scores.shape[0]):
        ref = milp_optimum(scores[b].double().numpy(), options, budget)
        assert got[b].item() == pytest.approx(ref, abs=1e-4)


def test_budget_binds_against_greedy(gen):
    """Scores all favouring 10 bits: the unconstrained argmax would overshoot the budget."""
    options = list(range(3, 11))
    scores = torch.arange(len(options)).float().expand(2, 20, -1) + 0.01 * torch.randn(
        2, 20, 8, generator=gen
    )
    check_selection(knapsack.solve(scores, options, 80), options, 80)


@pytest.mark.parametrize(
    "options,budget,match",
    [
        ([3, 4, 5], 8, "outside"),  # below L*min
        ([3, 4, 5], 30, "outside"),  # above L*max
        ([4, 6, 8], 21, "not reachable"),  # parity: sums of even numbers
        ([2, 7, 9], 9, "not reachable"),  # in range, gcd 1, but no 4 options sum to 9
        ([3, 3, 5], 12, "distinct"),
    ],
)
def test_infeasible_budget_rejected(options, budget, match):
    with pytest.raises(ValueError, match=match):
        knapsack.solve(torch.zeros(2, 4, len(options)), options, budget)


def test_nan_scores_rejected():
    s = torch.zeros(1, 3, 2)
    s[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        knapsack.solve(s, [2, 4], 8)


def test_ste_gradient_reaches_scores(gen):
    scores = torch.randn(3, 6, 4, generator=gen, requires_grad=True)
    sel = knapsack.solve(scores, [2, 3, 4, 5], 20)
    torch.testing.assert_close(sel.detach(), knapsack.solve_hard(scores, [2, 3, 4, 5], 20))
    up = torch.randn_like(sel)
    sel.backward(up)
    torch.testing.assert_close(scores.grad, up)  # straight through: identity


def test_bits_read_from_hard_selection_with_large_scores():
    scores = torch.full((1, 4, 3), 1e7, requires_grad=True)
    sel = knapsack.solve(scores, [2, 4, 8], 16)
    assert knapsack.bits(sel, [2, 4, 8]).sum().item() == 16


def test_random_and_uniform_policies_respect_budget(gen):
    options = [3, 4, 5, 6, 7, 8, 9, 10]
    sel = knapsack.solve(knapsack.random_scores(64, 20, 8, gen), options, 90)
    check_selection(sel, options, 90)
    assert knapsack.bits(sel, options).float().std(0).mean() > 0.5  # varies per example
    uni = knapsack.bits(
        knapsack.solve(knapsack.uniform_scores(2, 20, options, 90), options, 90), options
    )
    assert uni.sum(-1).eq(90).all() and set(uni.unique().tolist()) <= {4, 5}


def test_batched_equals_per_example(gen):
    scores = torch.randn(8, 10, 5, generator=gen)
    options = [2, 4, 6, 8, 10]
    full = knapsack.solve_hard(scores, options, 50)
    for b in range(8):
        torch.testing.assert_close(
            full[b : b + 1], knapsack.solve_hard(scores[b : b + 1], options, 50)
        )


def test_option_heavier_than_remaining_budget(gen):
    """Budgets near L * min leave the largest options unusable; they must never be picked."""
    options = [3, 4, 5, 6, 7, 8]
    sel = knapsack.solve(torch.randn(4, 3, 6, generator=gen) + torch.arange(6.0), options, 12)
    check_selection(sel, options, 12)
    assert knapsack.bits(sel, options).max() <= 6  # 3 layers x min 3 leaves 3 spare bits


@pytest.mark.parametrize(
    "options,budget,layers", [((3, 4, 5), 12, 3), ((2, 4, 8), 16, 4), ((5, 6, 7, 8), 20, 4)]
)
def test_count_allocations_matches_enumeration(options, budget, layers):
    brute = sum(sum(v) == budget for v in itertools.product(options, repeat=layers))
    assert knapsack.count_allocations(options, budget, layers) == brute


@pytest.mark.parametrize(
    "options,budget,layers", [([3, 4, 5, 6], 22, 5), ([4, 5, 6, 7, 8], 31, 5), ([2, 4, 8], 24, 4)]
)
def test_floor_probability_matches_enumeration(options, budget, layers):
    """Exact, against listing every feasible allocation: any of the first k layers at the floor,
    and every one of them at once."""
    from fractions import Fraction

    feasible = [a for a in itertools.product(options, repeat=layers) if sum(a) == budget]
    floor = min(options)
    for k in range(layers + 1):
        anyk = sum(any(b == floor for b in a[:k]) for a in feasible)
        allk = sum(all(b == floor for b in a[:k]) for a in feasible)
        assert knapsack.floor_probability(options, budget, layers, k) == Fraction(
            anyk, len(feasible)
        )
        got = knapsack.floor_probability(options, budget, layers, k, every=True)
        assert got == Fraction(allk, len(feasible))


def test_floor_probability_reproduces_issue_24s_numbers():
    """ResNet18 (20 layers), options I (3..10) at 4 / 5.5 / 7 bits x L, options II (4..10) at 6.5."""
    p = [float(knapsack.floor_probability(range(3, 11), b, 20)) for b in (80, 110, 140)]
    assert [round(x, 2) for x in p] == [0.48, 0.22, 0.08]
    assert round(float(knapsack.floor_probability(range(4, 11), 130, 20)), 2) == 0.20
    joint = [
        float(knapsack.floor_probability(range(3, 11), 80, 20, k, every=True)) for k in (2, 3, 4)
    ]
    assert [round(x, 3) for x in joint] == [0.226, 0.103, 0.045]


def test_count_allocations_degenerate_cells():
    # the paper's III-A for resnet18: 100 bits over 20 layers, options 5..10 -> all at 5 bits
    assert knapsack.count_allocations(range(5, 11), 100, 20) == 1
    assert knapsack.count_allocations(range(5, 11), 101, 20) == 20  # one layer at 6
    assert knapsack.count_allocations(range(3, 11), 80, 20) == 66_102_536_360
    assert knapsack.count_allocations((3, 5), 9, 2) == 0


def test_sampled_allocations_are_uniform_over_the_feasible_set():
    import random
    from collections import Counter

    options, budget, layers = (3, 4, 5, 6), 16, 3
    feasible = [v for v in itertools.product(options, repeat=layers) if sum(v) == budget]
    draws = knapsack.sample_allocations(options, budget, layers, 6000, random.Random(0))
    assert draws.shape == (6000, layers) and bool((draws.sum(1) == budget).all())
    counts = Counter(tuple(v) for v in draws.tolist())
    assert set(counts) == set(feasible)
    expected = 6000 / len(feasible)
    chi2 = sum((counts[v] - expected) ** 2 / expected for v in feasible)
    assert chi2 < 40  # 9 degrees of freedom: p ~ 1e-5 at 40
    again = knapsack.sample_allocations(options, budget, layers, 50, random.Random(0))
    assert torch.equal(again, draws[:50])  # seeded


def test_nearest_allocation_keeps_the_budget_and_rounds_to_the_closest():
    options, L = (3, 4, 5, 6, 7, 8), 6
    own = torch.tensor([[3, 8, 3, 8, 3, 8]])
    uniform = torch.full((1, L), 5.5)
    assert torch.equal(knapsack.nearest_allocation(own.float(), options, 33), own)  # itself
    half = knapsack.nearest_allocation(0.5 * own + 0.5 * uniform, options, 33)
    assert int(half.sum()) == 33
    # brute force: no exact-budget vector is closer to the blend
    target = (0.5 * own + 0.5 * uniform)[0]
    best = min(
        (v for v in itertools.product(options, repeat=L) if sum(v) == 33),
        key=lambda v: float(((torch.tensor(v) - target) ** 2).sum()),
    )
    assert float(((half[0] - target) ** 2).sum()) == pytest.approx(
        float(((torch.tensor(best) - target) ** 2).sum())
    )


def test_a_floor_barred_policy_gets_the_best_allocation_that_keeps_those_layers_off_the_floor():
    """``bar_floor`` against brute force over the exact-budget allocations with the barred
    layers above the smallest option: the hook changes which allocation wins, never the order
    among the allowed ones, and leaves the policy's state dict alone."""
    from torch import nn

    from dptq.policy import bar_floor

    torch.manual_seed(0)
    options, budget, barred = (3, 4, 6), 18, [1, 3]
    scores = torch.randn(6, 4, 3) * torch.tensor([0.1, 1.0, 10.0, 1.0, 3.0, 1.0])[:, None, None]
    scores[:, barred, 0] += 5.0  # the floor is where the unbarred optimum would put them
    net = nn.Identity()
    keys = set(net.state_dict())
    out = bar_floor(net, barred, floor=0)(scores)
    sel = knapsack.solve_hard(out, options, budget)
    bits = knapsack.bits(sel, options)
    assert (bits.sum(1) == budget).all() and (bits[:, barred] > 3).all()
    assert set(net.state_dict()) == keys and net.floor_barred == (1, 3)
    for b in range(len(scores)):
        best = -float("inf")
        for combo in itertools.product(range(3), repeat=4):
            if sum(options[o] for o in combo) == budget and all(combo[l] > 0 for l in barred):
                best = max(best, sum(float(scores[b, l, o]) for l, o in enumerate(combo)))
        got = float((sel[b] * scores[b]).sum())
        assert got == pytest.approx(best, abs=1e-4)
    plain = knapsack.bits(knapsack.solve_hard(scores, options, budget), options)
    assert (plain[:, barred] == 3).any()  # without the bar the floor wins somewhere


def test_a_policy_barred_from_the_two_smallest_options_gets_the_best_allocation_above_them():
    """``bar_floor`` with two option indices (``pair.barred_options: 2``) against brute force:
    the barred layers end above both, on the best exact-budget allocation that allows it."""
    from torch import nn

    from dptq.policy import bar_floor

    torch.manual_seed(1)
    options, budget, barred = (4, 5, 6, 8), 22, [0, 2]
    scores = torch.randn(5, 4, 4)
    scores[:, barred, :2] += 4.0  # the two smallest options are where the optimum would go
    out = bar_floor(nn.Identity(), barred, floor=[0, 1])(scores)
    sel = knapsack.solve_hard(out, options, budget)
    bits = knapsack.bits(sel, options)
    assert (bits.sum(1) == budget).all() and (bits[:, barred] >= 6).all()
    for b in range(len(scores)):
        best = max(
            sum(float(scores[b, l, o]) for l, o in enumerate(combo))
            for combo in itertools.product(range(4), repeat=4)
            if sum(options[o] for o in combo) == budget and all(combo[l] > 1 for l in barred)
        )
        assert float((sel[b] * scores[b]).sum()) == pytest.approx(best, abs=1e-4)
    plain = knapsack.bits(knapsack.solve_hard(scores, options, budget), options)
    assert (plain[:, barred] == 5).any()  # without the bar the next option up wins somewhere
