"""Data loaders, seeded sampling, splits and collation shared by all datasets.

Reproducibility: for training, :func:`make_loader` wraps the index sampler of datasets that
declare ``accepts_seeded_keys = True`` (all datasets here) in a
:class:`SeededSampler`, which draws one 63-bit seed per sample in the main process and hands
the dataset the key ``(index, seed)``. The dataset seeds a private ``torch.Generator`` with
it for that sample's augmentation, so a given ``seed=`` gives bit-identical batches with 0,
2 or 8 workers, persistent or not. Datasets still accept a plain ``int`` index; their
augmentation then draws from torch's global RNG (which the DataLoader seeds per worker).

Example:
    >>> train = make_loader(dataset, batch_size=4, train=True, seed=0, num_samples=15_000)  # doctest: +SKIP
    >>> for batch in train:  # doctest: +SKIP
    ...     x, y, m = batch["image"], batch["target"], batch["target_mask"]
"""
from __future__ import annotations

import os
import random
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torch.utils.data._utils.collate import default_collate

from .transforms import pad_item

__all__ = [
    "make_loader",
    "pad_collate",
    "SeededSampler",
    "split_indices",
    "as_xy",
    "XYDataset",
    "ItemDataset",
    "unpack_key",
    "accepts_seeded_keys",
    "seed_worker",
    "default_num_workers",
]

def unpack_key(key) -> tuple[int, torch.Generator | None]:
    """Split a dataset key into ``(index, generator)``.

    ``int`` -> ``(index, None)`` (augmentation uses torch's global RNG);
    ``(index, seed)`` -> ``(index, torch.Generator().manual_seed(seed))``.
    """
    if isinstance(key, tuple):
        index, seed = key
        return int(index), torch.Generator().manual_seed(int(seed))
    if isinstance(key, torch.Tensor):
        key = key.item()
    return int(key), None


def accepts_seeded_keys(dataset) -> bool:
    """True when ``dataset[(index, seed)]`` is supported (a class attribute ``accepts_seeded_keys = True``)."""
    return bool(getattr(dataset, "accepts_seeded_keys", False))


def check_index(index: int, length: int, name: str) -> int:
    """Support negative indices and raise ``IndexError`` past the end."""
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{name} index {index} out of range for {length} items")
    return index


class ItemDataset(Dataset):
    """Base of the item-dict datasets: the key protocol and the transform, in one place.

    ``dataset[key]`` takes a plain ``int`` (negative counts from the end) or a seeded key
    ``(index, seed)`` (see :func:`unpack_key`), reads the item with :meth:`_item` and applies
    ``self.transform(item, generator)`` when a transform is set. Subclasses define
    ``__len__``, ``_item(index) -> dict`` and an attribute ``transform``.
    """

    accepts_seeded_keys = True  # dataset[(index, seed)] seeds this item's augmentation
    transform = None

    def _item(self, index: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, key) -> dict:
        index, generator = unpack_key(key)
        item = self._item(check_index(index, len(self), type(self).__name__))
        return self.transform(item, generator) if self.transform is not None else item


class SeededSampler(Sampler):
    """Pair every index of ``sampler`` with a per-sample seed: yields ``(index, seed)``.

    Args:
        sampler: any sampler of ``int`` indices (iterated anew each epoch).
        generator: draws the seeds; seeded once, it makes the whole run reproducible.
    """

    def __init__(self, sampler: Sampler[int] | Sequence[int], generator: torch.Generator):
        self.sampler = sampler
        self.generator = generator

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = [int(i) for i in self.sampler]
        seeds = torch.randint(0, 2**63 - 1, (len(indices),), generator=self.generator, dtype=torch.int64)
        return iter(zip(indices, seeds.tolist()))

    def __len__(self) -> int:
        return len(self.sampler)


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Random split of ``range(n)`` into ``int(train_fraction * n)`` and the rest.

    Uses ``torch.utils.data.random_split`` with ``torch.Generator().manual_seed(seed)``, the
    paper's recipe: CheXpert's 223,414 train.csv rows with ``0.7`` and seed 138 give
    156,389 / 67,025; BBBC038v1's 670 training images with ``0.7`` give 468 / 202.

    Returns:
        ``(first, second)`` lists of indices, in the permuted order ``random_split`` gives.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    n_first = int(train_fraction * n)
    first, second = torch.utils.data.random_split(
        range(n), [n_first, n - n_first], generator=torch.Generator().manual_seed(seed)
    )
    return list(first.indices), list(second.indices)


def _pad_batch(images: list[torch.Tensor]) -> tuple[int, int]:
    return max(x.shape[-2] for x in images), max(x.shape[-1] for x in images)


