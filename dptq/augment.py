"""The KD augmentation (Sect. 4 "Training Details") and label-free mixup.

The per-image part is built from ``torchvision.transforms.v2`` with each part switchable (flips
make no sense on digits); :func:`with_train_transform` applies it to a copy of the train split;
mixup is applied to whole batches by :func:`mixup`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2

from .data import DatasetPair, TensorImages


@dataclass(frozen=True)
class AugmentConfig:
    """The paper's per-image KD augmentation; each part can be switched off (batch mixup is the
    stage's own switch, :attr:`dptq.train.StageConfig.mixup`)."""

    random_resized_crop: bool = True
    randaugment: bool = True
    randaugment_n: int = 2
    randaugment_m: int = 14
    color_jitter: bool = True
    hflip: bool = True
    crop_padding: bool = True


def kd_augmentation(image_size: int, cfg: AugmentConfig = AugmentConfig()) -> v2.Transform:
    """Per-image part of the KD augmentation on uint8 tensors (mixup is batch-level)."""
    steps: list = []
    if cfg.random_resized_crop:
        steps.append(v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), antialias=True))
    if cfg.randaugment:
        steps.append(v2.RandAugment(num_ops=cfg.randaugment_n, magnitude=cfg.randaugment_m))
    if cfg.color_jitter:
        steps.append(v2.ColorJitter(0.4, 0.4, 0.4))
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.crop_padding:
        steps.append(v2.RandomCrop(image_size, padding=max(1, image_size // 8)))
    return v2.Compose(steps) if steps else v2.Identity()


def with_train_transform(pair: DatasetPair, transform) -> Dataset:
    """A copy of the train split with ``transform`` after the dataset's own preprocessing.

    The dataset itself is left as it is: a later stage in the same process (KD after the teacher,
    the pair stage after KD) sees plain images again, not two augmentations stacked.
    """
    return _with_transform(pair.train, transform)


def _with_transform(ds: Dataset, transform) -> Dataset:
    if isinstance(ds, Subset):
        return Subset(_with_transform(ds.dataset, transform), ds.indices)
    if isinstance(ds, TensorImages):
        return ds.with_transform(transform)
    new = copy.copy(ds)  # a torchvision dataset: shares its file list, not its transform
    new.transform = v2.Compose([ds.transform, transform]) if ds.transform else transform
    if getattr(ds, "transforms", None) is not None:  # what e.g. OxfordIIITPet.__getitem__ calls
        from torchvision.datasets.vision import StandardTransform

        new.transforms = StandardTransform(new.transform, getattr(ds, "target_transform", None))
    return new


def mixup(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mixup for KD (no labels needed): ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ U(0, 1)``.

    Hand-written because ``v2.MixUp`` needs labels and draws lam from Beta(a, a); KD only mixes
    the inputs and lets the teacher label the mixture.
    """
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    lam = torch.rand((), generator=generator).item()
    return lam * x + (1 - lam) * x[perm]
