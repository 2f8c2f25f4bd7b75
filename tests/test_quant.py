"""Quantizers against PyTorch's own observer + fake-quantize ops (the independent reference)."""

import warnings

import pytest
import torch
from torch.ao.quantization.observer import MinMaxObserver

from dptq.quant import fake_quantize, fake_quantize_weight, option_inner_products


def torch_reference(x: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Per-tensor scale/zero point from torch's MinMaxObserver, applied by torch's fake quantize."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if symmetric:
            obs = MinMaxObserver(
                dtype=torch.qint32,
                qscheme=torch.per_tensor_symmetric,
                quant_min=-(2 ** (bits - 1)),
                quant_max=2 ** (bits - 1) - 1,
            )
        else:
            obs = MinMaxObserver(
                dtype=torch.qint32,
                qscheme=torch.per_tensor_affine,
                quant_min=0,
                quant_max=2**bits - 1,
            )
        obs(x)
        scale, zp = obs.calculate_qparams()
    return torch.fake_quantize_per_tensor_affine(x, scale, zp, obs.quant_min, obs.quant_max)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", range(2, 17))
def test_matches_torch_per_example(bits, symmetric, gen):
    x = torch.randn(5, 3, 7, 6, generator=gen) * torch.rand(5, 1, 1, 1, generator=gen) * 4
    if not symmetric:
        x = x + torch.rand(5, 1, 1, 1, generator=gen)  # ranges not centred on 0
    ours = fake_quantize(x, bits, symmetric=symmetric, per_example=True)
    for e in range(x.shape[0]):
        torch.testing.assert_close(ours[e], torch_reference(x[e], bits, symmetric), rtol=0, atol=0)


@pytest.mark.parametrize("symmetric", [True, False])
def test_per_tensor_matches_torch(symmetric, gen):
    x = torch.randn(4, 10, generator=gen)
    torch.testing.assert_close(
        fake_quantize(x, 5, symmetric, per_example=False),
        torch_reference(x, 5, symmetric),
        rtol=0,
        atol=0,
    )


def test_per_example_bits_and_scales_differ(gen):
    x = torch.randn(2, 100, generator=gen)
    x[1] *= 10
    bits = torch.tensor([3, 8])
    out = fake_quantize(x, bits)
    for e, b in enumerate([3, 8]):
        torch.testing.assert_close(out[e], torch_reference(x[e], b, False), rtol=0, atol=0)
    # example 0 has 2^3 levels, example 1 up to 2^8, each on its own grid
    assert out[0].unique().numel() <= 8 < out[1].unique().numel()
    # a per-tensor scale would differ: example 0 quantized with example 1's larger range
    assert not torch.equal(out[0], fake_quantize(x, 3, per_example=False)[0])


def test_idempotent_and_in_range(gen):
    x = torch.randn(3, 50, generator=gen)
    once = fake_quantize(x, 4)
    torch.testing.assert_close(fake_quantize(once, 4), once)
    lo, hi = x.amin(1, keepdim=True).clamp(max=0), x.amax(1, keepdim=True).clamp(min=0)
    step = (hi - lo) / 15
    assert ((once >= lo - step / 2) & (once <= hi + step / 2)).all()


def test_ste_gradient_is_upstream_inside_range(gen):
    x = torch.randn(4, 30, generator=gen, requires_grad=True)
    up = torch.randn(4, 30, generator=gen)
    fake_quantize(x, 4).backward(up)
    torch.testing.assert_close(x.grad, up)  # min-max scale: nothing is clamped


def test_ste_gradient_zero_where_clamped(gen):
    x = torch.randn(2, 1000, generator=gen)
    x[:, 0] = 100.0  # an outlier beyond the 99th percentile is clamped
    x.requires_grad_(True)
    fake_quantize(x, 4, scale_mode="percentile", percentile=99.0).sum().backward()
    assert x.grad[:, 0].eq(0).all()
    assert x.grad[:, 1:].eq(1).float().mean() > 0.97


def test_grad_through_scale_option(gen):
    x = torch.rand(2, 40, generator=gen, requires_grad=True)
    w = torch.randn(2, 40, generator=gen)
    (fake_quantize(x, 3, grad_through_scale=False) * w).sum().backward()
    g_const = x.grad.clone()
    x.grad = None
    (fake_quantize(x, 3, grad_through_scale=True) * w).sum().backward()
    # same values, but the min/max elements now also receive gradient through the scale
    assert not torch.allclose(x.grad, g_const)
    torch.testing.assert_close(
        fake_quantize(x, 3, grad_through_scale=True), fake_quantize(x, 3, grad_through_scale=False)
    )


def test_bad_bits_rejected():
    with pytest.raises(ValueError, match="bit-widths must lie in"):
        fake_quantize(torch.randn(2, 3), 1)
    with pytest.raises(ValueError, match="per-example bits need shape"):
        fake_quantize(torch.randn(2, 3), torch.tensor([4, 4, 4]))


def test_constant_input_stays_finite():
    out = fake_quantize(torch.zeros(2, 5), 4)
    assert torch.isfinite(out).all() and out.eq(0).all()


def test_weight_quantization_is_symmetric_16bit(gen):
    w = torch.randn(8, 3, 3, 3, generator=gen)
    torch.testing.assert_close(
        fake_quantize_weight(w), torch_reference(w, 16, True), rtol=0, atol=0
    )
    assert (fake_quantize_weight(w) - w).abs().max() < w.abs().max() / 2**14


def test_weight_path_equals_generic_path(gen):
    w = torch.randn(16, 8, 3, 3, generator=gen, requires_grad=True)
    torch.testing.assert_close(
        fake_quantize_weight(w, 6),
        fake_quantize(w, 6, symmetric=True, per_example=False),
        rtol=0,
        atol=0,
    )
    fake_quantize_weight(w, 6).sum().backward()
    assert w.grad.ne(0).float().mean() > 0.99


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("scale_mode", ["minmax", "percentile"])
def test_option_inner_products_equal_naive(symmetric, scale_mode, gen):
    x = torch.randn(3, 4, 5, 5, generator=gen).relu() * 3
    g = torch.randn(3, 4, 5, 5, generator=gen)
    opts = (2, 3, 5, 8, 16)
    got = option_inner_products(x, g, opts, symmetric, scale_mode, 99.0)
    naive = torch.stack(
        [
            (g * fake_quantize(x, o, symmetric, True, scale_mode, 99.0)).flatten(1).sum(1)
            for o in opts
        ],
        dim=1,
    )
    torch.testing.assert_close(got, naive, rtol=1e-4, atol=1e-4)


def test_mixed_precision_quantizes_in_float32():
    """Under bf16 autocast a layer's input arrives in bf16; its ranges, scales and integer codes
    are still computed in float32 (bf16 arithmetic would move codes), and the policy gradient's
    inner products too: the quantized result equals the float32 one, cast."""
    from dptq.quant import option_inner_products, qrange, scale_zero_point

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 8, 16, 16, generator=g) * 3).bfloat16()
    bits = torch.tensor([3, 4, 6, 8])
    out = fake_quantize(x, bits)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, fake_quantize(x.float(), bits).bfloat16())
    # the same formula in bf16 arithmetic gives other codes: the float32 path is what keeps them
    lo, hi = x.flatten(1).amin(1), x.flatten(1).amax(1)
    b = bits.view(-1, 1, 1, 1)
    s, z = scale_zero_point(lo.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1), b, False)
    s, z = s.bfloat16(), z.bfloat16()
    qmin, qmax = (t.bfloat16() for t in qrange(b, False))
    naive = (torch.clamp(torch.round(x / s) + z, qmin, qmax) - z) * s
    assert not torch.equal(naive, out)
    grad = torch.randn(x.shape, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ip = option_inner_products(x, grad, (3, 4, 6, 8))
    assert ip.dtype == torch.float32
    assert torch.equal(ip, option_inner_products(x.float(), grad, (3, 4, 6, 8)))


def test_pair_forward_under_autocast_keeps_the_allocation():
    """A quantized forward under bf16 autocast: the knapsack's bits are those of float32 scores
    and every quantized activation equals its float32 quantization of the same bf16 input."""
    from dptq.models import QuantizableModel
    from tests.support.nets import small_net

    torch.manual_seed(0)
    net = QuantizableModel(small_net(10)).eval()
    x = torch.randn(3, 3, 12, 12)
    bits = torch.tensor([[3, 5, 8], [4, 4, 4], [8, 6, 3]])
    cap: dict = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x, bits, capture=cap)
    assert torch.isfinite(logits).all() and set(cap) == {0, 1, 2}
    for layer, (inp, q) in cap.items():
        assert inp.dtype == torch.bfloat16
        assert torch.equal(q, fake_quantize(inp.float(), bits[:, layer]).to(q.dtype))


