"""Datasets by name: the registry (:mod:`dptq.data.registry`), the real datasets
(:mod:`dptq.data.sources`: digits, oxford_pets, cifar10/100, imagefolder) and ``synthetic``
(:mod:`dptq.data.synthetic`, what smoke runs train on). Importing this package registers them all.
"""

from . import sources, synthetic  # noqa: F401  (each registers its datasets)
from .registry import (
    DATASETS,
    IMAGENET_STATS,
    DataError,
    DataOptions,
    DatasetPair,
    TensorImages,
    dataset_options,
    load_dataset,
    normalize,
    register_dataset,
    selection_split,
)
from .sources import (
    CifarOptions,
    DigitsOptions,
    FolderOptions,
    ImageFolderOptions,
    UnreadableImages,
    check_images,
)
from .synthetic import SyntheticOptions

__all__ = [
    "DATASETS",
    "IMAGENET_STATS",
    "CifarOptions",
    "DataError",
    "DataOptions",
    "DatasetPair",
    "DigitsOptions",
    "FolderOptions",
    "ImageFolderOptions",
    "SyntheticOptions",
    "TensorImages",
    "UnreadableImages",
    "check_images",
    "dataset_options",
    "load_dataset",
    "normalize",
    "register_dataset",
    "selection_split",
]
