"""The bit-width policy pi (Eq. 6): a small CNN mapping an image to logits ``[B, L, O]``.

Row l of the output scores the O bit-width options of quantizable layer l; the knapsack
(:mod:`dptq.knapsack`) turns the scores into a bit vector that meets the budget exactly.
Policies are registered by name (``@register_policy``) so suites can pick one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError
from .registry import Registry


class _Entry(NamedTuple):
    build: Callable[..., nn.Module]  # (num_layers, num_options, **options) -> policy
    options: type  # the options dataclass


POLICIES = Registry("policy")


def register_policy(name: str, options: type):
    """Decorator adding ``fn(num_layers, num_options, **options)`` and its options dataclass."""
    return POLICIES.decorator(name, lambda fn: _Entry(fn, options))


@dataclass(frozen=True)
class SmallCNNOptions:
    """Options of :class:`SmallCNNPolicy` (see there)."""

    width: int = 16
    depth: int = 4
    input_size: int | None = 64
    norm: str = "batch"

    def __post_init__(self):
        if self.norm not in ("batch", "group"):
            raise ConfigError(f"norm: {self.norm!r} is not 'batch' or 'group'")
        if not 1 <= self.width <= 512:
            raise ConfigError(f"width: must lie in 1..512, got {self.width}")
        if not 1 <= self.depth <= 8:
            raise ConfigError(f"depth: must lie in 1..8, got {self.depth}")
        if self.input_size is not None and not 8 <= self.input_size <= 1024:
            raise ConfigError(f"input_size: must lie in 8..1024 (or null), got {self.input_size}")


class SmallCNNPolicy(nn.Module):
    """Conv(3x3, stride 2) + norm + ReLU blocks, global average pooling, one linear head.

    Args:
        num_layers: L, rows of the output.
        num_options: O, columns of the output.
        width: channels of the first block; doubled per block up to ``4 * width``.
        depth: number of conv blocks.
        input_size: images are resized to this side first (cheap on large inputs); None keeps them.
        norm: ``batch`` (batch norm) or ``group`` (one group norm per block: each example
            normalised alone, so data-parallel workers on CPUs, which have no SyncBatchNorm,
            compute what one process computes).
    """

    def __init__(
        self,
        num_layers: int,
        num_options: int,
        width: int = 16,
        depth: int = 4,
        input_size: int | None = 64,
        norm: str = "batch",
    ):
        super().__init__()
        self.num_layers, self.num_options, self.input_size = num_layers, num_options, input_size
        blocks, c_in = [], 3
        for i in range(depth):
            c_out = width * min(2**i, 4)
            blocks += [
                nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
                nn.BatchNorm2d(c_out) if norm == "batch" else nn.GroupNorm(1, c_out),
                nn.ReLU(),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_layers * num_options)
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=x.shape[-1] > self.input_size,
            )
        h = self.features(x).mean(dim=(2, 3))
        return self.head(h).view(-1, self.num_layers, self.num_options)


@register_policy("small_cnn", SmallCNNOptions)
def small_cnn(num_layers: int, num_options: int, **kw) -> nn.Module:
    return SmallCNNPolicy(num_layers, num_options, **kw)


def policy_options(name: str):
    """The options dataclass of policy ``name``; an unknown name fails listing the known ones."""
    return POLICIES.known(name).options


def create_policy(name: str, num_layers: int, num_options: int, options=None, **kw) -> nn.Module:
    """Build a registered policy from its options (a dataclass, or keywords checked by it)."""
    opts = options if options is not None else policy_options(name)(**kw)
    return POLICIES[name].build(num_layers, num_options, **asdict(opts))


def bar_floor(policy: nn.Module, layers: list[int], floor: int | Sequence[int] = 0) -> nn.Module:
    """``policy`` (in place) with the option at index ``floor`` (the smallest bit-width; several
    indices: each of them) of ``layers`` made never optimal: a forward hook lowers those scores,
    per example, by ``L x`` the range of its scores ``+ 1``, so every exact-budget allocation that
    keeps the barred layers off those options outscores every one that puts any of them on one,
    and the knapsack picks the best of the former whenever the budget allows one (the order among
    them is unchanged).
    A hook, not a wrapper, so the policy's checkpoints stay as they are. Not in the paper: the
    detrimental policy barred from the floor on chosen layers (``pair.floor_barred``, issue 24)."""
    if not layers:
        return policy
    idx = torch.tensor(sorted(set(layers)))
    barred = torch.tensor(sorted({floor} if isinstance(floor, int) else set(floor)))

    def hook(module, inputs, out):
        d = out.detach()
        margin = (d.amax(dim=(1, 2)) - d.amin(dim=(1, 2))) * out.shape[1] + 1
        shift = torch.zeros_like(d)
        rows, cols = idx.to(out.device)[:, None], barred.to(out.device)[None, :]
        shift[:, rows, cols] = margin[:, None, None]
        return out - shift

    policy.register_forward_hook(hook)
    policy.floor_barred = tuple(idx.tolist())
    policy.barred_options = tuple(barred.tolist())
    return policy
