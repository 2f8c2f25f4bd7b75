"""The ``allocations`` and ``trigger_layers`` analyses on a network fragile at one known layer
(tests/support/fragile.py: 5 quantized layers; the head's input at 3 bits sends every image to class 0),
with policies whose allocations are fixed by hand."""

from __future__ import annotations

import torch
from torch import nn

from dptq.analyses import ANALYSES, TrainedCell
from dptq.evaluate import evaluate_cell
from dptq.knapsack import floor_probability
from dptq.models import QuantizableModel
from tests.support.fragile import fragile_data, fragile_net

OPTIONS, BUDGET = (3, 4, 5, 6), 20  # 5 layers, 4 bits on average


class FixedPolicy(nn.Module):
    """Scores that make the knapsack choose ``bits[0]`` for class-0 images and ``bits[1]`` for
    class-1 images (the class is the sign of the first input value)."""

    def __init__(self, bits0, bits1):
        super().__init__()
        self.register_buffer("s0", self._scores(bits0))
        self.register_buffer("s1", self._scores(bits1))

    @staticmethod
    def _scores(bits):
        return torch.stack([100.0 * (torch.tensor(OPTIONS) == b).float() for b in bits])

    def forward(self, x):
        one = (x.flatten(1)[:, 0] > 0)[:, None, None]
        return torch.where(one, self.s1, self.s0)


def _cell(pi_d) -> TrainedCell:
    data = fragile_data()
    nets = {k: QuantizableModel(fragile_net()) for k in ("f_N", "f_R", "f_D")}
    even = [4, 4, 4, 4, 4]
    pols = {"f_R": FixedPolicy(even, even), "f_D": pi_d}
    ev = evaluate_cell(nets, pols, data, OPTIONS, BUDGET, "cpu", seed=0, random_allocations=8)
    return TrainedCell(nets, pols, data, OPTIONS, BUDGET, ev, f_n_acc=100.0, max_examples=None)


def test_allocations_are_each_policys_bits_per_layer(tmp_path):
    a, b = [4, 4, 4, 5, 3], [3, 5, 4, 4, 4]  # half the images each
    out = ANALYSES["allocations"].run(_cell(FixedPolicy(a, b)), tmp_path)
    d, r = out.fields.f_D, out.fields.f_R
    assert out.fields.total == 64 and d.distinct == 2 and r.distinct == 1
    assert d.mean == [(x + y) / 2 for x, y in zip(a, b)]
    assert d.sd == [abs(x - y) / 2 for x, y in zip(a, b)]  # over the examples, population sd
    assert d.at_floor == [0.5, 0.0, 0.0, 0.0, 0.5] and r.at_floor == [0.0] * 5
    assert r.mean == [4.0] * 5 and r.sd == [0.0] * 5
    assert (tmp_path / "bits_per_layer.png").stat().st_size > 1000


def test_trigger_layers_find_the_fragile_layer_and_the_law_predicts_the_random_drop(tmp_path):
    cell = _cell(FixedPolicy([4, 4, 4, 5, 3], [4, 4, 4, 5, 3]))  # the head at the floor
    f = ANALYSES["trigger_layers"].run(cell, tmp_path).fields
    assert f.examples == 64 and f.own_drop == 50.0  # every class-1 image lost
    assert f.layers == [5] and f.names == [cell.nets["f_D"].layer_names[4]]
    assert f.single_drops == [50.0] and f.floor_share == [1.0]
    p = floor_probability(OPTIONS, BUDGET, 5, 1)
    assert f.floor_probability == float(p) and f.predicted_heldout_drop == round(float(p) * 50, 4)
    # measured: 8 held-out draws per example; a class-1 image is lost when its head draws 3 bits
    c = cell.counts
    lost = sum(c.f_D.FP - h for h in c.f_D.heldout) / len(c.f_D.heldout)
    assert f.measured_heldout_drop == 100 * lost / 64
    n_draws, q = 32 * 8, float(p)  # Bernoulli(q) per class-1 draw: within 4 sd of the law
    sd = 100 * (q * (1 - q) / n_draws) ** 0.5 / 2
    assert abs(f.measured_heldout_drop - f.predicted_heldout_drop) < 4 * sd


def test_no_single_layer_trigger_without_an_attack(tmp_path):
    even = [4, 4, 4, 4, 4]
    f = ANALYSES["trigger_layers"].run(_cell(FixedPolicy(even, even)), tmp_path).fields
    assert f.own_drop == 0.0 and f.layers == [] and f.floor_probability is None
    assert f.predicted_heldout_drop is None


def test_fp_indicators_analysis_reports_each_network_on_the_subset(tmp_path):
    """Every indicator for f_N, f_R and f_D (the same fragile network here: the same values), the
    per-layer figure written; the values are dptq.indicators' on the same images."""
    from dptq.indicators import INDICATORS, fp_indicators

    cell = _cell(FixedPolicy([4] * 5, [4] * 5))
    out = ANALYSES["fp_indicators"].run(cell, tmp_path)
    values = out.fields.values
    assert out.fields.examples == 64 and set(values) == {"f_N", "f_R", "f_D"}
    assert all(set(v) == set(INDICATORS) for v in values.values())
    assert values["f_D"] == values["f_R"] == values["f_N"]
    images = torch.stack([cell.data.test[i][0] for i in range(64)])
    from dptq.data import normalize

    x = normalize(images, cell.data.mean, cell.data.std)
    net = cell.nets["f_D"]
    direct, _ = fp_indicators(net.model, net.layer_names, [x])
    assert direct["act_outlier"] == values["f_D"]["act_outlier"]
    assert (tmp_path / "layer_outliers.png").stat().st_size > 1000
