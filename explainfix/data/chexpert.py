"""CheXpert chest x-rays (CheXpert-v1.0-small layout), five tasks, explicit uncertainty policy.

Layout expected under ``root`` (the unzipped ``CheXpert-v1.0-small`` folder)::

    root/train.csv   root/valid.csv
    root/train/patient00001/study1/view1_frontal.jpg
    root/valid/patient64541/study1/view1_frontal.jpg

The CSV ``Path`` column reads ``CheXpert-v1.0-small/train/patient.../view1_frontal.jpg``; a
leading component that starts with ``CheXpert-v1.0`` is dropped and the rest is resolved
under ``root`` (so both the small and the full-size release work; absolute paths are kept).

Labels in the CSV: ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain, empty = not
mentioned. A label policy turns them into a ``target`` and a ``target_mask`` (``False`` =
leave out of loss and metrics); see :data:`LABEL_POLICIES`.

Each item is a dict::

    {"image": (1, H, W) float32 in [0, 1],
     "target": (5,) float32, "target_mask": (5,) bool,
     "meta": {"row": CSV row (0-based data row), "path": str, "study": "patient00001/study1"}}

Use :func:`explainfix.data.as_xy` for ``(image, target)`` pairs.

Example:
    >>> splits = chexpert_splits("data/CheXpert-v1.0-small")  # doctest: +SKIP
    >>> len(splits.train), len(splits.val), len(splits.test)
    (156389, 67025, 234)
    >>> loader = make_loader(splits.train, 4, train=True, num_samples=15_000, replacement=True, seed=0)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .images import read_image
from .loaders import ItemDataset, split_indices
from .transforms import Transform, chexpert_train_transform
from .studies import aggregate_by_study

__all__ = [
    "TASKS",
    "LABEL_POLICIES",
    "list_label_policies",
    "apply_label_policy",
    "read_chexpert_csv",
    "resolve_chexpert_path",
    "study_id",
    "aggregate_by_study",
    "CheXpert",
    "CheXpertSplits",
    "chexpert_splits",
]

#: the five tasks of the CheXpert competition (and of the paper), in output order
TASKS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def _u_ignore(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.where(raw == 1, 1.0, 0.0), raw != -1


def _u_zeros(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.where(raw == 1, 1.0, 0.0), np.ones(raw.shape, bool)


def _u_ones(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.where((raw == 1) | (raw == -1), 1.0, 0.0), np.ones(raw.shape, bool)


#: label policy -> function ``raw (N, T) with 1 / 0 / -1 / NaN -> (target, target_mask)``.
#: In every policy a missing label (NaN) is a negative that counts.
#: ``"u-ignore"`` (default, the paper's): uncertain -> masked out (target 0, mask False);
#: ``"u-zeros"``: uncertain -> negative; ``"u-ones"``: uncertain -> positive.
LABEL_POLICIES: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "u-ignore": _u_ignore,
    "u-zeros": _u_zeros,
    "u-ones": _u_ones,
}


def list_label_policies() -> list[str]:
    """Names accepted by ``label_policy=``."""
    return sorted(LABEL_POLICIES)


def apply_label_policy(raw: np.ndarray, policy: str = "u-ignore") -> tuple[torch.Tensor, torch.Tensor]:
    """Turn raw CheXpert labels into a target and a mask.

    Args:
        raw: ``(N, T)`` float array of 1 (positive), 0 (negative), -1 (uncertain), NaN (missing).
        policy: one of :func:`list_label_policies`.

    Returns:
        ``(target, target_mask)``: ``float32`` and ``bool`` tensors of shape ``(N, T)``.
    """
    try:
        fn = LABEL_POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown label policy {policy!r}; choose one of {list_label_policies()}") from None
    raw = np.asarray(raw, dtype=np.float64)
    target, mask = fn(raw)
    return torch.from_numpy(target.astype(np.float32)), torch.from_numpy(np.asarray(mask, bool))


def read_chexpert_csv(csv_file: str | os.PathLike, tasks: Sequence[str] = TASKS) -> pd.DataFrame:
    """Read and validate a CheXpert CSV.

    Checks that ``Path`` and every task column exist and that every task label is 1, 0, -1
    or empty. Returns the frame with the task columns as ``float64`` (NaN = missing).

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing columns or an unexpected label value (naming file, row, column).
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"CheXpert label file not found: {csv_file}")
    try:
        frame = pd.read_csv(csv_file, dtype={"Path": str}, low_memory=False)
    except Exception as exc:
        raise ValueError(f"cannot read CheXpert CSV {csv_file}: {exc}") from exc
    missing = [c for c in ("Path", *tasks) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{csv_file} lacks the columns {missing}; found {list(frame.columns)}"
        )
    for task in tasks:
        column = frame[task]
        numeric = pd.to_numeric(column, errors="coerce")
        bad = (column.notna() & numeric.isna()) | (numeric.notna() & ~numeric.isin([1.0, 0.0, -1.0]))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{csv_file}, row {row} (line {row + 2}, Path {frame['Path'].iloc[row]!r}), column "
                f"{task!r}: unexpected label value {column.iloc[row]!r}; expected 1, 0, -1 or empty"
            )
        frame[task] = numeric.astype(np.float64)
    empty = frame["Path"].isna() | (frame["Path"].astype(str).str.strip() == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise ValueError(f"{csv_file}, row {row} (line {row + 2}): empty 'Path'")
    return frame


def resolve_chexpert_path(root: str | os.PathLike, csv_path: str) -> Path:
    """Map a CSV ``Path`` value to a file under ``root``.

    ``CheXpert-v1.0-small/train/p/s/v.jpg`` -> ``root/train/p/s/v.jpg``; paths without the
    release prefix are taken relative to ``root``; absolute paths are kept.
    """
    parts = PurePosixPath(str(csv_path).replace("\\", "/")).parts
    if parts and parts[0] == "/":
        return Path(*parts)
    if parts and parts[0].startswith("CheXpert-v1.0"):
        parts = parts[1:]
    return Path(root, *parts)


def study_id(path: str) -> str:
    """Study of an image from its CSV ``Path``: ``".../patient00001/study1/view1.jpg"`` -> ``"patient00001/study1"``."""
    parts = PurePosixPath(str(path).replace("\\", "/")).parts
    if len(parts) < 3:
        raise ValueError(f"cannot find patient/study in path {path!r}")
    return f"{parts[-3]}/{parts[-2]}"


class CheXpert(ItemDataset):
    """CheXpert images with five-task labels under an explicit uncertainty policy.

    Args:
        root: the ``CheXpert-v1.0-small`` folder.
        split: ``"train"`` (``train.csv``) or ``"valid"`` (``valid.csv``, the paper's test set).
        indices: keep only these CSV rows (0-based data rows), in this order.
        label_policy: ``"u-ignore"`` (default), ``"u-zeros"`` or ``"u-ones"``; see :data:`LABEL_POLICIES`.
        tasks: label columns, in output order; default :data:`TASKS`.
        transform: ``(item, generator) -> item``, e.g. :func:`chexpert_train_transform`; ``None``
            returns full-size images (evaluation; batch them with ``pad_collate``).
        csv_file: read labels from this file instead of ``root/<split>.csv`` (``.csv.gz`` works).

    Raises:
        FileNotFoundError: missing CSV. ``ValueError``: bad columns / labels (at construction);
        missing or corrupt image (when the item is read), naming file and CSV row.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        indices: Sequence[int] | None = None,
        label_policy: str = "u-ignore",
        tasks: Sequence[str] = TASKS,
        transform: Transform | None = None,
        csv_file: str | os.PathLike | None = None,
    ):
        if split not in ("train", "valid"):
            raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.tasks = tuple(tasks)
        self.label_policy = label_policy
        self.transform = transform
        self.csv_file = Path(csv_file) if csv_file is not None else self.root / f"{split}.csv"
        if csv_file is None and not self.csv_file.is_file():
            raise FileNotFoundError(
                f"{self.csv_file} not found; root must be the CheXpert-v1.0-small folder "
                "(train.csv, valid.csv, train/, valid/)"
            )
        frame = read_chexpert_csv(self.csv_file, self.tasks)
        raw = frame[list(self.tasks)].to_numpy(np.float64)
        target, mask = apply_label_policy(raw, label_policy)
        # UTF-8 bytes in one numpy array, not a list of str: 4x smaller than numpy unicode, and
        # workers forked from this process share it without copy-on-write from refcounting
        self._paths = np.array([p.encode("utf-8") for p in frame["Path"].tolist()])
        self._rows = np.arange(len(frame))
        self._target, self._mask = target, mask
        if indices is not None:
            self._select(indices)

    def _select(self, indices: Sequence[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self._paths)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"indices must lie in [0, {n}) for {self.csv_file} ({n} rows)")
        self._paths, self._rows = self._paths[idx], self._rows[idx]
        t = torch.from_numpy(idx)
        self._target, self._mask = self._target[t], self._mask[t]

    def subset(self, indices: Sequence[int], *, transform: Transform | None = None) -> "CheXpert":
        """A view on some of this dataset's items (positions in this dataset), with its own transform."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.transform = transform
        out._select(indices)
        return out

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def targets(self) -> torch.Tensor:
        """``(N, T)`` float32 targets of all items (no image reading)."""
        return self._target

    @property
    def target_masks(self) -> torch.Tensor:
        """``(N, T)`` bool masks of all items (``False`` = not counted)."""
        return self._mask

    @property
    def paths(self) -> list[str]:
        """CSV ``Path`` of every item."""
        return [p.decode("utf-8") for p in self._paths.tolist()]

    @property
    def studies(self) -> list[str]:
        """Study id of every item (see :func:`study_id`)."""
        return [study_id(p) for p in self.paths]

    def image_file(self, i: int) -> Path:
        """The resolved image file of item ``i``."""
        return resolve_chexpert_path(self.root, self._paths[i].decode("utf-8"))

    def _item(self, index: int) -> dict:
        row, path = int(self._rows[index]), self._paths[index].decode("utf-8")
        image = read_image(
            self.image_file(index), channels=1, where=f"{self.csv_file} row {row}"
        )
        return {
            "image": image,
            "target": self._target[index].clone(),
            "target_mask": self._mask[index].clone(),
            "meta": {"row": row, "path": path, "study": study_id(path)},
        }

    def __repr__(self) -> str:
        return (
            f"CheXpert(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"label_policy={self.label_policy!r}, transform={self.transform!r})"
        )


