"""Real reference files that ship inside PyPI wheels, read straight from the wheel zips.

``make test-data`` downloads the wheels into ``.cache/wheels`` (or set ``EXPLAINFIX_WHEELS``
to another folder). Tests that need a file skip, saying how to get it, when it is absent.
Nothing is installed or imported from the wheels.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

CHEXPERT_WHEEL = "torchxrayvision-1.5.7-*.whl"
CHEXPERT_MEMBER = "torchxrayvision/data/chexpert_train.csv.gz"
STARDIST_WHEEL = "stardist-0.9.2-*.whl"
STARDIST_IMAGE = "stardist/data/images/img2d.tif"
STARDIST_MASK = "stardist/data/images/mask2d.tif"

_HOW = "run `make test-data` (pip download --no-deps --only-binary=:all: -d .cache/wheels torchxrayvision==1.5.7 stardist==0.9.2)"


def wheel_dirs() -> list[Path]:
    dirs = [REPO / ".cache" / "wheels"]
    if os.environ.get("EXPLAINFIX_WHEELS"):
        dirs.insert(0, Path(os.environ["EXPLAINFIX_WHEELS"]))
    return dirs


def find_wheel(pattern: str) -> Path | None:
    for d in wheel_dirs():
        found = sorted(d.glob(pattern)) if d.is_dir() else []
        if found:
            return found[0]
    return None


def read_member(pattern: str, member: str) -> bytes:
    """Bytes of ``member`` inside the first wheel matching ``pattern``; skip the test if absent."""
    wheel = find_wheel(pattern)
    if wheel is None:
        pytest.skip(f"reference wheel {pattern} not found in {[str(d) for d in wheel_dirs()]}; {_HOW}")
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            pytest.skip(f"{member} not inside {wheel.name}")


def chexpert_train_csv_gz() -> bytes:
    """The real CheXpert ``train.csv`` (223,414 rows), gzip-compressed."""
    return read_member(CHEXPERT_WHEEL, CHEXPERT_MEMBER)


def dsb2018_image_and_instances() -> tuple[np.ndarray, np.ndarray]:
    """One real DSB 2018 image (512 x 512, uint16, max 235) and its instance label image (125 nuclei)."""
    import tifffile

    image = tifffile.imread(io.BytesIO(read_member(STARDIST_WHEEL, STARDIST_IMAGE)))
    labels = tifffile.imread(io.BytesIO(read_member(STARDIST_WHEEL, STARDIST_MASK)))
    return np.asarray(image), np.asarray(labels)