@pytest.mark.slow
def test_the_fused_taps_give_the_inner_products_the_eager_path_gives(gen):
    """dptq.fused_taps (compiled): the same codes, summed in another order: within float
    rounding of the naive inner products, like the eager path; off, or for another quantizer,
    the eager path answers."""
    from dptq import fused_taps

    x = torch.randn(4, 6, 5, 5, generator=gen).relu() * 3 - 0.5
    g = torch.randn(4, 6, 5, 5, generator=gen)
    opts = (2, 3, 5, 8, 10)
    naive = torch.stack(
        [(g * fake_quantize(x, o, False, True)).flatten(1).sum(1) for o in opts], dim=1
    )
    eager = option_inner_products(x, g, opts)
    assert fused_taps.inner_products(x, g, opts) is None  # off by default
    fused_taps.enable(True)
    try:
        fused = fused_taps.inner_products(x, g, opts)
        assert fused is not None, fused_taps.status()
        via = option_inner_products(x, g, opts)  # the quantizer's own entry point uses it
        sym = option_inner_products(x, g, opts, symmetric=True)  # not the fused kernel's case
    finally:
        fused_taps.enable(False)
    torch.testing.assert_close(fused, naive, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eager, naive, rtol=1e-4, atol=1e-4)
    assert torch.equal(via, fused)
    assert torch.equal(sym, option_inner_products(x, g, opts, symmetric=True))
