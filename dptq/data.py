"""Datasets by name (train and test split, fixed preprocessing) and the KD augmentation.

| name          | source                                   | classes | preprocessing (test)                    |
|---------------|------------------------------------------|---------|-----------------------------------------|
| ``digits``    | scikit-learn's bundled 8x8 digits (1797) | 10      | x16 grey levels -> uint8, bilinear resize to ``image_size``, 3 channels; stratified split, 25% test, seeded by ``split_seed`` (not the training seed) |
| ``oxford_pets`` | torchvision ``OxfordIIITPet`` trainval/test | 37   | resize shorter side to ``image_size * 8/7``, centre crop ``image_size`` |
| ``cifar10`` / ``cifar100`` | torchvision CIFAR train/test  | 10/100  | resize to ``image_size``                |
| ``imagefolder`` | ``root/train/<class>/*``, ``root/test/<class>/*`` | from folders | as ``oxford_pets``       |

Every split yields ``(uint8 image tensor [3, H, W], label)``; :func:`normalize` maps a batch to
float with the dataset's mean/std on the model's device. Each dataset's options are a frozen
dataclass (:class:`DataOptions` and its subclasses), so a suite's ``dataset.options`` are checked
like every other field. The KD augmentation lives in :mod:`dptq.augment`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .engine import ConfigError
from .splits import split_off, subset

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class _Entry(NamedTuple):
    load: Callable[..., DatasetPair]  # (options, bad_images) -> DatasetPair
    options: type  # the options dataclass


DATASETS: dict[str, _Entry] = {}


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
    test split; the benchmark always has one (``protocol.val_fraction``) and records the split.
    """
    return "val" if data.val is not None else "test"


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


def register_dataset(name: str, options: type):
    """Register ``fn(options, bad_images) -> DatasetPair`` with its options dataclass."""

    def deco(fn):
        DATASETS[name] = _Entry(fn, options)
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


@dataclass(frozen=True)
class DataOptions:
    """Options every dataset takes.

    Attributes:
        image_size: side of the square images the models see (pixels).
        max_train, max_test: keep only the first examples of each split (quick runs, tests).
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


from . import synthetic  # noqa: E402, F401  (registers the ``synthetic`` dataset)
