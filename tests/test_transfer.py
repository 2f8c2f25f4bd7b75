"""Quantizer schemes of the transfer matrix, each against a hand-computed case."""

from __future__ import annotations

import pytest
import torch

from dptq.models import (
    ActQuantConfig,
    QuantizableModel,
    StaticActQuant,
    calibrate_static,
    quantizer,
)
from dptq.quant import fake_quantize, fake_quantize_static
from dptq.transfer import SCHEMES, gap_by_scheme, scheme_quantizer, transfer_matrix
from tests.support.fragile import fragile_data, fragile_net


def test_per_channel_scales_each_channel_on_its_own():
    # channel 0: [0, 0.4, 3], channel 1: [0, 16, 30]; 2 bits, asymmetric
    x = torch.tensor([[[[0.0, 0.4, 3.0]], [[0.0, 16.0, 30.0]]]])
    per_channel = fake_quantize(x, 2, per_channel=True)
    # ch0: scale 1 -> 0, 0, 3; ch1: scale 10 -> 0, 20, 30
    assert per_channel.flatten().tolist() == pytest.approx([0, 0, 3, 0, 20, 30])
    per_example = fake_quantize(x, 2)  # one range [0, 30], scale 10: channel 0 vanishes
    assert per_example.flatten().tolist() == pytest.approx([0, 0, 0, 0, 20, 30])
    flat = torch.tensor([[0.0, 0.4, 3.0, 16.0]])  # a Linear layer's input: per example
    assert torch.equal(fake_quantize(flat, 2, per_channel=True), fake_quantize(flat, 2))


def test_static_range_is_fixed_and_clamps():
    # [lo, hi] = [-1, 3], 2 bits: scale 4/3, zero point round(0.75) = 1
    x = torch.tensor([[2.0, 5.0, -3.0, 0.0]])
    out = fake_quantize_static(x, 2, -1.0, 3.0)
    assert out.flatten().tolist() == pytest.approx([8 / 3, 8 / 3, -4 / 3, 0.0])
    # the same range for every example, whatever its own values
    y = torch.tensor([[2.0], [200.0]])
    assert fake_quantize_static(y, torch.tensor([2, 2]), -1.0, 3.0).flatten().tolist() == (
        pytest.approx([8 / 3, 8 / 3])
    )


def test_absmax_symmetric_hand_case():
    # absmax 2, 2 bits: codes -2..1, scale 2 / 1.5 = 4/3
    x = torch.tensor([[-1.0, 0.5, 2.0]])
    out = fake_quantize(x, 2, symmetric=True)
    assert out.flatten().tolist() == pytest.approx([-4 / 3, 0.0, 4 / 3])


def test_percentile_clamps_the_outlier():
    x = torch.arange(101.0)[None]  # 0..100; the 99th percentile is 99, the 1st is 1 (-> 0)
    out = fake_quantize(x, 8, scale_mode="percentile", percentile=99.0)
    assert out.max().item() == pytest.approx(99.0)
    assert fake_quantize(x, 8).max().item() == pytest.approx(100.0)


def test_calibrate_static_records_each_layers_range():
    net = QuantizableModel(fragile_net())
    x = torch.tensor([[1.0] + [0.0] * 11, [-1.0] + [0.0] * 11]).view(2, 3, 2, 2)
    q = calibrate_static(net, [x[:1], x[1:]])
    assert q.ranges[0] == (-1.0, 1.0)  # an identity layer's input: the copied pixel
    assert q.ranges[-1] == (-1.0, 20.0)  # the head's: the pixel and the outlier


def test_quantizer_context_restores_and_transfer_matrix_reads_it():
    net, data = QuantizableModel(fragile_net()), fragile_data()
    head_at_3 = lambda x: torch.tensor([[5, 5, 4, 3, 3]] * x.shape[0])  # noqa: E731
    own = net.act_quant
    with quantizer(net, StaticActQuant(((0.0, 1.0),) * 5)) as q:
        assert isinstance(q.act_quant, StaticActQuant)
    assert net.act_quant is own
    frame = transfer_matrix({"f_D": (net, head_at_3)}, data, schemes=tuple(SCHEMES))
    assert list(frame.scheme) == list(SCHEMES)
    drops = dict(zip(frame["scheme"], frame["drop"]))
    # the head's input [+-1, 20, 0, ...] at 3 bits: min-max, per-channel (2-D input: per
    # example) and the static range (calibrated [-1, 20]) all lose the sign
    assert drops["minmax"] == drops["per_channel"] == drops["static"] == 50.0
    # abs-max symmetric at 3 bits: step 20 / 3.5 = 5.7 -> the sign is lost as well
    assert drops["absmax_sym"] == 50.0
    table = gap_by_scheme(frame)
    assert list(table.columns) == ["f_D drop"]


def test_scheme_quantizer_names():
    net, data = QuantizableModel(fragile_net()), fragile_data()
    assert isinstance(scheme_quantizer("static", net, data, "cpu"), StaticActQuant)
    assert scheme_quantizer("pct99.9", net, data, "cpu") == ActQuantConfig(
        scale_mode="percentile", percentile=99.9
    )
    with pytest.raises(ValueError, match="unknown quantizer scheme"):
        scheme_quantizer("nope", net, data, "cpu")