@dataclass(frozen=True)
class CheXpertSplits:
    """The paper's three CheXpert sets.

    Attributes:
        train: 70 % of ``train.csv`` with random crops (156,389 images).
        val: the other 30 % at full size (67,025 images), for hyper-parameters.
        test: ``valid.csv`` at full size (234 images, 200 studies), or ``None`` when absent.
    """

    train: CheXpert
    val: CheXpert
    test: CheXpert | None


def chexpert_splits(
    root: str | os.PathLike,
    *,
    label_policy: str = "u-ignore",
    seed: int = 138,
    train_fraction: float = 0.7,
    crop_size: int = 320,
    tasks: Sequence[str] = TASKS,
    csv_file: str | os.PathLike | None = None,
) -> CheXpertSplits:
    """Build the paper's train / validation / test sets.

    ``train.csv`` rows are split with :func:`explainfix.data.split_indices` (``random_split``,
    ``torch.Generator().manual_seed(138)``, ``int(0.7 * 223414) = 156389`` first). The split is
    over CSV row order, so it is the same on every machine.

    Args:
        root: the ``CheXpert-v1.0-small`` folder.
        label_policy: see :data:`LABEL_POLICIES`.
        seed, train_fraction: the split (paper: 138, 0.7).
        crop_size: random crop for training (paper: 320).
        tasks: label columns.
        csv_file: alternative path of ``train.csv``.
    """
    full = CheXpert(root, "train", label_policy=label_policy, tasks=tasks, csv_file=csv_file)
    train_idx, val_idx = split_indices(len(full), train_fraction, seed)
    test = None
    if (Path(root) / "valid.csv").is_file():
        test = CheXpert(root, "valid", label_policy=label_policy, tasks=tasks)
    return CheXpertSplits(
        train=full.subset(train_idx, transform=chexpert_train_transform(crop_size)),
        val=full.subset(val_idx),
        test=test,
    )
