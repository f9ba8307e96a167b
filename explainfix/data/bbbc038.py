"""BBBC038v1 (Kaggle Data Science Bowl 2018) nuclei as binary semantic segmentation.

Layout expected under ``root`` (the unzipped Kaggle / Broad release)::

    root/stage1_train/<id>/images/<id>.png        670 training images
    root/stage1_train/<id>/masks/<nucleus>.png    one binary PNG per nucleus
    root/stage1_test/<id>/images/<id>.png         65 stage-1 test images
    root/stage1_solution.csv                      their labels (RLE, one row per nucleus)
    root/stage2_test_final/<id>/images/<id>.png   3,019 stage-2 test images ...
    root/stage2_solution_final.csv                ... of which 106 are annotated

Solution CSVs have the columns ``ImageId, EncodedPixels, Height, Width, Usage``
(``stage1_train_labels.csv`` only the first two). ``EncodedPixels`` is a Kaggle RLE (see
:mod:`explainfix.data.rle`). In ``stage2_solution_final.csv`` the images that were not
scored carry ``Usage == "Ignored"`` and no real annotation: their rows are dropped (only
``usage=("Public", "Private")`` rows are kept), which leaves the 106 annotated images the
paper uses as its out-of-distribution test set.

Conventions:

* images and per-nucleus masks may be PNG (as released) or TIFF (``.tif`` / ``.tiff``);
* instance masks (per-nucleus PNGs or RLE rows) are merged by union into one binary mask;
* images are read as RGB, 3 channels (an alpha channel is dropped, grey is repeated), the
  input U-NetD takes; scaled to ``[0, 1]`` then shifted per image to mean 0.5
  (``x - x.mean() + 0.5``, mean over pixels and channels, not clipped);
* training uses :func:`explainfix.data.transforms.bbbc038_train_transform` (random 256 x 256
  crop, one of four flips, noise with p = 0.8), evaluation the full image at batch size 1.

Each item is a dict::

    {"image": (3, H, W) float32, "target": (1, H, W) float32 in {0, 1},
     "target_mask": (1, H, W) bool (False only where a crop padded the image),
     "meta": {"id": image id, "path": image file}}

Example:
    >>> train = BBBC038v1("data/BBBC038v1", "stage1_train", transform=bbbc038_train_transform())  # doctest: +SKIP
    >>> test = BBBC038v1("data/BBBC038v1", "stage2_test")
    >>> len(train), len(test)
    (670, 106)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .images import read_image, read_mask
from .loaders import ItemDataset, check_index
from .rle import rle_decode_union
from .transforms import Transform, center_mean

__all__ = ["BBBC038v1", "BBBC038_SPLITS", "read_solution_csv"]

#: file endings of images and nucleus masks (PNG as in the Kaggle release, or TIFF)
_IMAGE_SUFFIXES = (".png", ".tif", ".tiff")

#: split name -> (image folder, default label CSV or None for per-nucleus PNG masks)
BBBC038_SPLITS: dict[str, tuple[str, str | None]] = {
    "stage1_train": ("stage1_train", None),
    "stage1_test": ("stage1_test", "stage1_solution.csv"),
    "stage2_test": ("stage2_test_final", "stage2_solution_final.csv"),
}


def read_solution_csv(
    csv_file: str | os.PathLike, usage: Sequence[str] | None = ("Public", "Private")
) -> pd.DataFrame:
    """Read a Kaggle DSB 2018 label / solution CSV.

    Args:
        csv_file: ``stage1_solution.csv``, ``stage2_solution_final.csv`` or ``stage1_train_labels.csv``.
        usage: keep rows whose ``Usage`` is in this list (ignored when the column is absent);
            ``None`` keeps all rows.

    Returns:
        The kept rows with a ``row`` column holding each row's 0-based position in the file.

    Raises:
        FileNotFoundError: no such file. ``ValueError``: ``ImageId`` / ``EncodedPixels``
        missing, or ``Height`` / ``Width`` not positive integers (naming the row).
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"BBBC038v1 label file not found: {csv_file}")
    try:
        frame = pd.read_csv(csv_file, dtype={"ImageId": str, "EncodedPixels": str, "Usage": str})
    except Exception as exc:
        raise ValueError(f"cannot read BBBC038v1 CSV {csv_file}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]  # stage1_train_labels.csv has " EncodedPixels" in some copies
    missing = [c for c in ("ImageId", "EncodedPixels") if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_file} lacks the columns {missing}; found {list(frame.columns)}")
    frame["row"] = np.arange(len(frame))
    for col in ("Height", "Width"):
        if col in frame.columns:
            values = pd.to_numeric(frame[col], errors="coerce")
            bad = values.isna() | (values < 1) | (values != values.round())
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(
                    f"{csv_file}, row {row} (line {row + 2}): {col} {frame[col].iloc[row]!r} "
                    "is not a positive integer"
                )
            frame[col] = values.astype(np.int64)
    if usage is not None and "Usage" in frame.columns:
        frame = frame[frame["Usage"].isin(list(usage))]
    return frame


class BBBC038v1(ItemDataset):
    """BBBC038v1 nuclei images with binary (union of instances) masks.

    Args:
        root: folder holding ``stage1_train/``, ``stage1_solution.csv``, ... (see module doc).
        split: ``"stage1_train"``, ``"stage1_test"`` or ``"stage2_test"``.
        indices: keep only these images (positions in the split's sorted id list), in this order.
        transform: ``(item, generator) -> item``; the paper's training augmentation is
            :func:`explainfix.data.transforms.bbbc038_train_transform`. ``None`` = full size.
        mean: per-image mean after centring (paper: 0.5); ``None`` keeps values in ``[0, 1]``.
        labels_csv: take the labels from this RLE CSV instead of the split's default
            (e.g. ``stage1_train_labels.csv`` for ``stage1_train``, faster than the PNGs).
        usage: ``Usage`` values kept from solution CSVs; ``None`` keeps every row.

    Raises:
        FileNotFoundError: missing folder, label CSV or image (naming the CSV row).
        ValueError: bad CSV columns, an image without masks, a mask of another size, a
            ``Height`` / ``Width`` that disagrees with the image, or an RLE that runs off the
            image (naming file and row). Image-level problems surface when the item is read.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "stage1_train",
        *,
        indices: Sequence[int] | None = None,
        transform: Transform | None = None,
        mean: float | None = 0.5,
        labels_csv: str | os.PathLike | None = None,
        usage: Sequence[str] | None = ("Public", "Private"),
    ):
        if split not in BBBC038_SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {sorted(BBBC038_SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.mean = mean
        folder, default_csv = BBBC038_SPLITS[split]
        self.folder = self.root / folder
        if not self.folder.is_dir():
            raise FileNotFoundError(f"BBBC038v1 folder not found: {self.folder}")
        csv = labels_csv if labels_csv is not None else (None if default_csv is None else self.root / default_csv)
        self.labels_csv = None if csv is None else Path(csv)
        if self.labels_csv is None:
            self._ids = sorted(p.name for p in self.folder.iterdir() if p.is_dir())
            self._rles: dict[str, pd.DataFrame] = {}
            for image_id in self._ids:
                if not self._image_file(image_id).is_file():
                    raise FileNotFoundError(f"image file not found: {self._image_file(image_id)}")
        else:
            frame = read_solution_csv(self.labels_csv, usage)
            self._rles = {k: g for k, g in frame.groupby("ImageId", sort=True)}
            self._ids = sorted(self._rles)
            for image_id in self._ids:
                if not self._image_file(image_id).is_file():
                    row = int(self._rles[image_id]["row"].iloc[0])
                    raise FileNotFoundError(
                        f"image file not found: {self._image_file(image_id)} "
                        f"(ImageId of {self.labels_csv} row {row})"
                    )
        if not self._ids:
            raise ValueError(f"no images found for split {split!r} under {self.root}")
        if indices is not None:
            n = len(self._ids)
            if any(not 0 <= int(i) < n for i in indices):
                raise IndexError(f"indices must lie in [0, {n}) for split {split!r}")
            self._ids = [self._ids[int(i)] for i in indices]

    def _image_file(self, image_id: str) -> Path:
        """``images/<id>.png``, or ``<id>.tif`` / ``<id>.tiff`` when there is no PNG (the PNG path if none exists)."""
        folder = self.folder / image_id / "images"
        for suffix in _IMAGE_SUFFIXES:
            candidate = folder / f"{image_id}{suffix}"
            if candidate.is_file():
                return candidate
        return folder / f"{image_id}.png"

    @property
    def ids(self) -> list[str]:
        """Image ids, in item order."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def _mask_from_pngs(self, image_id: str, shape: tuple[int, int]) -> torch.Tensor:
        mask_dir = self.folder / image_id / "masks"
        files = sorted(p for p in mask_dir.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
                       and not p.name.startswith(".")) if mask_dir.is_dir() else []
        if not files:
            raise ValueError(f"no nucleus masks (masks/*.png, *.tif, *.tiff) for image {image_id} in {mask_dir}")
        merged = torch.zeros(shape, dtype=torch.bool)
        for f in files:
            m = read_mask(f, where=f"mask of image {image_id}")
            if tuple(m.shape) != shape:
                raise ValueError(f"mask {f} has size {tuple(m.shape)} but its image has {shape}")
            merged |= m
        return merged

    def _mask_from_rles(self, image_id: str, shape: tuple[int, int]) -> torch.Tensor:
        rows = self._rles[image_id]
        for col in ("Height", "Width"):
            if col in rows.columns:
                expected = shape[0] if col == "Height" else shape[1]
                wrong = rows[col].to_numpy() != expected
                if wrong.any():
                    row = int(rows["row"].to_numpy()[np.argmax(wrong)])
                    raise ValueError(
                        f"{self.labels_csv}, row {row}: {col} {int(rows[col].to_numpy()[np.argmax(wrong)])} "
                        f"but image {self._image_file(image_id)} has size {shape}"
                    )
        merged = rle_decode_union(
            rows["EncodedPixels"].tolist(), shape, source=str(self.labels_csv), rows=rows["row"].tolist()
        )
        return torch.from_numpy(merged)

    def mask(self, i: int) -> torch.Tensor:
        """Merged binary mask of item ``i`` as ``bool (H, W)``, without reading the transform."""
        image_id = self._ids[check_index(i, len(self), "BBBC038v1")]
        image = read_image(self._image_file(image_id), channels=3)
        return self._merged_mask(image_id, tuple(image.shape[-2:]))

    def _merged_mask(self, image_id: str, shape: tuple[int, int]) -> torch.Tensor:
        if self.labels_csv is None:
            return self._mask_from_pngs(image_id, shape)
        return self._mask_from_rles(image_id, shape)

    def _item(self, index: int) -> dict:
        image_id = self._ids[index]
        path = self._image_file(image_id)
        image = read_image(path, channels=3, where=f"image of {image_id}")
        mask = self._merged_mask(image_id, tuple(image.shape[-2:]))
        if self.mean is not None:
            image = center_mean(image, self.mean)
        return {
            "image": image,
            "target": mask.unsqueeze(0).float(),
            "target_mask": torch.ones((1, *mask.shape), dtype=torch.bool),
            "meta": {"id": image_id, "path": str(path)},
        }

    def __repr__(self) -> str:
        return (
            f"BBBC038v1(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"transform={self.transform!r})"
        )
