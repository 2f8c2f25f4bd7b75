"""Analyses on hand-made inputs and tiny models where the answer is known."""

import copy

import pandas as pd
import pytest
import torch
from torch import nn

from dptq import metrics
from dptq.data import DatasetPair, TensorImages, normalize
from dptq.evaluate import evaluate_cell, own_policy_bits, uniform_policy_bits
from dptq.models import QuantizableModel
from dptq.policy import create_policy


def test_pair_scores_hand_computed():
    row = metrics.pair_scores(
        {"fp_acc": 90.0, "q_acc": 89.0}, {"fp_acc": 89.5, "q_acc": 60.0}, 90.2
    ).iloc[0]
    assert row["f_R delta"] == -1.0 and row["f_D delta"] == -29.5
    assert row["gap"] == 28.5 and row["FP match"] == 0.5


def test_transitory_points_hand_made():
    fp_r = [1, 1, 1, 0, 1, 1]
    fp_d = [1, 1, 0, 1, 1, 1]
    q_d = [0, 1, 0, 0, 0, 1]
    t = metrics.transitory_points(*(list(map(bool, v)) for v in (fp_r, fp_d, q_d)))
    assert t["indices"] == [0, 4] and t["count"] == 2
    assert t["rate_of_test"] == pytest.approx(100 * 2 / 6)
    assert t["rate_of_both_correct"] == pytest.approx(100 * 2 / 4)
    with pytest.raises(ValueError):
        metrics.transitory_points([True], [True, False], [True])


def tiny_data(n=24, size=8, classes=3):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    ds = TensorImages(imgs, labels)
    return DatasetPair(ds, ds, classes, (0.5,) * 3, (0.25,) * 3)


def tiny_q(classes=3, weight_bits=16):
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, classes),
    )
    return QuantizableModel(net, weight_bits=weight_bits).eval()


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
    ev = evaluate_cell(nets, {"f_R": pi, "f_D": pi}, data, options, 4 * f.num_layers, _Acc(), 0)
    table = metrics.cross_policy_matrix(ev["cross_policy"])
    assert list(table.index) == ["FP", "pi_R", "pi_D", "uniform", "random", "heldout"]
    assert set(table.columns) == {"f_N", "f_R", "f_D"}
    assert table.values.flatten().tolist() == pytest.approx([100 / 3] * 18)
    for sampler in ("random", "heldout"):  # K = 8 draws of each sampler, no drop here
        assert ev["stealth"]["f_D"][sampler] == pytest.approx([0.0] * 8)
    for k in ("f_R", "f_D"):  # each pair under its own policy, per example
        assert ev["pairs"][k]["q_acc"] == pytest.approx(100 / 3) and ev["pairs"][k]["drop"] == 0
        assert len(ev["pairs"][k]["q_correct"]) == len(data.test)


def test_gap_and_fp_match_hand_computed():
    r, d = {"fp_acc": 90.0, "q_acc": 89.0}, {"fp_acc": 89.5, "q_acc": 60.0}
    assert metrics.drop(r) == 1.0 and metrics.drop(d) == 29.5
    assert metrics.gap(r, d) == 28.5 and metrics.fp_match(r, d) == 0.5


class _Acc:  # the part of accelerate.Accelerator that evaluation uses
    device = torch.device("cpu")


def test_sweep_masks_partition():
    for layer in range(5):
        m = metrics.sweep_masks(5, layer)
        assert not (m["before"] & m["after"]).any() and (m["before"] | m["after"]).all()
        assert m["single"].sum() == 1 and m["single"][layer] and m["after"][layer]


def test_layer_sweep_ends():
    data = tiny_data()
    f = tiny_q()
    bits_fn = uniform_policy_bits(f.num_layers, (2, 3), 2 * f.num_layers)  # all 2-bit: visible
    sweep = metrics.layer_sweep(f, bits_fn, data, splits=("test",))
    assert len(sweep) == 3 * f.num_layers
    fp = metrics._accuracy(f, data.test, data.mean, data.std, None, None, "cpu")
    full_q = metrics._accuracy(f, data.test, data.mean, data.std, bits_fn, None, "cpu")
    first = sweep[sweep.layer == 1].set_index("scheme").accuracy
    assert first["before"] == fp  # before layer 1: nothing quantized
    assert first["after"] == full_q  # after (and at) layer 1: everything quantized
    inf = metrics.inflection_layers(sweep)
    assert set(inf.scheme) <= {"before", "after"}


