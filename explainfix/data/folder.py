"""Your own data: a class-per-folder dataset and a CSV dataset (classification or segmentation).

Both follow the conventions of :mod:`explainfix.data`: images as ``float32 (C, H, W)`` in
``[0, 1]`` (``channels`` 1 or 3), items as dicts with ``image``, ``target``,
``target_mask`` and ``meta``, seeded transforms ``(item, generator) -> item``, and errors
that name the file (and CSV row).

Example:
    >>> ds = ImageFolderDataset("data/xrays", channels=1, transform=RandomCrop(224))  # doctest: +SKIP
    >>> ds.classes
    ['normal', 'pneumonia']
    >>> seg = CSVDataset("data/cells.csv", path_column="image", mask_column="mask", channels=3)
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .images import IMAGE_EXTENSIONS, read_image, read_mask
from .loaders import ItemDataset
from .transforms import Transform

__all__ = ["ImageFolderDataset", "CSVDataset"]


class ImageFolderDataset(ItemDataset):
    """Single-label classification from ``root/<class name>/<image>``.

    Classes are the sub-folder names in sorted order (or ``classes``); images are the files
    ending in one of ``extensions`` directly inside each class folder, in sorted order.

    Items: ``image (C, H, W)``, ``target`` int64 class index (for ``CrossEntropyLoss``),
    ``target_mask`` a ``True`` scalar, ``meta = {"path": str, "class": str}``.

    Args:
        root: the folder of class folders.
        channels: 1 (grey) or 3 (RGB).
        transform: ``(item, generator) -> item`` (e.g. ``RandomCrop(224)``).
        extensions: file endings counted as images (case-insensitive).
        classes: use these class folders, in this order, instead of all sub-folders.

    Raises:
        FileNotFoundError: ``root`` or a named class folder is missing.
        ValueError: no class folders, or a class folder without images.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        channels: int = 1,
        transform: Transform | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        classes: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if classes is None:
            classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise ValueError(f"{self.root} has no class sub-folders (expected root/<class>/<image>)")
        self.classes = list(classes)
        self.channels = channels
        self.transform = transform
        ext = tuple(e.lower() for e in extensions)
        files, labels = [], []
        for k, name in enumerate(self.classes):
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder not found: {folder}")
            found = sorted(
                p for p in folder.iterdir()
                if p.is_file() and p.suffix.lower() in ext and not p.name.startswith(".")
            )
            if not found:
                raise ValueError(f"class folder {folder} holds no images ({', '.join(ext)})")
            files += [str(p) for p in found]
            labels += [k] * len(found)
        self._files = np.array(files, dtype=str)
        self._labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def targets(self) -> torch.Tensor:
        """Class index of every item."""
        return self._labels

    def _item(self, index: int) -> dict:
        path = str(self._files[index])
        label = self._labels[index]
        return {
            "image": read_image(path, channels=self.channels),
            "target": label.clone(),
            "target_mask": torch.tensor(True),
            "meta": {"path": path, "class": self.classes[int(label)]},
        }


