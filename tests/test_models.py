"""The quantizable wrapper: layers found, per-example bits, masks, capture, policy gradient."""

import copy

import pytest
import torch
from torch import nn

from dptq import knapsack
from dptq.models import QuantizableModel, create_model
from dptq.policy import create_policy
from dptq.quant import fake_quantize

OPTIONS = [3, 4, 5, 6, 7, 8]


def tiny_net(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def manual_quantized_forward(net: nn.Sequential, x, bits):
    """Reference: the same network run layer by layer with explicit fake quantization."""
    l = -1
    for i, m in enumerate(net):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if i > 0:  # skip_first: the image itself stays full precision
                l += 1
                x = fake_quantize(x, bits[:, l])
            w = fake_quantize(m.weight, 16, symmetric=True, per_example=False)
            x = (
                m._conv_forward(x, w, m.bias)
                if isinstance(m, nn.Conv2d)
                else nn.functional.linear(x, w, m.bias)
            )
        else:
            x = m(x)
    return x


@pytest.mark.parametrize(
    "name,expected", [("resnet18", 20), ("mobilenetv4_conv_medium", 77), ("regnetx_016", 59)]
)
def test_layer_counts_of_paper_students(name, expected):
    q = QuantizableModel(create_model(name, 37))
    assert q.num_layers == expected
    assert QuantizableModel(create_model(name, 37), skip_first=False).num_layers == expected + 1


def test_full_precision_is_untouched():
    net = tiny_net()
    q = QuantizableModel(net)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(q(x), net(x), rtol=0, atol=0)


def test_quantized_matches_manual_reference():
    net = tiny_net()
    q = QuantizableModel(net)
    assert q.num_layers == 3
    x = torch.randn(4, 3, 8, 8)
    bits = torch.tensor([[3, 8, 4], [8, 8, 8], [5, 3, 16], [2, 2, 2]])
    torch.testing.assert_close(q(x, bits), manual_quantized_forward(net, x, bits))
    assert not torch.allclose(q(x, bits), q(x))
    # per-example: changing example 0's bits changes only example 0's output
    other = bits.clone()
    other[0] = 16
    a, b = q(x, bits), q(x, other)
    assert not torch.allclose(a[0], b[0]) and torch.equal(a[1:], b[1:])


def test_masks_at_the_ends():
    net = tiny_net()
    q = QuantizableModel(net)
    x, bits = torch.randn(3, 3, 8, 8), torch.full((3, 3), 3)
    full_mask = torch.ones(3, dtype=torch.bool)
    torch.testing.assert_close(q(x, bits, mask=full_mask), q(x, bits), rtol=0, atol=0)
    torch.testing.assert_close(
        q(x, bits, mask=torch.zeros(3, dtype=torch.bool)), q(x), rtol=0, atol=0
    )
    one = torch.tensor([False, True, False])
    assert not torch.allclose(q(x, bits, mask=one), q(x))


def test_capture_before_and_after():
    q = QuantizableModel(tiny_net())
    x, bits = torch.randn(2, 3, 8, 8), torch.full((2, 3), 3)
    cap = {}
    q(x, bits, capture=cap)
    assert sorted(cap) == [0, 1, 2]
    pre, post = cap[1]
    assert pre.shape == post.shape and post.unique().numel() <= 2 * 8
    torch.testing.assert_close(post, fake_quantize(pre, 3))
    fp_cap = {}
    q(x, capture=fp_cap)
    assert all(torch.equal(a, b) for a, b in fp_cap.values())


def test_weights_are_shared_not_copied():
    net = tiny_net()
    q = QuantizableModel(net)
    assert {id(p) for p in q.parameters()} == {id(p) for p in net.parameters()}
    x = torch.randn(2, 3, 8, 8)
    q(x, torch.full((2, 3), 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_deepcopy_is_independent():
    q = QuantizableModel(tiny_net())
    q2 = copy.deepcopy(q)
    with torch.no_grad():
        for p in q2.parameters():
            p.mul_(0.5)
    x, bits = torch.randn(2, 3, 8, 8), torch.full((2, 3), 4)
    cap = {}
    q2(x, bits, capture=cap)
    assert cap and q._state is None
    assert not torch.allclose(q(x, bits), q2(x, bits))


def test_policy_gradient_reaches_policy_and_is_nonzero():
    q = QuantizableModel(tiny_net())
    policy = create_policy(
        "small_cnn", q.num_layers, len(OPTIONS), width=4, depth=2, input_size=None
    )
    x = torch.randn(4, 3, 8, 8)
    scores = policy(x)
    sel = knapsack.solve(scores, OPTIONS, 12)
    bits = knapsack.bits(sel, OPTIONS)
    assert bits.sum(1).eq(12).all()
    out = q(x, bits, selection=sel, options=OPTIONS)
    torch.testing.assert_close(out, q(x, bits))  # the tap does not change the forward pass
    out[:, 0].sum().backward()
    grads = [p.grad for p in policy.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_tap_gradient_equals_onehot_weighted_sum_surrogate():
    """Backward of the tap == gradient of sum_o G_o * Q_o(x) w.r.t. G (the documented method)."""
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    q = QuantizableModel(net, weight_bits=None)
    x = torch.randn(3, 3, 4, 4)
    scores = torch.randn(3, 1, 3, requires_grad=True)
    opts = [2, 3, 4]
    sel = knapsack.solve(scores, opts, 3)  # forces 3 bits
    q(x, knapsack.bits(sel, opts), selection=sel, options=opts).sum().backward()
    h = torch.relu(net[0](x))
    g_sel = torch.zeros(3, 1, 3, requires_grad=True)
    mix = sum(g_sel[:, 0, o, None, None, None] * fake_quantize(h, b) for o, b in enumerate(opts))
    net[2](mix).sum().backward()
    torch.testing.assert_close(scores.grad, g_sel.grad)


def test_bad_bits_shape():
    q = QuantizableModel(tiny_net())
    with pytest.raises(ValueError, match="bits must be"):
        q(torch.randn(2, 3, 8, 8), torch.full((2, 5), 4))


def test_create_model_errors():
    with pytest.raises(ValueError, match="unknown timm model"):
        create_model("resnet_does_not_exist", 10)
    with pytest.raises(ValueError, match="cannot import model"):
        create_model("no_such_pkg.mod:fn", 10)
    m = create_model("tests.test_models:tiny_net", 7)
    assert m[-1].out_features == 7


def test_custom_model_names_are_only_imported():
    """A suite's ``module:function`` is a dotted name, never code: expressions are refused
    before anything is imported, and the function must hand back an nn.Module."""
    import sys

    for name in (
        "os:system('touch x')",
        "__import__('os').system:x",
        "tests.support.faulty:nan_net; import os",
        "tests/faulty:nan_net",
    ):
        with pytest.raises(ValueError, match="is not 'package.module:function'"):
            create_model(name, 10)
    sys.modules.pop("tests.support.faulty", None)
    with pytest.raises(ValueError, match="returned a dict, not a torch nn.Module"):
        create_model("tests.support.faulty:not_a_model", 10)
    assert "tests.support.faulty" in sys.modules  # imported by its dotted name, nothing else ran


class _Folding(nn.Module):
    """A conv, then MobileViT's unfold: each example's 2x2 patch positions become 4 batch rows
    (``[B, C, H, W] -> [B * 4, H * W / 4, C]``, example index outermost), then a Linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem, self.conv, self.fc = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 1), nn.Linear(6, 5)

    def forward(self, x):
        x = self.conv(self.stem(x))
        b, c, h, w = x.shape
        x = x.reshape(b * c * (h // 2), 2, w // 2, 2).transpose(1, 2)
        x = x.reshape(b, c, h * w // 4, 4).transpose(1, 3).reshape(b * 4, h * w // 4, c)
        return self.fc(x).reshape(b, 4, h * w // 4, -1).mean((1, 2))


def test_a_block_that_folds_positions_into_the_batch_gets_one_range_per_example():
    """Quantized like any layer: the Linear's input rows of example b share b's bit-width and
    one range over all of b's values (not one range per folded row), so each example's output
    is what the example alone gives."""
    net = _Folding()
    q = QuantizableModel(net, weight_bits=None)
    assert q.num_layers == 2
    x = torch.randn(3, 3, 4, 4)
    bits = torch.tensor([[8, 3], [6, 2], [4, 4]])
    out = q(x, bits)
    for b in range(3):
        torch.testing.assert_close(out[b : b + 1], q(x[b : b + 1], bits[b : b + 1]))
    # reference: the Linear's input of example 1, unfolded by hand, quantized as one tensor
    h = net.conv(fake_quantize(net.stem(x[1:2]), 6))  # [1, 6, 4, 4]
    h = h.reshape(6 * 2, 2, 2, 2).transpose(1, 2).reshape(1, 6, 4, 4).transpose(1, 3)
    rows = fake_quantize(h.reshape(1, -1), 2).reshape(4, 4, 6)
    torch.testing.assert_close(out[1], net.fc(rows).mean((0, 1)))
    per_row = fake_quantize(h.reshape(4, 4, 6), torch.full((4,), 2))  # a range per folded row
    assert not torch.allclose(net.fc(per_row).mean((0, 1)), out[1])
    # the tap's policy gradient has one row per example too
    scores = torch.randn(3, 2, 3, requires_grad=True)
    sel = knapsack.solve(scores, [2, 4, 6], 8)
    q(x, knapsack.bits(sel, [2, 4, 6]), selection=sel, options=[2, 4, 6]).sum().backward()
    assert scores.grad.shape == (3, 2, 3) and scores.grad[:, 1].abs().sum() > 0