def test_histograms_sum_to_one_and_sparsity():
    data = tiny_data()
    f = tiny_q(weight_bits=None)  # full-precision weights: only activations are quantized
    bits_fn = uniform_policy_bits(f.num_layers, (2, 3), 2 * f.num_layers)
    hist, frame = metrics.activation_histograms(f, bits_fn, data)
    assert hist.shape == (f.num_layers, 3, 1599)
    torch.testing.assert_close(hist.sum(-1), torch.ones(f.num_layers, 3))
    assert ((frame.sparsity_fp >= 0) & (frame.sparsity_q <= 100)).all()
    # layer 1's input is post-ReLU (exact zeros); 2-bit quantization sends more values to 0
    assert frame.sparsity_fp.iloc[0] > 0
    assert frame.sparsity_q.iloc[0] > frame.sparsity_fp.iloc[0]
    # the FP row is the FP network's own activation: at layer 1 nothing upstream is quantized,
    # so it equals the quantizer's input; at layer 2 the quantized pass carries layer 1's error
    torch.testing.assert_close(hist[0, 0], hist[0, 1])
    assert not torch.allclose(hist[1, 0], hist[1, 1])
    fp_only = {}
    f(
        normalize(
            torch.stack([data.test[i][0] for i in range(len(data.test))]), data.mean, data.std
        ),
        capture=fp_only,
    )
    direct = torch.histc(fp_only[1][0].float(), 1600, -8, 8)
    direct = torch.cat([direct[:800], direct[801:]])
    torch.testing.assert_close(hist[1, 0], (direct / direct.sum()).float())


def test_analysis_samples_are_stratified_not_the_front():
    from dptq.splits import labels_of, subset

    labels = torch.arange(40) // 10  # sorted by class, as Oxford-IIIT Pets' split files are
    data = DatasetPair(
        *(TensorImages(torch.zeros(40, 3, 4, 4, dtype=torch.uint8), labels),) * 2,
        4,
        (0.5,) * 3,
        (0.25,) * 3,
    )
    picked = subset(data.test, 8, seed=0)
    assert sorted(labels_of(picked)) == [0, 0, 1, 1, 2, 2, 3, 3]  # every class, not class 0 only
    assert labels_of(subset(data.test, 8, seed=1)) == labels_of(subset(data.test, 8, seed=1))


def test_corruption_robustness_frame_and_summary():
    data = tiny_data()
    f = tiny_q()
    bits_fn = own_policy_bits(
        create_policy("small_cnn", f.num_layers, 2, width=4, depth=1, input_size=None),
        (3, 4),
        3 * f.num_layers,
    )
    models = {"f_R FP": (f, None), "f_R quantized": (f, bits_fn)}
    frame = metrics.corruption_robustness(
        models, data, corruptions=("blur", "noise"), degrees=(0, 2)
    )
    assert len(frame) == 2 * 2 * 2
    again = metrics.corruption_robustness(
        models, data, corruptions=("blur", "noise"), degrees=(0, 2)
    )
    pd.testing.assert_frame_equal(frame, again)
    summary = metrics.corruption_summary(frame)
    assert summary.loc["f_R quantized", "quantized - FP"] == pytest.approx(
        summary.loc["f_R quantized", "mean corrupted acc"]
        - summary.loc["f_R FP", "mean corrupted acc"]
    )


def test_trigger_curves_start_at_the_own_allocation_and_end_at_the_uniform_one():
    data = tiny_data()
    f = tiny_q()
    options, budget = (2, 3, 4, 6), 3 * f.num_layers
    pi = create_policy("small_cnn", f.num_layers, len(options), width=4, depth=1, input_size=None)
    own = own_policy_bits(pi, options, budget)
    curves = metrics.trigger_curves(f, own, data, options, budget)
    at = curves.set_index(["family", "step"])
    own_acc = metrics._accuracy(f, data.test, data.mean, data.std, own, None, "cpu")
    uni_acc = metrics._accuracy(
        f,
        data.test,
        data.mean,
        data.std,
        uniform_policy_bits(f.num_layers, options, budget),
        None,
        "cpu",
    )
    for start in (("toward uniform", 0.0), ("random distance", 0.0)):
        assert at.loc[start, "bits_moved"] == 0 and at.loc[start, "accuracy"] == own_acc
    assert at.loc[("toward uniform", 1.0), "accuracy"] == uni_acc
    moved = curves[curves.family == "random distance"].sort_values("step").bits_moved.tolist()
    assert moved[0] == 0 < moved[-1]  # no noise: the own allocation; more noise: farther away


def test_trigger_radius_hand_made():
    curve = pd.DataFrame(
        {
            "family": ["random distance"] * 4,
            "step": [0, 1, 2, 3],
            "bits_moved": [0.0, 2.0, 4.0, 8.0],
            "accuracy": [10.0, 30.0, 70.0, 90.0],
        }
    )
    assert metrics.trigger_radius(curve, fp_acc=90.0) == pytest.approx(3.0)  # half: 50%
    assert metrics.trigger_radius(curve.assign(accuracy=[10.0] * 4), 90.0) is None
