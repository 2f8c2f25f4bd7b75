"""The registered datasets (train and test split, fixed preprocessing).

| name          | source                                   | classes | preprocessing (test)                    |
|---------------|------------------------------------------|---------|-----------------------------------------|
| ``digits``    | scikit-learn's bundled 8x8 digits (1797) | 10      | x16 grey levels -> uint8, bilinear resize to ``image_size``, 3 channels; stratified split, 25% test, seeded by ``split_seed`` (not the training seed) |
| ``oxford_pets`` | torchvision ``OxfordIIITPet`` trainval/test | 37   | resize shorter side to ``image_size * 8/7``, centre crop ``image_size`` |
| ``cifar10`` / ``cifar100`` | torchvision CIFAR train/test  | 10/100  | resize to ``image_size``                |
| ``imagefolder`` | ``root/train/<class>/*``, ``root/test/<class>/*`` | from folders | as ``oxford_pets``       |

Image files are decoded once up front (:func:`check_images`): an unreadable one stops the load
(:class:`UnreadableImages`) or is left out, as the caller says. The KD augmentation lives in
:mod:`dptq.augment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms import v2

from ..errors import ConfigError
from .registry import (
    IMAGENET_STATS,
    DataError,
    DataOptions,
    DatasetPair,
    TensorImages,
    register_dataset,
)


class UnreadableImages(DataError):
    """Image files PIL cannot decode, with ``bad_images="stop"``; the message names them."""


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

    ``bad_images``: ``"stop"`` (the default, :class:`UnreadableImages`: a run never trains on
    silently changed data) or ``"skip"`` (drop them; the caller reports and records the paths). Decoding runs in threads
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
        raise UnreadableImages(
            f"{where}: {len(bad)} unreadable image(s): {shown}{more}; replace or delete them"
        )
    return [s for s, w in zip(samples, why) if w is None], tuple(p for p, _ in bad)


def _pil_to_uint8(size: int, train_tf=None):
    """PIL -> uint8 tensor at ``size`` (resize shorter side, centre crop), then ``train_tf``."""
    steps = [
        v2.PILToTensor(),
        v2.Resize(int(round(size * 8 / 7)), antialias=True),
        v2.CenterCrop(size),
    ]
    return v2.Compose(steps + ([train_tf] if train_tf else []))


@dataclass(frozen=True)
class DigitsOptions(DataOptions):
    """scikit-learn's digits: ``split_seed`` and ``test_fraction`` make the (stratified) test split."""

    image_size: int = 32
    split_seed: int = 0
    test_fraction: float = 0.25

    def __post_init__(self):
        super().__post_init__()
        if self.image_size > 256:  # 1797 images x 3 x 256^2 bytes already: 350 MB
            raise ConfigError(
                f"image_size: digits are 8x8 scans; at most 256, got {self.image_size}"
            )
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction: must lie in (0, 1), got {self.test_fraction}")
        if not 0 <= self.split_seed < 2**31:
            raise ConfigError(f"split_seed: must lie in 0..2^31-1, got {self.split_seed}")


@dataclass(frozen=True)
class FolderOptions(DataOptions):
    """A dataset on disk under ``root``; ``download`` fetches it there first (needs internet)."""

    root: str = "data"
    download: bool = False


@dataclass(frozen=True)
class CifarOptions(FolderOptions):
    image_size: int = 32


@dataclass(frozen=True)
class ImageFolderOptions(DataOptions):
    """``root/train/<class>/*`` and ``root/test/<class>/*``."""

    root: str = "data"


@register_dataset("digits", DigitsOptions)
def digits(opts: DigitsOptions, bad_images: str = "stop") -> DatasetPair:
    """scikit-learn's bundled handwritten digits: real images, no download (the built-in default)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    size = opts.image_size
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(d.target)
    idx_tr, idx_te = train_test_split(
        range(len(y)),
        test_size=opts.test_fraction,
        random_state=opts.split_seed,
        stratify=d.target,
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


@register_dataset("oxford_pets", FolderOptions)
def oxford_pets(opts: FolderOptions, bad_images: str = "stop") -> DatasetPair:
    """Oxford-IIIT Pets (37 classes), trainval for training and test for testing."""
    from torchvision.datasets import OxfordIIITPet

    tf = _pil_to_uint8(opts.image_size)
    try:
        train = OxfordIIITPet(opts.root, "trainval", transform=tf, download=opts.download)
        test = OxfordIIITPet(opts.root, "test", transform=tf, download=opts.download)
    except RuntimeError:
        raise _missing(
            "oxford_pets",
            Path(opts.root) / "oxford-iiit-pet",
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


def _cifar(name: str, cls_name: str, classes: int, opts: FolderOptions) -> DatasetPair:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(opts.image_size, antialias=True)])
    try:
        train = cls(opts.root, train=True, transform=tf, download=opts.download)
        test = cls(opts.root, train=False, transform=tf, download=opts.download)
    except RuntimeError:
        raise _missing(
            name,
            Path(opts.root),
            "set 'download: true' (needs internet) or place the "
            "python-version archive's extracted folder there",
        ) from None
    return DatasetPair(train, test, classes, (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))


@register_dataset("cifar10", CifarOptions)
def cifar10(opts: CifarOptions, bad_images: str = "stop") -> DatasetPair:
    return _cifar("cifar10", "CIFAR10", 10, opts)


@register_dataset("cifar100", CifarOptions)
def cifar100(opts: CifarOptions, bad_images: str = "stop") -> DatasetPair:
    return _cifar("cifar100", "CIFAR100", 100, opts)


@register_dataset("imagefolder", ImageFolderOptions)
def imagefolder(opts: ImageFolderOptions, bad_images: str = "stop") -> DatasetPair:
    """A user's own tree: ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Every image is decoded once up front; ``bad_images`` says what an unreadable one does
    (:func:`check_images`).
    """
    from torchvision.datasets import ImageFolder

    base = Path(opts.root)
    for split in ("train", "test"):
        if not (base / split).is_dir():
            raise _missing("imagefolder", base, f"expected {base / split}/<class>/<image files>")
    train = ImageFolder(str(base / "train"), transform=_pil_to_uint8(opts.image_size))
    test = ImageFolder(str(base / "test"), transform=_pil_to_uint8(opts.image_size))
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
