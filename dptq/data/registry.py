"""The dataset registry: what a loaded dataset is, the options every dataset takes, loading by name.

Every split yields ``(uint8 image tensor [3, H, W], label)``; :func:`normalize` maps a batch to
float with the dataset's mean/std on the model's device. Each dataset's options are a frozen
dataclass (:class:`DataOptions` or a subclass), checked like every other configuration. The
datasets themselves register here from :mod:`dptq.data.sources` and :mod:`dptq.data.synthetic`
(a dict plus a decorator, timm's pattern); this module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..registry import Registry
from ..splits import split_off, subset

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class DatasetPair:
    """The splits of one dataset plus what a model needs to know about it.

    ``val`` is carved from the training data (:func:`load_dataset`'s ``val_fraction``): what
    training and selection evaluate on. ``test`` is for results only.
    """

    train: Dataset
    test: Dataset
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    skipped: tuple[str, ...] = ()  # unreadable image files left out (``bad_images="skip"``)
    val: Dataset | None = None


def selection_split(data: DatasetPair) -> str:
    """The split that per-epoch evaluation and selection read: ``val``, or ``test`` without one.

    Only a dataset loaded without a validation split (a notebook, a unit test) falls back to the
    test split; the benchmark always has one and records the split its selection read.
    """
    return "val" if data.val is not None else "test"


class DataError(ValueError):
    """A dataset that cannot be used as it is (one line: where, what is wrong, what to do)."""


class _Entry(NamedTuple):
    load: Callable[..., DatasetPair]  # (options, bad_images) -> DatasetPair
    options: type  # the options dataclass


DATASETS = Registry("dataset")


def register_dataset(name: str, options: type):
    """Register ``fn(options, bad_images) -> DatasetPair`` with its options dataclass."""
    return DATASETS.decorator(name, lambda fn: _Entry(fn, options))


class TensorImages(Dataset):
    """uint8 images ``[N, 3, H, W]`` with labels and an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        return (self.transform(img) if self.transform else img), int(self.labels[i])

    def with_transform(self, transform) -> TensorImages:
        return TensorImages(self.images, self.labels, transform)


@dataclass(frozen=True)
class DataOptions:
    """Options every dataset takes.

    Attributes:
        image_size: side of the square images the models see (pixels).
        max_train, max_test: keep a seeded, stratified subset of this many examples of each
            split (quick runs, tests).
    """

    image_size: int = 224
    max_train: int | None = None
    max_test: int | None = None

    def __post_init__(self):
        if not 4 <= self.image_size <= 2048:
            raise ConfigError(f"image_size: must lie in 4..2048 pixels, got {self.image_size}")
        for name in ("max_train", "max_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name}: must be >= 1 (or null for all), got {v}")


def dataset_options(name: str, **options) -> DataOptions:
    """The options dataclass of dataset ``name`` built from keywords (ConfigError naming a bad key)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    cls = DATASETS[name].options
    known = [f.name for f in fields(cls)]
    for key in options:
        if key not in known:
            raise ConfigError(f"{key}: unknown option of dataset {name!r}; known: {known}")
    return cls(**options)


def load_dataset(
    name: str,
    options: DataOptions | None = None,
    bad_images: str = "stop",
    val_fraction: float = 0.0,
    sample_seed: int = 0,
    **kw,
) -> DatasetPair:
    """A registered dataset by name, with its options (a dataclass, or keywords for one).

    Unknown names fail listing the known ones. ``max_train`` / ``max_test`` keep a seeded,
    stratified random subset of each split; then ``val_fraction`` of the training split becomes
    the validation split (stratified). Both draw with ``sample_seed``, never the training seed.
    """
    opts = options if options is not None else dataset_options(name, **kw)
    if bad_images not in ("stop", "skip"):
        raise DataError(f"{name}: bad_images must be 'stop' or 'skip', not {bad_images!r}")
    try:
        pair = DATASETS[name].load(opts, bad_images)
    except FileNotFoundError:
        raise
    except OSError as e:  # a path the system refuses (too long, no permission, ...)
        where = str(e.filename)[:80] + ("..." if len(str(e.filename)) > 80 else "")
        raise DataError(f"dataset {name!r}: cannot read {where}: {e.strerror}") from None
    train = subset(pair.train, opts.max_train, sample_seed)
    test = subset(pair.test, opts.max_test, sample_seed)
    val = None
    if val_fraction:
        train, val = split_off(train, val_fraction, sample_seed)
    return replace(pair, train=train, val=val, test=test)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float, scaled to [0, 1] and standardised per channel."""
    x = images.float().div_(255)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
