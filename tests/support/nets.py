"""Tiny data and networks for the analysis tests, where the answer is known."""

from __future__ import annotations

import torch
from torch import nn

from dptq.data import DatasetPair, TensorImages
from dptq.models import QuantizableModel


def small_net(num_classes: int) -> nn.Module:
    """The tests' student and teacher (suites name it ``tests.support.nets:small_net``): L = 3."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def plain_net(num_classes: int) -> nn.Module:
    """:func:`small_net` without its batch norm layers: nothing depends on which examples share
    a batch, so a batch split over data-parallel workers changes no number (the data-parallel
    tests)."""
    return nn.Sequential(*(m for m in small_net(num_classes) if not isinstance(m, nn.BatchNorm2d)))


def tiny_data(n=24, size=8, classes=3):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    ds = TensorImages(imgs, labels)
    return DatasetPair(ds, ds, classes, (0.5,) * 3, (0.25,) * 3, val=ds)


def tiny_q(classes=3, weight_bits=16):
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, classes),
    )
    return QuantizableModel(net, weight_bits=weight_bits).eval()