def pad_collate(batch: list[Any]) -> Any:
    """Collate items of different sizes by zero-padding each to the batch's largest ``H x W``.

    Works on item dicts (pads ``image`` and a spatial ``target`` / ``target_mask``, whose
    padding is marked ``False``) and on ``(x, y)`` tuples (pads ``x``, and ``y`` when it is a
    ``(C, H, W)`` mask of the same size). Padding is centred, as in the paper's evaluation.
    Items of equal size are simply stacked, so it also serves as the training collate.
    """
    if not batch:
        raise ValueError("pad_collate got an empty batch")
    first = batch[0]
    if isinstance(first, dict):
        size = _pad_batch([item["image"] for item in batch])
        return default_collate([pad_item(item, size) for item in batch])
    if isinstance(first, (tuple, list)):
        size = _pad_batch([item[0] for item in batch])
        padded = []
        for x, y, *rest in batch:
            spatial = isinstance(y, torch.Tensor) and y.dim() == 3 and y.shape[-2:] == x.shape[-2:]
            out = pad_item({"image": x, "target": y} if spatial else {"image": x}, size)
            padded.append((out["image"], out["target"] if spatial else y, *rest))
        return tuple(default_collate(padded))
    raise TypeError(f"pad_collate expects dict or (x, y) items, got {type(first).__name__}")


class XYDataset(Dataset):
    """View of an item-dict dataset as ``(image, target)`` pairs (see :func:`as_xy`)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    @property
    def accepts_seeded_keys(self) -> bool:
        return accepts_seeded_keys(self.dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        item = self.dataset[key]
        return item["image"], item["target"]


def as_xy(dataset: Dataset) -> XYDataset:
    """Wrap a dataset so items are ``(image, target)`` tuples.

    Batches then come as ``(x, y)``, the form :func:`explainfix.spatial_saliency` and most
    training loops take. Seeded keys pass through, so :func:`make_loader` works on it.

    Example:
        >>> loader = make_loader(as_xy(dataset), batch_size=4, train=False)  # doctest: +SKIP
        >>> x, y = next(iter(loader))  # doctest: +SKIP
    """
    return XYDataset(dataset)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` that seeds ``random`` and ``numpy`` from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def default_num_workers() -> int:
    """``min(4, usable CPUs)``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int | None = None,
    seed: int | None = None,
    num_samples: int | None = None,
    replacement: bool = False,
    drop_last: bool = False,
    collate_fn: Callable[[list[Any]], Any] = pad_collate,
    pin_memory: bool | None = None,
) -> DataLoader:
    """Build a ``DataLoader`` with the project's conventions.

    Args:
        dataset: any map-style dataset. Those of :mod:`explainfix.data` (class attribute
            ``accepts_seeded_keys = True``) get per-sample seeds when ``train``: the same
            ``seed`` gives the same batches with any ``num_workers``. Others get plain
            indices; their randomness then comes from torch's global RNG, which the loader
            seeds in each worker from ``seed`` (reproducible for a fixed ``num_workers`` > 0;
            with 0 workers, ``torch.manual_seed`` governs it).
        batch_size: items per batch (the paper: CheXpert 4, BBBC038v1 10 train / 1 eval).
        train: shuffle and give each sample its own augmentation seed; ``False`` keeps the
            dataset order and passes plain indices.
        num_workers: worker processes; default ``min(4, CPUs)``. Workers persist across epochs.
        seed: makes shuffling and augmentation reproducible (``None``: drawn from torch's
            global RNG, so ``torch.manual_seed`` governs it).
        num_samples: samples per epoch when training (the paper's CheXpert epoch: 15,000
            drawn with ``replacement=True``); default ``len(dataset)``.
        replacement: draw training samples with replacement.
        drop_last: drop the last incomplete batch.
        collate_fn: default :func:`pad_collate` (zero-pads to the batch's largest image).
        pin_memory: default ``torch.cuda.is_available()``.

    Returns:
        A ``torch.utils.data.DataLoader``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise ValueError("cannot build a loader over an empty dataset")
    if num_samples is not None and not train:
        raise ValueError("num_samples only applies to training loaders (train=True)")
    num_workers = default_num_workers() if num_workers is None else int(num_workers)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if train:
        sampler = RandomSampler(
            dataset, replacement=replacement, num_samples=num_samples,
            generator=torch.Generator().manual_seed(seed),
        )
        if accepts_seeded_keys(dataset):
            sampler = SeededSampler(sampler, torch.Generator().manual_seed(seed + 1))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed + 2),
    )
