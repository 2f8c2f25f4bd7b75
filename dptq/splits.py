"""Seeded, stratified splits and subsets of a dataset (never "the first n": split files are often
sorted by class, Oxford-IIIT Pets by breed)."""

from __future__ import annotations

from torch.utils.data import Dataset, Subset


def labels_of(ds: Dataset) -> list[int]:
    """The labels of a split, in order, without decoding its images where the dataset keeps them."""
    if isinstance(ds, Subset):
        base = labels_of(ds.dataset)
        return [base[i] for i in ds.indices]
    for attr in ("labels", "targets", "_labels"):  # TensorImages, ImageFolder/CIFAR, OxfordIIITPet
        if hasattr(ds, attr):
            return [int(v) for v in getattr(ds, attr)]
    return [int(ds[i][1]) for i in range(len(ds))]


def stratified_indices(labels: list[int], n: int, seed: int) -> list[int]:
    """``n`` of the indices, drawn at random (seeded), every class in proportion where it can be.

    scikit-learn's stratified split; without stratification when a class is too small for it.
    Returned in dataset order.
    """
    from sklearn.model_selection import train_test_split

    idx = list(range(len(labels)))
    if n >= len(idx):
        return idx
    try:
        keep, _ = train_test_split(idx, train_size=n, random_state=seed, stratify=labels)
    except ValueError:  # a class with too few examples to be split in proportion
        keep, _ = train_test_split(idx, train_size=n, random_state=seed)
    return sorted(keep)


def subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded, stratified random subset of ``n`` examples (``ds`` itself when n is None or more).

    Never the first n: split files are often sorted by class (Oxford-IIIT Pets by breed).
    """
    if n is None or n >= len(ds):
        return ds
    return Subset(ds, stratified_indices(labels_of(ds), n, seed))


def split_off(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """``ds`` as (the rest, a held-out part of ``fraction`` of it), stratified and seeded."""
    labels = labels_of(ds)
    held = set(stratified_indices(labels, max(1, round(fraction * len(labels))), seed))
    rest = [i for i in range(len(labels)) if i not in held]
    return Subset(ds, rest), Subset(ds, sorted(held))
