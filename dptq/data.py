"""Datasets by name (train and test split, fixed preprocessing) and the KD augmentation.

| name          | source                                   | classes | preprocessing (test)                    |
|---------------|------------------------------------------|---------|-----------------------------------------|
| ``digits``    | scikit-learn's bundled 8x8 digits (1797) | 10      | x16 grey levels -> uint8, bilinear resize to ``image_size``, 3 channels; stratified split, 25% test, seeded by ``split_seed`` (not the training seed) |
| ``oxford_pets`` | torchvision ``OxfordIIITPet`` trainval/test | 37   | resize shorter side to ``image_size * 8/7``, centre crop ``image_size`` |
| ``cifar10`` / ``cifar100`` | torchvision CIFAR train/test  | 10/100  | resize to ``image_size``                |
| ``imagefolder`` | ``root/train/<class>/*``, ``root/test/<class>/*`` | from folders | as ``oxford_pets``       |

Every split yields ``(uint8 image tensor [3, H, W], label)``; :func:`normalize` maps a batch to
float with the dataset's mean/std on the model's device. The KD augmentation (Sect. 4 "Training
Details") is built from ``torchvision.transforms.v2`` with each part switchable; mixup is applied to
whole batches by :func:`mixup`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DATASETS: dict[str, Callable[..., DatasetPair]] = {}


@dataclass(frozen=True)
class DatasetPair:
    """Train and test splits of one dataset plus what a model needs to know about it."""

    train: Dataset
    test: Dataset
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    skipped: tuple[str, ...] = ()  # unreadable image files left out (``bad_images="skip"``)


class DataError(ValueError):
    """A dataset that cannot be used as it is (one line: where, what is wrong, what to do)."""


def _unreadable(path: str) -> str | None:
    """Why PIL cannot decode ``path`` (None when it can): header and pixel data both read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # PIL raises many types for broken files (OSError, SyntaxError, ...)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"
    return None


