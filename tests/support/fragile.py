"""A network built to be fragile at one quantized layer (the audit tests).

Images carry one bit of information: pixel (0, 0, 0) is 255 (class 1) or 0 (class 0); with
mean = std = 0.5 it normalises to +1 or -1. The first Linear (full precision: the first layer is not
quantized) copies it to feature 0; four identity layers pass it on (their inputs are {-1 or 1, 0, ...}:
exact at any bit-width); the fourth adds a constant outlier of 20 to feature 1. The head reads
feature 0 only, so its input [+-1, 20, 0, ...] is the fragile one: with a per-example min-max
range of width 21, 3 bits (step 3) round +-1 to 0 (a tie: class 0 for every image, 50%), 4 bits
(step 1.4) keep the sign. Uniform 4 bits: 100%; a policy that gives the head 3 bits: 50%.
"""

from __future__ import annotations

import torch
from torch import nn

from dptq.data import DatasetPair, TensorImages

FEATURES = 3 * 2 * 2
OUTLIER = 20.0


def fragile_net(num_classes: int = 2) -> nn.Module:
    """Flatten -> copy -> 4 identity layers (the last adds the outlier) -> head (fragile input)."""
    if num_classes != 2:
        raise ValueError("fragile_net has 2 classes")
    first = nn.Linear(FEATURES, FEATURES)
    mids = [nn.Linear(FEATURES, FEATURES) for _ in range(4)]
    head = nn.Linear(FEATURES, 2)
    with torch.no_grad():
        first.weight.zero_()
        first.weight[0, 0] = 1.0
        first.bias.zero_()
        for m in mids:
            m.weight.copy_(torch.eye(FEATURES))
            m.bias.zero_()
        mids[-1].bias[1] = OUTLIER
        head.weight.zero_()
        head.weight[0, 0], head.weight[1, 0] = -1.0, 1.0
        head.bias.zero_()
    return nn.Sequential(nn.Flatten(), first, *mids, head)


def fragile_data(n: int = 64) -> DatasetPair:
    """Balanced two-class 2x2 images (pixel (0, 0, 0) is the label), train = val = test."""
    y = torch.arange(n) % 2
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = (y * 255).to(torch.uint8)
    ds = TensorImages(images, y)
    return DatasetPair(ds, ds, 2, (0.5,) * 3, (0.5,) * 3, val=ds)
