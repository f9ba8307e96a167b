"""Datasets and loaders: CheXpert, BBBC038v1 and your own image folders / CSVs.

Every dataset returns items as dicts::

    {"image": float32 (C, H, W) in [0, 1],      # BBBC038v1: shifted to mean 0.5
     "target": labels (T,) / class index () / mask (1, H, W),
     "target_mask": bool, same shape as target  # False = leave out of loss and metrics
     "meta": {...}}                             # path, CSV row, study id, ...

:func:`make_loader` batches them (zero-padding to the largest image in a batch) and makes
training augmentation reproducible from one ``seed`` whatever the number of workers;
:func:`as_xy` turns a dataset into ``(image, target)`` pairs.

Example:
    >>> from explainfix.data import chexpert_splits, make_loader
    >>> splits = chexpert_splits("data/CheXpert-v1.0-small")  # doctest: +SKIP
    >>> train = make_loader(splits.train, 4, train=True, num_samples=15_000, replacement=True, seed=0)
    >>> test = make_loader(splits.test, 4, train=False)
"""
from .bbbc038 import BBBC038_SPLITS, BBBC038v1, read_solution_csv
from .chexpert import (
    LABEL_POLICIES,
    TASKS,
    CheXpert,
    CheXpertSplits,
    aggregate_by_study,
    apply_label_policy,
    chexpert_splits,
    list_label_policies,
    read_chexpert_csv,
    resolve_chexpert_path,
    study_id,
)
from .folder import CSVDataset, ImageFolderDataset
from .images import IMAGE_EXTENSIONS, read_image, read_mask
from .loaders import (
    SeededSampler,
    XYDataset,
    as_xy,
    default_num_workers,
    make_loader,
    pad_collate,
    seed_worker,
    split_indices,
    unpack_key,
)
from .rle import rle_decode, rle_decode_union, rle_encode
from .transforms import (
    Compose,
    RandomCrop,
    RandomFlip4,
    RandomNoise,
    bbbc038_train_transform,
    center_mean,
    chexpert_train_transform,
)

__all__ = [
    "BBBC038_SPLITS",
    "BBBC038v1",
    "read_solution_csv",
    "LABEL_POLICIES",
    "TASKS",
    "CheXpert",
    "CheXpertSplits",
    "aggregate_by_study",
    "apply_label_policy",
    "chexpert_splits",
    "list_label_policies",
    "read_chexpert_csv",
    "resolve_chexpert_path",
    "study_id",
    "CSVDataset",
    "ImageFolderDataset",
    "IMAGE_EXTENSIONS",
    "read_image",
    "read_mask",
    "SeededSampler",
    "XYDataset",
    "as_xy",
    "default_num_workers",
    "make_loader",
    "pad_collate",
    "seed_worker",
    "split_indices",
    "unpack_key",
    "rle_decode",
    "rle_decode_union",
    "rle_encode",
    "Compose",
    "RandomCrop",
    "RandomFlip4",
    "RandomNoise",
    "bbbc038_train_transform",
    "center_mean",
    "chexpert_train_transform",
]
