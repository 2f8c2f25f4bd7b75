"""Datasets by name: the bundled digits, fake trees in the real layouts, augmentation, mixup."""

import pytest
import torch
from PIL import Image

from dptq.augment import AugmentConfig, kd_augmentation, mixup, with_train_transform
from dptq.data import DataError, UnreadableImages, load_dataset, normalize


def test_digits_split_is_fixed_and_stratified():
    a = load_dataset("digits", image_size=16, split_seed=0)
    b = load_dataset("digits", image_size=16, split_seed=0)
    c = load_dataset("digits", image_size=16, split_seed=1)
    assert (len(a.train), len(a.test), a.num_classes) == (1347, 450, 10)
    img, label = a.train[0]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and 0 <= label < 10
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.test.images, c.test.images)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # stratified: ~45 per class


def test_subset_options():
    d = load_dataset("digits", image_size=8, max_train=50, max_test=20)
    assert (len(d.train), len(d.test)) == (50, 20)
    aug = with_train_transform(d, kd_augmentation(8, AugmentConfig(hflip=False)))
    assert len(aug) == 50 and aug[0][0].shape == (3, 8, 8)


def test_unknown_dataset_lists_known():
    with pytest.raises(ValueError, match="known: .*digits"):
        load_dataset("mnist-typo")


def _jpeg(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), color).save(path)


def test_oxford_pets_reads_real_layout(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    (base / "annotations" / "trimaps").mkdir(parents=True)
    rows = {"trainval": ["Abyssinian_1 1 1 1", "beagle_1 2 2 1"], "test": ["Abyssinian_2 1 1 1"]}
    for split, lines in rows.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            _jpeg(base / "images" / f"{line.split()[0]}.jpg", (200, 10, 10))
    d = load_dataset("oxford_pets", root=str(tmp_path), image_size=16)
    assert (len(d.train), len(d.test), d.num_classes) == (2, 1, 37)
    img, label = d.train[1]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and label == 1


def test_missing_dataset_gives_one_line(tmp_path):
    for name in ("oxford_pets", "cifar10", "imagefolder"):
        with pytest.raises(FileNotFoundError) as e:
            load_dataset(name, root=str(tmp_path / "nothing"))
        msg = str(e.value)
        assert "\n" not in msg and "nothing" in msg and name in msg


def test_imagefolder(tmp_path):
    for split in ("train", "test"):
        for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            _jpeg(tmp_path / split / cls / "a.png", color)
    d = load_dataset("imagefolder", root=str(tmp_path), image_size=12)
    assert d.num_classes == 2 and d.test[1][0].shape == (3, 12, 12)


def test_normalize_and_mixup():
    imgs = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    x = normalize(imgs, (0.5,) * 3, (0.25,) * 3)
    assert torch.allclose(x, torch.full_like(x, 2.0))
    a = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    m = mixup(a, torch.Generator().manual_seed(0))
    assert ((m >= 0) & (m <= 1)).all()
    assert torch.allclose(m[0] + m[1], torch.ones(3, 2, 2))  # a convex pair of the two images


def test_augmentation_is_seeded_and_switchable():
    img = torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)
    tf = kd_augmentation(16, AugmentConfig(hflip=False))
    torch.manual_seed(3)
    a = tf(img)
    torch.manual_seed(3)
    assert torch.equal(a, tf(img)) and a.shape == img.shape
    off = AugmentConfig(
        random_resized_crop=False,
        randaugment=False,
        color_jitter=False,
        hflip=False,
        crop_padding=False,
    )
    assert torch.equal(kd_augmentation(16, off)(img), img)


def _folder_with_bad_images(root):
    for split in ("train", "test"):
        for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            _jpeg(root / split / cls / "a.png", color)
            _jpeg(root / split / cls / "b.png", color)
    good = (root / "train" / "dog" / "b.png").read_bytes()
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (root / "test" / "dog" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    return [str(root / "train" / "cat" / "broken.jpg"), str(root / "test" / "dog" / "cut.png")]


def test_unreadable_images_stop_with_their_paths(tmp_path):
    bad = _folder_with_bad_images(tmp_path)
    with pytest.raises(UnreadableImages) as e:  # a DataError; the suite's wording is bench's
        load_dataset("imagefolder", root=str(tmp_path), image_size=12)
    msg = str(e.value)
    assert "\n" not in msg and bad[0] in msg and "replace or delete them" in msg
    with pytest.raises(DataError, match="must be 'stop' or 'skip'"):
        load_dataset("imagefolder", root=str(tmp_path), bad_images="ignore")


def test_unreadable_images_skipped_when_the_suite_says_so(tmp_path):
    bad = _folder_with_bad_images(tmp_path)
    d = load_dataset("imagefolder", root=str(tmp_path), image_size=12, bad_images="skip")
    assert sorted(d.skipped) == sorted(bad)
    assert (len(d.train), len(d.test)) == (4, 4)  # 5 and 5 files, one bad in each split
    assert all(d.train[i][0].shape == (3, 12, 12) for i in range(len(d.train)))
    assert d.train.targets == [y for _, y in d.train.samples]


def test_train_transform_reaches_every_kind_of_dataset_and_changes_none(tmp_path):
    """The KD augmentation is applied to a copy: on Oxford-IIIT Pets (whose ``__getitem__`` reads
    ``.transforms``), on an image folder and on tensors; the dataset itself stays plain."""
    from torchvision.transforms import v2

    base = tmp_path / "oxford-iiit-pet"
    (base / "annotations" / "trimaps").mkdir(parents=True)
    (base / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\n")
    (base / "annotations" / "test.txt").write_text("Abyssinian_2 1 1 1\n")
    for name in ("Abyssinian_1", "Abyssinian_2"):
        _jpeg(base / "images" / f"{name}.jpg", (200, 10, 10))
    for split in ("train", "test"):
        _jpeg(tmp_path / "folder" / split / "cat" / "a.png", (255, 0, 0))
    blank = v2.Lambda(lambda x: torch.zeros_like(x))
    for d in (
        load_dataset("oxford_pets", root=str(tmp_path), image_size=16),
        load_dataset("imagefolder", root=str(tmp_path / "folder"), image_size=16),
        load_dataset("digits", image_size=16, max_train=4),
    ):
        aug = with_train_transform(d, blank)
        assert aug[0][0].sum() == 0  # the augmentation ran
        assert d.train[0][0].sum() > 0  # the split itself is unchanged
        again = with_train_transform(d, v2.Identity())
        assert torch.equal(again[0][0], d.train[0][0])  # nothing stacked from the first call


def test_validation_split_is_carved_from_training_stratified_and_seeded():
    from dptq.splits import labels_of

    a = load_dataset("digits", image_size=8, val_fraction=0.15, sample_seed=0)
    b = load_dataset("digits", image_size=8, val_fraction=0.15, sample_seed=0)
    c = load_dataset("digits", image_size=8, val_fraction=0.15, sample_seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (1145, 202, 450)  # 1347 = 1145 + 202
    assert a.val.indices == b.val.indices and a.val.indices != c.val.indices
    assert not set(a.val.indices) & set(a.train.indices)  # disjoint, both inside the train split
    counts = torch.bincount(torch.tensor(labels_of(a.val)), minlength=10)
    assert counts.min() >= 19 and counts.max() <= 22  # ~20 per class
    small = load_dataset("digits", image_size=8, max_train=100, max_test=50)
    assert sorted(set(labels_of(small.test))) == list(range(10))  # a sample, not the front