def check_images(
    samples: list[tuple[str, int]], where: str, bad_images: str
) -> tuple[list[tuple[str, int]], tuple[str, ...]]:
    """Decode every image once; stop with one line naming the bad files, or leave them out.

    ``bad_images``: ``"stop"`` (the default: a run never trains on silently changed data) or
    ``"skip"`` (drop them; the caller reports and records the paths). Decoding runs in threads
    (PIL releases the GIL while decoding).
    """
    from concurrent.futures import ThreadPoolExecutor

    if bad_images not in ("stop", "skip"):
        raise DataError(f"{where}: bad_images must be 'stop' or 'skip', not {bad_images!r}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        why = list(pool.map(_unreadable, [p for p, _ in samples]))
    bad = [(p, w) for (p, _), w in zip(samples, why) if w is not None]
    if bad and bad_images == "stop":
        shown = "; ".join(f"{p} ({w})" for p, w in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(
            f"{where}: {len(bad)} unreadable image(s): {shown}{more}; replace or delete them, "
            "or set 'bad_images: skip' under the suite's dataset to leave them out"
        )
    return [s for s, w in zip(samples, why) if w is None], tuple(p for p, _ in bad)


@dataclass(frozen=True)
class AugmentConfig:
    """The paper's KD augmentation; each part can be switched off (flips make no sense on digits)."""

    random_resized_crop: bool = True
    randaugment: bool = True
    randaugment_n: int = 2
    randaugment_m: int = 14
    color_jitter: bool = True
    hflip: bool = True
    crop_padding: bool = True
    mixup: bool = True


def register_dataset(name: str):
    def deco(fn):
        DATASETS[name] = fn
        return fn

    return deco


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


def _pil_to_uint8(size: int, train_tf=None):
    """PIL -> uint8 tensor at ``size`` (resize shorter side, centre crop), then ``train_tf``."""
    steps = [
        v2.PILToTensor(),
        v2.Resize(int(round(size * 8 / 7)), antialias=True),
        v2.CenterCrop(size),
    ]
    return v2.Compose(steps + ([train_tf] if train_tf else []))


@register_dataset("digits")
def digits(
    image_size: int = 32, split_seed: int = 0, test_fraction: float = 0.25, **_
) -> DatasetPair:
    """scikit-learn's bundled handwritten digits: real images, no download (the built-in default)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    x = torch.nn.functional.interpolate(
        x, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(d.target)
    idx_tr, idx_te = train_test_split(
        range(len(y)), test_size=test_fraction, random_state=split_seed, stratify=d.target
    )
    return DatasetPair(
        TensorImages(x[idx_tr], y[idx_tr]),
        TensorImages(x[idx_te], y[idx_te]),
        10,
        (0.305,) * 3,
        (0.324,) * 3,
    )


def _missing(name: str, root: Path, hint: str) -> FileNotFoundError:
    return FileNotFoundError(f"dataset {name!r} not found under {root}: {hint}")


@register_dataset("oxford_pets")
def oxford_pets(
    root: str = "data",
    image_size: int = 224,
    download: bool = False,
    bad_images: str = "stop",
    **_,
) -> DatasetPair:
    """Oxford-IIIT Pets (37 classes), trainval for training and test for testing."""
    from torchvision.datasets import OxfordIIITPet

    try:
        train = OxfordIIITPet(
            root, "trainval", transform=_pil_to_uint8(image_size), download=download
        )
        test = OxfordIIITPet(root, "test", transform=_pil_to_uint8(image_size), download=download)
    except RuntimeError:
        raise _missing(
            "oxford_pets",
            Path(root) / "oxford-iiit-pet",
            "set 'download: true' (needs internet) or unpack images.tar.gz and "
            "annotations.tar.gz from the Oxford-IIIT Pet page there",
        ) from None
    skipped: tuple[str, ...] = ()
    for split, ds in (("trainval", train), ("test", test)):
        kept, bad = check_images(
            [(str(p), y) for p, y in zip(ds._images, ds._labels)],
            f"oxford_pets {split}",
            bad_images,
        )
        ds._images, ds._labels = [Path(p) for p, _ in kept], [y for _, y in kept]
        skipped += bad
    return DatasetPair(train, test, 37, *IMAGENET_STATS, skipped=skipped)


def _cifar(name: str, cls_name: str, classes: int, root: str, image_size: int, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(image_size, antialias=True)])
    try:
        train = cls(root, train=True, transform=tf, download=download)
        test = cls(root, train=False, transform=tf, download=download)
    except RuntimeError:
        raise _missing(
            name,
            Path(root),
            "set 'download: true' (needs internet) or place the "
            "python-version archive's extracted folder there",
        ) from None
    return DatasetPair(train, test, classes, (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))


@register_dataset("cifar10")
def cifar10(root: str = "data", image_size: int = 32, download: bool = False, **_) -> DatasetPair:
    return _cifar("cifar10", "CIFAR10", 10, root, image_size, download)


@register_dataset("cifar100")
def cifar100(root: str = "data", image_size: int = 32, download: bool = False, **_) -> DatasetPair:
    return _cifar("cifar100", "CIFAR100", 100, root, image_size, download)


@register_dataset("imagefolder")
def imagefolder(
    root: str = "data", image_size: int = 224, bad_images: str = "stop", **_
) -> DatasetPair:
    """A user's own tree: ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Every image is decoded once up front; ``bad_images`` says what an unreadable one does
    (:func:`check_images`).
    """
    from torchvision.datasets import ImageFolder

    base = Path(root)
    for split in ("train", "test"):
        if not (base / split).is_dir():
            raise _missing("imagefolder", base, f"expected {base / split}/<class>/<image files>")
    train = ImageFolder(str(base / "train"), transform=_pil_to_uint8(image_size))
    test = ImageFolder(str(base / "test"), transform=_pil_to_uint8(image_size))
    if train.classes != test.classes:
        raise DataError(
            f"imagefolder {base}: train and test have different class folders; "
            "give both splits the same <class> folders"
        )
    skipped: tuple[str, ...] = ()
    for split, ds in (("train", train), ("test", test)):
        kept, bad = check_images(ds.samples, f"imagefolder {base / split}", bad_images)
        ds.samples = ds.imgs = kept
        ds.targets = [y for _, y in kept]
        skipped += bad
    return DatasetPair(train, test, len(train.classes), *IMAGENET_STATS, skipped=skipped)


def load_dataset(
    name: str, max_train: int | None = None, max_test: int | None = None, **options
) -> DatasetPair:
    """A registered dataset by name; unknown names fail listing the known ones.

    ``max_train`` / ``max_test`` keep only the first examples of each split (quick runs, tests).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    pair = DATASETS[name](**options)
    if max_train is None and max_test is None:
        return pair
    cut = lambda ds, n: ds if n is None or n >= len(ds) else Subset(ds, range(n))  # noqa: E731
    return replace(pair, train=cut(pair.train, max_train), test=cut(pair.test, max_test))


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
    """The train split with ``transform`` applied after the dataset's own preprocessing."""
    train = pair.train
    if isinstance(train, Subset) and isinstance(train.dataset, TensorImages):
        return Subset(train.dataset.with_transform(transform), train.indices)
    if isinstance(train, TensorImages):
        return train.with_transform(transform)
    base = train.transform
    train.transform = v2.Compose([base, transform]) if base else transform
    return train


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float, scaled to [0, 1] and standardised per channel."""
    x = images.float().div_(255)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def mixup(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mixup for KD (no labels needed): ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ U(0, 1)``.

    Hand-written because ``v2.MixUp`` needs labels and draws lam from Beta(a, a); KD only mixes
    the inputs and lets the teacher label the mixture.
    """
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    lam = torch.rand((), generator=generator).item()
    return lam * x + (1 - lam) * x[perm]
