"""Fake quantization at 8 bits against PyTorch's real int8 kernels (dptq.int8), on a small model."""

from __future__ import annotations

import pytest
import torch

from bench.perf.int8 import _train
from dptq.data import load_dataset
from dptq.int8 import int8_agreement
from dptq.models import QuantizableModel
from tests.support.nets import small_net


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits", image_size=8)
    torch.manual_seed(0)
    model = small_net(10)
    _train(model, data, epochs=10, lr=3e-3)
    return QuantizableModel(model), data


def test_fake_quantization_agrees_with_int8_kernels(trained):
    net, data = trained
    res = int8_agreement(net, data, max_examples=200)
    assert res["examples"] == 200
    assert res["acc"]["fp"] > 85  # a model that has learnt something
    # a small, low-margin model (8 px digits): the architectures themselves are in
    # leaderboard/perf/int8.md; here at least 97% and every disagreement explained
    assert res["agreement"] >= 97.0 and res["agreement_w8"] >= 97.0, res
    # not trivially equal either (the int8 network quantizes more places than ours) ...
    assert 0 < res["max_logit_diff"], res
    # ... and a disagreement only where the FP top-2 margin is within the logit difference
    assert all(m <= 2 * res["max_logit_diff"] for m in res["disagree_margins"]), res
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        # the bounds measured where they were set (CI's AVX-512 CPU); on an AVX2 CPU the same
        # model and seed give a largest logit difference of 2.55 (median margin 2.94) with the
        # same 99.5% agreement: fbgemm's AVX2 kernels differ (not explained yet; docs/int8.md)
        assert res["max_logit_diff"] < 1.0, res
        assert res["median_margin"] > 4 * res["max_logit_diff"], res
    assert net.weight_bits == 16  # restored after the 8-bit-weight comparison


def test_int8_runner_equals_a_fresh_conversion_per_example(trained):
    from dptq.data import normalize
    from dptq.int8 import Int8Runner

    net, data = trained
    images = torch.stack([data.test[i][0] for i in range(3)])
    x = normalize(images, data.mean, data.std)
    runner = Int8Runner(net.model, x[:1])
    for i in range(3):  # each example's own ranges, re-set in the one converted network ...
        patched = runner(x[i : i + 1])
        fresh = runner.convert()(x[i : i + 1])  # ... equal to converting for that example
        assert torch.equal(patched, fresh)
    assert not torch.equal(runner(x[:1]), runner(x[1:2]))
