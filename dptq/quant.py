"""Uniform quantize -> dequantize ("fake quantization"), Eq. 1-2 of Frank & Ardis 2025.

Conventions (the paper leaves them open; we follow PyTorch's observers so that our output is
bit-identical to ``torch.fake_quantize_per_tensor_affine``):

* symmetric (Eq. 1): integers in ``[-2^(b-1), 2^(b-1) - 1]``, zero point 0,
  ``s = absmax / ((qmax - qmin) / 2) = absmax / (2^(b-1) - 1/2)`` (PyTorch's symmetric observer;
  the largest positive value may be clamped by half a step, every code is used).
* asymmetric: integers in ``[0, 2^b - 1]``, ``s = (max - min) / (2^b - 1)`` where the range is
  widened to include 0 (so that 0 is exactly representable, as PyTorch's ``MinMaxObserver`` does),
  ``z = clamp(-round(min / s), 0, 2^b - 1)``.
* dequantization (Eq. 2) is ``(q - z) * s``. The paper prints ``(q + z) * s``; with its own
  definition of ``q = round(x / s) + z`` only the minus sign recovers ``x``, so we read it as a typo.
* the scale never drops below ``float32`` eps (constant inputs stay finite).
* ``x / s`` is computed as ``x * (1 / s)``, as PyTorch's kernels do, so rounding ties agree.

Gradients: rounding uses the straight-through estimator (identity inside the clamp range, zero
outside, exactly as PyTorch's fake-quantize backward). With ``grad_through_scale=False`` (default)
the per-example scale and zero point are constants for autograd; with ``True`` gradients also flow
into them through their min/max/percentile statistics (LSQ-style). The choice changes what the
student learns: through the scale it can move the range that all other values are quantized in.
"""

from __future__ import annotations

from typing import Literal

import torch

ScaleMode = Literal["minmax", "percentile"]

MIN_BITS, MAX_BITS = 2, 16
_EPS = torch.finfo(torch.float32).eps
_HALF = (torch.float16, torch.bfloat16)  # under autocast: quantized in float32 (rounding needs it)


