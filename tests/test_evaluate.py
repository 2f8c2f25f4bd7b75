"""One evaluation loop, exact counts (dptq.evaluate)."""

import copy

import pytest
import torch
from torch import nn

from dptq.evaluate import (
    count,
    evaluate_cell,
    evaluate_pair,
    heldout_policy_bits,
    predict,
    table_bits,
    uniform_policy_bits,
)
from dptq.policy import create_policy
from tests.support.nets import tiny_data, tiny_q


def test_cross_policy_known_answers():
    """A bias-only network ignores its input: every policy gives its FP accuracy; copies agree."""
    data = tiny_data()
    f = tiny_q()
    with torch.no_grad():
        for m in f.model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.zero_()
        f.model[-1].bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # always class 1: 1/3 of the labels
    options = (3, 4, 5)
    pi = create_policy("small_cnn", f.num_layers, 3, width=4, depth=1, input_size=None)
    nets = {"f_N": f, "f_R": copy.deepcopy(f), "f_D": copy.deepcopy(f)}
    ev = evaluate_cell(nets, {"f_R": pi, "f_D": pi}, data, options, 4 * f.num_layers, "cpu", 0)
    c = ev.counts()
    assert c.total == 24 and ev.k == 8
    for net in ("f_N", "f_R", "f_D"):  # 8 of 24 right under everything
        nc = c.net(net)
        assert (nc.FP, nc.pi_R, nc.pi_D, nc.uniform) == (8, 8, 8, 8)
        assert nc.random == [8] * 8 and nc.heldout == [8] * 8
    assert c.gap() == 0 and c.hidden_gap() == 0
    pe = ev.per_example()  # one character per example, in order
    expected = "".join("1" if y == 1 else "0" for y in range(24) for y in [y % 3])
    assert pe["f_D"]["pi_D"] == expected and pe["f_N"]["random"] == [expected] * 8


def test_counts_are_integers_and_accuracies_exact():
    data = tiny_data()
    f = tiny_q()
    right, n = count(f, data, "cpu")
    pred, y = predict(f, data, "cpu")
    assert isinstance(right, int) and n == 24 and right == int((pred == y).sum())
    pi = create_policy("small_cnn", f.num_layers, 2, width=4, depth=1, input_size=None)
    res = evaluate_pair(f, pi, data, (3, 4), 3 * f.num_layers, "cpu", split="val")
    assert res["fp_acc"] == 100 * right / n and res["total"] == 24
    assert res["drop"] == pytest.approx(res["fp_acc"] - res["q_acc"], abs=1e-12)


def test_table_bits_serves_rows_in_order():
    data = tiny_data()
    f = tiny_q()
    table = torch.tensor([[3, 6]] * 12 + [[4, 5]] * 12)
    fn = table_bits(table)
    rows = [fn(torch.zeros(5, 3, 8, 8)), fn(torch.zeros(19, 3, 8, 8))]
    assert torch.equal(torch.cat(rows), table)
    seen = []
    predict(f, data, "cpu", lambda x: seen.append(len(x)) or table_bits(table)(x), batch_size=7)
    assert seen == [7, 7, 7, 3]


def test_samplers_meet_the_budget():
    x = torch.zeros(16, 3, 8, 8)
    for fn in (uniform_policy_bits(5, (3, 4, 6), 20), heldout_policy_bits(5, (3, 4, 6), 20, 1)):
        assert fn(x).sum(1).tolist() == [20] * 16
