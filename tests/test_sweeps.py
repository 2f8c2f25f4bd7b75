"""Fig. 2 and Fig. 3 (dptq.sweeps) on a tiny network where the ends are known."""

import torch

from dptq import sweeps
from dptq.data import normalize
from dptq.evaluate import accuracy, uniform_policy_bits
from tests.support.nets import tiny_data, tiny_q


def test_sweep_masks_partition():
    for layer in range(5):
        m = sweeps.sweep_masks(5, layer)
        assert not (m["before"] & m["after"]).any() and (m["before"] | m["after"]).all()
        assert m["single"].sum() == 1 and m["single"][layer] and m["after"][layer]
    assert sweeps.sweep_layers(10, 3) == [0, 4, 9] and sweeps.sweep_layers(3, None) == [0, 1, 2]


def test_layer_sweep_ends():
    data = tiny_data()
    f = tiny_q()
    bits_fn = uniform_policy_bits(f.num_layers, (2, 3), 2 * f.num_layers)  # all 2-bit: visible
    sweep = sweeps.layer_sweep(f, bits_fn, data, splits=("test",))
    assert len(sweep) == 3 * f.num_layers
    fp = accuracy(f, data, "cpu")
    full_q = accuracy(f, data, "cpu", bits_fn)
    first = sweep[sweep.layer == 1].set_index("scheme").accuracy
    assert first["before"] == fp  # before layer 1: nothing quantized
    assert first["after"] == full_q  # after (and at) layer 1: everything quantized
    inf = sweeps.inflection_layers(sweep)
    assert set(inf.scheme) <= {"before", "after"}


def test_histograms_sum_to_one_and_sparsity():
    data = tiny_data()
    f = tiny_q(weight_bits=None)  # full-precision weights: only activations are quantized
    bits_fn = uniform_policy_bits(f.num_layers, (2, 3), 2 * f.num_layers)
    hist, frame = sweeps.activation_histograms(f, bits_fn, data)
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
    images = torch.stack([data.test[i][0] for i in range(len(data.test))])
    f(normalize(images, data.mean, data.std), capture=fp_only)
    direct = torch.histc(fp_only[1][0].float(), 1600, -8, 8)
    direct = torch.cat([direct[:800], direct[801:]])
    torch.testing.assert_close(hist[1, 0], (direct / direct.sum()).float())
