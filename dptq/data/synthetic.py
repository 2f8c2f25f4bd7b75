"""``synthetic``: a few random images at any size and class count, made in memory.

What ``python -m bench run SUITE --smoke`` trains on in place of the suite's dataset: the same
image size and number of classes, so every shape, budget and head is the real one, without a
download. Each class has its own mean colour plus seeded noise, so a couple of training steps
see a learnable signal; nothing here measures anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .registry import DataOptions, DatasetPair, TensorImages, register_dataset


@dataclass(frozen=True)
class SyntheticOptions(DataOptions):
    """``num_classes`` classes; ``train_size`` / ``test_size`` images (labels cycle over the
    classes); ``seed`` draws the colours and the noise."""

    image_size: int = 32
    num_classes: int = 10
    train_size: int = 16
    test_size: int = 8
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not 2 <= self.num_classes <= 100_000:
            raise ConfigError(f"num_classes: must lie in 2..100000, got {self.num_classes}")
        if not (2 <= self.train_size <= 100_000 and 1 <= self.test_size <= 100_000):
            raise ConfigError("train_size must be >= 2 and test_size >= 1 (at most 100000)")


def _images(n: int, opts: SyntheticOptions, g: torch.Generator, colours: torch.Tensor):
    labels = torch.arange(n) % opts.num_classes
    size = opts.image_size
    noise = torch.randn(n, 3, size, size, generator=g) * 40
    x = (colours[labels][:, :, None, None] + noise).round().clamp(0, 255).to(torch.uint8)
    return TensorImages(x, labels)


@register_dataset("synthetic", SyntheticOptions)
def synthetic(opts: SyntheticOptions, bad_images: str = "stop") -> DatasetPair:
    """Seeded noise around a colour per class (see the module docstring)."""
    g = torch.Generator().manual_seed(opts.seed)
    colours = torch.rand(opts.num_classes, 3, generator=g) * 255
    train = _images(opts.train_size, opts, g, colours)
    test = _images(opts.test_size, opts, g, colours)
    return DatasetPair(train, test, opts.num_classes, (0.5,) * 3, (0.25,) * 3)