class CSVDataset(ItemDataset):
    """Images listed in a CSV, with label columns (multi-label) or a mask column (segmentation).

    Args:
        csv_file: the CSV.
        root: folder that relative paths in the CSV start from; default the CSV's folder.
        path_column: column with image paths.
        label_columns: numeric label columns -> ``target (L,)`` float32; an empty cell is
            left out (``target`` 0, ``target_mask`` ``False``).
        label_policy: what a label of ``-1`` (CheXpert's "uncertain") becomes:
            ``"u-ignore"`` (default, as :class:`~explainfix.data.CheXpertDataset`): left out
            (``target`` 0, ``target_mask`` ``False``); ``"u-zeros"``: 0; ``"u-ones"``: 1;
            ``"keep"``: a target of -1 that counts (for labels where -1 is a real value).
        mask_column: column with mask image paths -> ``target (1, H, W)`` float32 in {0, 1}
            (pixels > 0 are foreground); give this or ``label_columns``.
        channels: 1 (grey) or 3 (RGB).
        transform: ``(item, generator) -> item``; crops and flips also move a mask target.

    Items: ``image``, ``target``, ``target_mask``, ``meta = {"row": int, "path": str}``.

    Raises:
        FileNotFoundError: missing CSV (at construction) or image / mask (when read, naming the row).
        ValueError: missing columns, a row with more (or fewer) fields than the header, a
            non-numeric label, an empty path, an unknown ``label_policy``, or a mask whose size
            differs from its image (naming file and row).
    """

    LABEL_POLICIES = ("u-ignore", "u-zeros", "u-ones", "keep")

    def __init__(
        self,
        csv_file: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        path_column: str = "path",
        label_columns: Sequence[str] | None = None,
        mask_column: str | None = None,
        channels: int = 1,
        transform: Transform | None = None,
        label_policy: str = "u-ignore",
    ):
        self.csv_file = Path(csv_file)
        if not self.csv_file.is_file():
            raise FileNotFoundError(f"CSV file not found: {self.csv_file}")
        if label_policy not in self.LABEL_POLICIES:
            raise ValueError(f"unknown label_policy {label_policy!r}; choose one of {list(self.LABEL_POLICIES)}")
        self.label_policy = label_policy
        _check_field_counts(self.csv_file)
        if (label_columns is None) == (mask_column is None):
            raise ValueError("give exactly one of label_columns (classification) or mask_column (segmentation)")
        self.root = Path(root) if root is not None else self.csv_file.parent
        self.channels = channels
        self.transform = transform
        self.label_columns = None if label_columns is None else list(label_columns)
        self.mask_column = mask_column
        try:
            frame = pd.read_csv(self.csv_file, dtype={path_column: str} | ({mask_column: str} if mask_column else {}))
        except Exception as exc:
            raise ValueError(f"cannot read CSV {self.csv_file}: {exc}") from exc
        wanted = [path_column] + (self.label_columns or []) + ([mask_column] if mask_column else [])
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(f"{self.csv_file} lacks the columns {missing}; found {list(frame.columns)}")
        for col in [path_column] + ([mask_column] if mask_column else []):
            empty = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
            if empty.any():
                row = int(np.flatnonzero(empty.to_numpy())[0])
                raise ValueError(f"{self.csv_file}, row {row} (line {row + 2}): empty {col!r}")
        self._paths = frame[path_column].to_numpy(dtype=str)
        self._masks = frame[mask_column].to_numpy(dtype=str) if mask_column else None
        if self.label_columns is not None:
            values = np.empty((len(frame), len(self.label_columns)), np.float32)
            for j, col in enumerate(self.label_columns):
                numeric = pd.to_numeric(frame[col], errors="coerce")
                bad = frame[col].notna() & (numeric.isna() | ~np.isfinite(numeric.fillna(0)))
                if bad.any():
                    row = int(np.flatnonzero(bad.to_numpy())[0])
                    raise ValueError(
                        f"{self.csv_file}, row {row} (line {row + 2}), column {col!r}: "
                        f"label {frame[col].iloc[row]!r} is not a number"
                    )
                values[:, j] = numeric.to_numpy(np.float32)
            uncertain = values == -1
            if label_policy == "u-ignore":
                values[uncertain] = np.nan
            elif label_policy in ("u-zeros", "u-ones"):
                values[uncertain] = 0.0 if label_policy == "u-zeros" else 1.0
            present = ~np.isnan(values)
            self._target = torch.from_numpy(np.where(present, values, 0.0).astype(np.float32))
            self._target_mask = torch.from_numpy(present)

    def __len__(self) -> int:
        return len(self._paths)

    def _file(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    def _item(self, index: int) -> dict:
        where = f"{self.csv_file} row {index}"
        path = self._file(str(self._paths[index]))
        image = read_image(path, channels=self.channels, where=where)
        if self._masks is not None:
            mask_file = self._file(str(self._masks[index]))
            mask = read_mask(mask_file, where=where)
            if tuple(mask.shape) != tuple(image.shape[-2:]):
                raise ValueError(
                    f"mask {mask_file} ({where}) has size {tuple(mask.shape)} but image {path} "
                    f"has {tuple(image.shape[-2:])}"
                )
            target = mask.unsqueeze(0).float()
            target_mask = torch.ones_like(target, dtype=torch.bool)
        else:
            target, target_mask = self._target[index].clone(), self._target_mask[index].clone()
        return {
            "image": image,
            "target": target,
            "target_mask": target_mask,
            "meta": {"row": index, "path": str(path)},
        }


def _check_field_counts(csv_file: Path) -> None:
    """Refuse a row with more or fewer fields than the header (pandas would shift its columns)."""
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return
            for row, fields in enumerate(reader):
                if not fields:  # a blank line
                    continue
                if len(fields) != len(header):
                    more = "more" if len(fields) > len(header) else "fewer"
                    raise ValueError(
                        f"{csv_file}, row {row} (line {reader.line_num}): {len(fields)} fields, {more} than the "
                        f"header's {len(header)} (an unquoted comma?); quote the field or fix the row"
                    )
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read CSV {csv_file}: {exc}") from exc


def csv_target_columns(csv_file: str | os.PathLike) -> dict:
    """How a CSV's columns become targets: ``{"mask_column": "mask"}`` or ``{"label_columns": [...]}``.

    A ``path`` column is required; a ``mask`` column means segmentation, otherwise every other
    column is a label (multi-label). The result is keyword arguments of :class:`CSVDataset`.

    Raises:
        FileNotFoundError: no such file. ValueError: no ``path`` column, or nothing else.
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"CSV file not found: {csv_file}")
    columns = [str(c) for c in pd.read_csv(csv_file, nrows=0).columns]
    if "path" not in columns:
        raise ValueError(f"{csv_file} needs a 'path' column; found {columns}")
    others = [c for c in columns if c != "path"]
    if "mask" in others:
        return {"mask_column": "mask"}
    if others:
        return {"label_columns": others}
    raise ValueError(f"{csv_file} has a 'path' column but no 'mask' or label columns")