def qrange(bits: torch.Tensor | int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer range ``(qmin, qmax)`` of a ``bits``-wide code (Eq. 1 and its asymmetric form)."""
    bits = torch.as_tensor(bits)
    one = torch.ones_like(bits, dtype=torch.float32)
    if symmetric:
        half = torch.exp2(bits.float() - 1)
        return -half, half - one
    return torch.zeros_like(one), torch.exp2(bits.float()) - one


def _check_bits(bits: torch.Tensor) -> None:
    if bits.numel() and (int(bits.min()) < MIN_BITS or int(bits.max()) > MAX_BITS):
        raise ValueError(
            f"bit-widths must lie in [{MIN_BITS}, {MAX_BITS}], got {int(bits.min())}..{int(bits.max())}"
        )


def _broadcast_bits(bits, x: torch.Tensor, per_example: bool = True) -> torch.Tensor:
    """``bits`` (one bit-width, or ``[B]`` per example) checked and shaped to broadcast with ``x``."""
    bits_t = torch.as_tensor(bits, device=x.device)
    _check_bits(bits_t)
    if bits_t.dim() == 1:
        if not per_example or bits_t.shape[0] != x.shape[0]:
            raise ValueError(
                f"per-example bits need shape [{x.shape[0]}], got {list(bits_t.shape)}"
            )
        bits_t = bits_t.reshape((-1,) + (1,) * (x.dim() - 1))
    return bits_t


def _range_stats(
    x: torch.Tensor,
    per_example: bool,
    mode: ScaleMode,
    percentile: float,
    per_channel: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low and high statistics of ``x``, per example (shape [B, 1, ...]) or per tensor; with
    ``per_channel`` per example and channel (dim 1; shape [B, C, 1, ...])."""
    per_channel = per_channel and x.dim() > 2  # a Linear layer's [B, F] input: per example
    if per_channel:
        if not per_example:
            raise ValueError("per-channel activation ranges are per example too")
        flat = x.flatten(2).flatten(0, 1)  # [B * C, rest]
    else:
        flat = x.flatten(1) if per_example else x.reshape(1, -1)
    if mode == "minmax":
        lo, hi = _min_max_rows(flat)
    elif mode == "percentile":
        q = torch.tensor(
            [1 - percentile / 100, percentile / 100], dtype=flat.dtype, device=x.device
        )
        lo, hi = torch.quantile(flat, q, dim=1)
    else:
        raise ValueError(f"unknown scale mode {mode!r}; use 'minmax' or 'percentile'")
    if per_channel:
        shape = tuple(x.shape[:2]) + (1,) * (x.dim() - 2)
    else:
        shape = (-1,) + (1,) * (x.dim() - 1) if per_example else (1,) * x.dim()
    return lo.reshape(shape), hi.reshape(shape)


def _min_max_rows(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row minimum and maximum of a 2-d tensor (exact either way): one ``aminmax`` pass on a
    GPU; ``amin`` and ``amax`` on the CPU, where ``aminmax`` along a dimension runs 10-20x slower
    than the two (torch 2.14, measured on 2 cores: 840 vs 46 us for one 32x112x112 example)."""
    if flat.device.type == "cpu":
        return flat.amin(dim=1), flat.amax(dim=1)
    return torch.aminmax(flat, dim=1)


def scale_zero_point(
    lo: torch.Tensor, hi: torch.Tensor, bits: torch.Tensor, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale ``s`` and zero point ``z`` from a value range (Sect. 2 "Quantization", Sect. 4 settings).

    Symmetric: ``s = max(|lo|, |hi|) / ((qmax - qmin) / 2)`` and ``z = 0``. Asymmetric: the range is widened to
    contain 0, ``s = (hi - lo) / (qmax - qmin)`` and ``z = clamp(qmin - round(lo / s), qmin, qmax)``.
    """
    qmin, qmax = qrange(bits, symmetric)
    qmin, qmax = qmin.to(lo.device), qmax.to(lo.device)
    if symmetric:
        absmax = torch.maximum(lo.abs(), hi.abs())
        scale = torch.clamp(absmax / ((qmax - qmin) / 2), min=_EPS)
        return scale, torch.zeros_like(scale)
    lo, hi = torch.clamp(lo, max=0), torch.clamp(hi, min=0)
    scale = torch.clamp((hi - lo) / (qmax - qmin), min=_EPS)
    zero_point = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax)
    return scale, zero_point


class _RoundClampSTE(torch.autograd.Function):
    """``(clamp(round(x / s) + z, qmin, qmax) - z) * s`` with PyTorch's fake-quantize backward.

    Hand-written (one fused pass, saves only a bool mask) because no torch op takes a different
    integer range per example; the gradient w.r.t. ``x`` is the upstream gradient where the value
    was not clamped and zero elsewhere, as in ``torch.fake_quantize_per_tensor_affine``.
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        q = torch.mul(x, torch.reciprocal(scale)).round_().add_(zero_point)
        clamped = torch.clamp(q, qmin, qmax)
        ctx.save_for_backward(torch.eq(q, clamped))
        return clamped.sub_(zero_point).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def _round_ste(v: torch.Tensor) -> torch.Tensor:
    return v + (torch.round(v) - v).detach()


def quantize_dequantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    bits: torch.Tensor,
    symmetric: bool,
    grad_through_scale: bool = False,
) -> torch.Tensor:
    """Eq. 1 followed by Eq. 2 for given scale/zero point (broadcastable to ``x``)."""
    qmin, qmax = qrange(bits, symmetric)
    qmin, qmax = qmin.to(x.device, x.dtype), qmax.to(x.device, x.dtype)
    if not grad_through_scale:
        if not (torch.is_grad_enabled() and x.requires_grad):  # evaluation: no mask to keep
            q = torch.mul(x, torch.reciprocal(scale)).round_().add_(zero_point)
            return q.clamp_(qmin, qmax).sub_(zero_point).mul_(scale)
        return _RoundClampSTE.apply(x, scale.detach(), zero_point.detach(), qmin, qmax)
    q = _round_ste(x * torch.reciprocal(scale)) + zero_point
    return (torch.clamp(q, qmin, qmax) - zero_point) * scale


def fake_quantize(
    x: torch.Tensor,
    bits: int | torch.Tensor,
    symmetric: bool = False,
    per_example: bool = True,
    scale_mode: ScaleMode = "minmax",
    percentile: float = 99.99,
    grad_through_scale: bool = False,
    per_channel: bool = False,
) -> torch.Tensor:
    """Dynamic fake quantization of ``x`` (Eq. 1-2); returns a tensor of the same shape.

    Args:
        x: activations; dim 0 is the batch when ``per_example``.
        bits: one bit-width, or a ``[B]`` tensor with one bit-width per example (2..16).
        symmetric: Eq. 1 (abs-max scale) if True, the asymmetric form (min-max scale) if False.
        per_example: each example gets its own scale/zero point from its own values (dynamic
            quantization); otherwise one scale for the whole tensor.
        scale_mode: ``"minmax"`` (abs-max for symmetric) or ``"percentile"`` (the
            ``percentile``-th and ``100 - percentile``-th values; outliers are clamped).
        grad_through_scale: see the module docstring.
        per_channel: one scale per example and channel (dim 1) instead of per example, for
            inputs with spatial dims; a ``[B, F]`` input (a Linear layer's) stays per example.
    """
    if x.dtype in _HALF:  # mixed precision: ranges, scales and codes in float32, then back
        with torch.autocast(x.device.type, enabled=False):
            out = fake_quantize(
                x.float(),
                bits,
                symmetric,
                per_example,
                scale_mode,
                percentile,
                grad_through_scale,
                per_channel,
            )
        return out.to(x.dtype)
    bits_t = _broadcast_bits(bits, x, per_example)
    stats_in = x if grad_through_scale else x.detach()
    lo, hi = _range_stats(stats_in, per_example, scale_mode, percentile, per_channel)
    scale, zero_point = scale_zero_point(lo, hi, bits_t, symmetric)
    return quantize_dequantize(x, scale, zero_point, bits_t, symmetric, grad_through_scale)


def fake_quantize_static(
    x: torch.Tensor, bits: int | torch.Tensor, lo: float, hi: float, symmetric: bool = False
) -> torch.Tensor:
    """Fake quantization with a fixed range ``[lo, hi]`` (static PTQ: the range was calibrated
    beforehand, e.g. by :func:`dptq.models.calibrate_static`, and is the same for every example);
    ``bits`` is one bit-width or one per example, as in :func:`fake_quantize`. Values outside the
    range are clamped."""
    bits_t = _broadcast_bits(bits, x)
    lo_t = torch.tensor(float(lo), device=x.device, dtype=x.dtype).reshape((1,) * x.dim())
    hi_t = torch.tensor(float(hi), device=x.device, dtype=x.dtype).reshape((1,) * x.dim())
    scale, zero_point = scale_zero_point(lo_t, hi_t, bits_t, symmetric)
    return quantize_dequantize(x, scale, zero_point, bits_t, symmetric)


def fake_quantize_weight(w: torch.Tensor, bits: int = 16) -> torch.Tensor:
    """Static symmetric per-tensor weight quantization (Sect. 4 "Quantization Settings").

    Same numbers as ``fake_quantize(w, bits, symmetric=True, per_example=False)``, through
    PyTorch's fused fake-quantize kernel (one pass forward and backward: weights are the largest
    tensors of a small-batch step).
    """
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"weight bits must lie in [{MIN_BITS}, {MAX_BITS}], got {bits}")
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = torch.aminmax(w.detach())
    absmax = torch.maximum(-lo, hi).float().reshape(1)
    scale = torch.clamp(absmax / ((qmax - qmin) / 2), min=_EPS)
    zero = torch.zeros(1, dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_tensor_affine(w, scale, zero, qmin, qmax)


@torch.no_grad()
def option_inner_products(
    x: torch.Tensor,
    grad: torch.Tensor,
    options: tuple[int, ...],
    symmetric: bool = False,
    scale_mode: ScaleMode = "minmax",
    percentile: float = 99.99,
    per_channel: bool = False,
) -> torch.Tensor:
    """``[B, O]``: per example b and option o, ``<grad_b, fake_quantize(x_b, options[o])>``.

    The policy's gradient for choosing bit-width o (see :mod:`dptq.models`). The range statistics
    do not depend on the bit-width, so they are computed once; and since
    ``Q_o(x) = (q_o - z_o) s_o`` with integer codes ``q_o``, the inner product is
    ``s_o (<grad, q_o> - z_o sum(grad))``: no dequantization pass per option.
    """
    if x.dtype in _HALF or grad.dtype in _HALF or torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):  # the bmm below would run in bf16
            return option_inner_products(
                x.float(), grad.float(), options, symmetric, scale_mode, percentile, per_channel
            )
    if not (symmetric or per_channel) and scale_mode == "minmax":  # the default quantizer
        from .fused_taps import inner_products

        fused = inner_products(x, grad, options)  # None unless asked for and compiled
        if fused is not None:
            return fused
    if per_channel and x.dim() > 2:  # one scale per channel: no common factor to pull out
        lo, hi = _range_stats(x, True, scale_mode, percentile, True)
        g = grad.to(x.dtype)
        cols = []
        for o in options:
            bits = torch.tensor(o, device=x.device)
            scale, zero_point = scale_zero_point(lo, hi, bits, symmetric)
            cols.append(
                (g * quantize_dequantize(x, scale, zero_point, bits, symmetric)).flatten(1).sum(1)
            )
        return torch.stack(cols, dim=1)
    flat_x, flat_g = x.flatten(1), grad.flatten(1).to(x.dtype)
    lo, hi = _range_stats(flat_x, True, scale_mode, percentile)
    g_sum = flat_g.sum(1)
    cols = []
    for o in options:
        scale, zero_point = scale_zero_point(lo, hi, torch.tensor(o, device=x.device), symmetric)
        qmin, qmax = (t.item() for t in qrange(o, symmetric))
        q = torch.mul(flat_x, torch.reciprocal(scale)).round_().add_(zero_point).clamp_(qmin, qmax)
        dot = torch.bmm(flat_g.unsqueeze(1), q.unsqueeze(2)).view(-1)
        cols.append(scale.view(-1) * (dot - zero_point.view(-1) * g_sum))
    return torch.stack(cols, dim=1)
