"""One real DSB 2018 (BBBC038v1) nucleus image, for the demo and for tests: ``nuclei-demo``.

The PyPI wheel ``stardist==0.9.2`` ships a 512 x 512 fluorescence image of the Kaggle Data
Science Bowl 2018 with its 125-nucleus instance mask (``stardist/data/images/img2d.tif``,
``mask2d.tif``). ``make demo`` / ``make test-data`` download the wheel (without installing
it) into ``.cache/wheels``; the two TIFFs are read straight from the zip with tifffile.
The wheel is searched in ``$EXPLAINFIX_WHEELS``, the project's ``.cache/wheels`` and
``~/.cache/explainfix/wheels``.

Regions (rows x columns, pixels):

* **training** region: all 512 rows, columns 0-351; random 128 x 128 crops with the paper's
  BBBC038v1 augmentation (one of four flips, then with p = 0.8 noise ``N(0,1)/U(5,10)``,
  clipped to [0, 1]);
* **held-out** region: all 512 rows, columns 384-511, evaluated whole (validation and test);
  columns 352-383 are a gap so that no training crop touches the held-out pixels.

The image (uint16, values 0-235) is scaled by its own maximum to [0, 1], then shifted to mean
0.5 as in the paper, and repeated to 3 channels (U-NetD's input); the target is the union of
the instance masks.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .loaders import ItemDataset
from .transforms import Transform, bbbc038_train_transform, center_mean

__all__ = ["find_demo_wheel", "load_nuclei_image", "NucleiRegion", "TRAIN_COLUMNS", "HELD_OUT_COLUMNS",
           "STARDIST_WHEEL", "NucleiImageMissing"]

STARDIST_WHEEL = "stardist-0.9.2-*.whl"
_IMAGE, _MASK = "stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif"
#: column ranges ``[start, stop)`` of the two disjoint regions
TRAIN_COLUMNS = (0, 352)
HELD_OUT_COLUMNS = (384, 512)
HOW = "run `make test-data` (pip download --no-deps --only-binary=:all: -d .cache/wheels stardist==0.9.2)"


class NucleiImageMissing(FileNotFoundError):
    """The stardist wheel holding the demo image was not found."""


def wheel_dirs() -> list[Path]:
    """Where the wheel is looked for, in order."""
    dirs = []
    if os.environ.get("EXPLAINFIX_WHEELS"):
        dirs.append(Path(os.environ["EXPLAINFIX_WHEELS"]))
    dirs.append(Path(__file__).resolve().parents[2] / ".cache" / "wheels")  # a source checkout
    dirs.append(Path.home() / ".cache" / "explainfix" / "wheels")
    return dirs


def find_demo_wheel() -> Path | None:
    """The stardist wheel, or None."""
    for folder in wheel_dirs():
        found = sorted(folder.glob(STARDIST_WHEEL)) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def load_nuclei_image() -> tuple[torch.Tensor, torch.Tensor]:
    """``(image (3, 512, 512) float32 with mean 0.5, mask (1, 512, 512) float32 in {0, 1})``.

    Raises:
        NucleiImageMissing: the wheel is not in any of :func:`wheel_dirs` (says how to get it).
    """
    import tifffile

    wheel = find_demo_wheel()
    if wheel is None:
        raise NucleiImageMissing(f"{STARDIST_WHEEL} not found in {[str(d) for d in wheel_dirs()]}; {HOW}")
    with zipfile.ZipFile(wheel) as z:
        raw = np.asarray(tifffile.imread(io.BytesIO(z.read(_IMAGE))), dtype=np.float32)
        labels = np.asarray(tifffile.imread(io.BytesIO(z.read(_MASK))))
    image = torch.from_numpy(raw / max(float(raw.max()), 1.0))
    image = center_mean(image.expand(3, *image.shape).contiguous())
    mask = torch.from_numpy((labels > 0).astype(np.float32)).unsqueeze(0)
    return image, mask


class NucleiRegion(ItemDataset):
    """One region of the demo image as a dataset of ``n`` items (training: each a random crop).

    Args:
        image, mask: from :func:`load_nuclei_image`.
        columns: ``(start, stop)`` of the region.
        n: items per pass (e.g. crops per epoch); evaluation uses ``n=1`` and no transform.
        transform: augmentation (crops draw from each item's seeded generator).
    """

    def __init__(self, image: torch.Tensor, mask: torch.Tensor, columns: tuple[int, int], *, n: int = 1,
                 transform: Transform | None = None):
        a, b = columns
        self.image, self.mask = image[..., a:b].contiguous(), mask[..., a:b].contiguous()
        self.columns, self.n, self.transform = columns, int(n), transform

    def __len__(self) -> int:
        return self.n

    def _item(self, index: int) -> dict:
        return {"image": self.image.clone(), "target": self.mask.clone(),
                "target_mask": torch.ones_like(self.mask, dtype=torch.bool),
                "meta": {"columns": list(self.columns)}}


def training_region(image, mask, *, crops: int, size: int = 128) -> NucleiRegion:
    """The training region as ``crops`` random ``size`` crops per pass, with the paper's augmentation."""
    return NucleiRegion(image, mask, TRAIN_COLUMNS, n=crops, transform=bbbc038_train_transform(size))


def held_out_region(image, mask) -> NucleiRegion:
    """The held-out region, whole."""
    return NucleiRegion(image, mask, HELD_OUT_COLUMNS)
