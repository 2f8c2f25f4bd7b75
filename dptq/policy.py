"""The bit-width policy pi (Eq. 6): a small CNN mapping an image to logits ``[B, L, O]``.

Row l of the output scores the O bit-width options of quantizable layer l; the knapsack
(:mod:`dptq.knapsack`) turns the scores into a bit vector that meets the budget exactly.
Policies are registered by name (``@register_policy``) so suites can pick one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

POLICIES: dict[str, Callable[..., nn.Module]] = {}


def register_policy(name: str):
    """Decorator adding a policy constructor ``fn(num_layers, num_options, **kw)`` to the registry."""

    def deco(fn):
        POLICIES[name] = fn
        return fn

    return deco


class SmallCNNPolicy(nn.Module):
    """Conv(3x3, stride 2) + BN + ReLU blocks, global average pooling, one linear head.

    Args:
        num_layers: L, rows of the output.
        num_options: O, columns of the output.
        width: channels of the first block; doubled per block up to ``4 * width``.
        depth: number of conv blocks.
        input_size: images are resized to this side first (cheap on large inputs); None keeps them.
    """

    def __init__(
        self,
        num_layers: int,
        num_options: int,
        width: int = 16,
        depth: int = 4,
        input_size: int | None = 64,
    ):
        super().__init__()
        self.num_layers, self.num_options, self.input_size = num_layers, num_options, input_size
        blocks, c_in = [], 3
        for i in range(depth):
            c_out = width * min(2**i, 4)
            blocks += [
                nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
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


@register_policy("small_cnn")
def small_cnn(num_layers: int, num_options: int, **kw) -> nn.Module:
    return SmallCNNPolicy(num_layers, num_options, **kw)


def create_policy(name: str, num_layers: int, num_options: int, **kw) -> nn.Module:
    """Build a registered policy; an unknown name fails listing the known ones."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {sorted(POLICIES)}")
    return POLICIES[name](num_layers, num_options, **kw)
