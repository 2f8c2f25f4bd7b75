"""The policy's option inner products as one fused kernel (``torch.compile``), where asked.

The policy's gradient needs, per layer, example and bit-width option o, ``<grad, Q_o(x)>``
(:func:`dptq.quant.option_inner_products`): eight elementwise passes (scale, round, add, clamp)
and a reduction per option over every activation, about a quarter of a pair step on a CPU, all
of it memory traffic. Compiled (Inductor), the passes of an option become one loop; measured on
the 2-core AVX-512 CPU, a resnet18 pair step at 32 px went from 2.93x to 2.33x a plain step
(``leaderboard/perf/train-avx512.md``).

The kernel computes the same codes as the eager path (the same scale, zero point, rounding and
clamp, for the default quantizer: asymmetric, min-max, per example) and sums ``grad x (q - z)``
in its own order: the policy's gradient differs from the eager one by float rounding only
(``tests/test_quant.py`` holds both to the naive inner products). Off by default: the first
step of each activation shape compiles (tens of seconds per network and process), worth it for
a long run, not for a short one (``resources.compile_taps`` in a suite). Where compiling fails
(no compiler), the eager path is used and the reason kept (:func:`status`).
"""

from __future__ import annotations

import torch

_EPS = torch.finfo(torch.float32).eps
_STATE: dict = {"on": False, "kernel": None, "failed": None}


def enable(on: bool = True) -> None:
    """Turn the fused kernel on (or off) for this process."""
    _STATE["on"] = bool(on)


def status() -> str:
    """``on``, ``off``, or why compiling failed (the eager path is used then)."""
    if _STATE["failed"]:
        return f"failed: {_STATE['failed']}"
    return "on" if _STATE["on"] else "off"


def _inner(flat_x: torch.Tensor, flat_g: torch.Tensor, options: tuple) -> torch.Tensor:
    """``[B, O]``: per example and option, ``s_o <grad, q_o - z_o>`` for the asymmetric per-example
    min-max quantizer (:func:`dptq.quant.scale_zero_point`'s formulas)."""
    lo = torch.clamp(flat_x.amin(1), max=0.0)
    hi = torch.clamp(flat_x.amax(1), min=0.0)
    cols = []
    for o in options:
        qmax = 2.0**o - 1.0
        scale = torch.clamp((hi - lo) / qmax, min=_EPS)
        zero_point = torch.clamp(0.0 - torch.round(lo / scale), 0.0, qmax)
        q = torch.round(flat_x * torch.reciprocal(scale)[:, None]) + zero_point[:, None]
        q = torch.clamp(q, 0.0, qmax) - zero_point[:, None]
        cols.append(scale * (flat_g * q).sum(1))
    return torch.stack(cols, 1)


def inner_products(x: torch.Tensor, grad: torch.Tensor, options) -> torch.Tensor | None:
    """The fused ``[B, O]`` inner products, or None where it does not apply (off, or a dtype
    other than float32) or could not be compiled: the caller's eager path then."""
    if not _STATE["on"] or _STATE["failed"] or x.dtype != torch.float32:
        return None
    if _STATE["kernel"] is None:
        from torch import _dynamo

        # one graph per activation shape (a network has a few dozen): none falls back to eager
        _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 256)
        _STATE["kernel"] = torch.compile(_inner, dynamic=False)
    try:
        return _STATE["kernel"](x.flatten(1), grad.flatten(1).to(x.dtype), tuple(options))
    except Exception as e:  # no C++ compiler, an unsupported device: eager from here on
        _STATE["failed"] = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        return None
