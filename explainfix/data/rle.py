"""Run-length encoding of binary masks, as used by the Kaggle Data Science Bowl 2018 (BBBC038v1).

An RLE string is a space-separated list of ``start length`` pairs. Pixels are numbered
from 1 in column-major order: down the first column, then down the second, and so on
(pixel ``(row, col)`` of an ``H x W`` mask has number ``col * H + row + 1``).

Example:
    >>> import numpy as np
    >>> mask = np.zeros((3, 3), bool); mask[0, 1] = mask[1, 1] = True
    >>> rle_encode(mask)
    '4 2'
    >>> rle_decode("4 2", (3, 3)).nonzero()
    (array([0, 1]), array([1, 1]))
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

__all__ = ["rle_encode", "rle_decode", "rle_decode_union"]


def _where(source: str | None, row: int | None) -> str:
    parts = [p for p in (source, None if row is None else f"row {row}") if p]
    return ", ".join(parts) + ": " if parts else ""


def rle_encode(mask: np.ndarray | torch.Tensor) -> str:
    """Encode a 2-D binary mask as a Kaggle RLE string (1-indexed, column-major runs).

    Args:
        mask: ``(H, W)`` array; non-zero pixels are foreground.

    Returns:
        ``"start length start length ..."``; the empty string for an empty mask.
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D mask, got shape {mask.shape}")
    flat = np.concatenate([[False], mask.ravel(order="F") != 0, [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # 1-indexed run starts and ends (exclusive)
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.stack([starts, ends - starts], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))


def _parse(rle, n_pixels: int, source: str | None, row: int | None) -> np.ndarray:
    """Parse and validate an RLE into an (n, 2) int64 array of 0-indexed [start, end)."""
    where = _where(source, row)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return np.zeros((0, 2), np.int64)
    text = str(rle).strip()
    if not text:
        return np.zeros((0, 2), np.int64)
    try:
        numbers = [int(tok) for tok in text.split()]
    except ValueError:
        raise ValueError(f"{where}RLE {text[:40]!r} is not a list of integers") from None
    big = next((v for v in numbers if not -(2**63) <= v < 2**63), None)
    if big is not None:
        raise ValueError(f"{where}RLE number {big} is too large (past int64; no image has that many pixels)")
    values = np.array(numbers, dtype=np.int64)
    if values.size % 2:
        raise ValueError(f"{where}RLE has {values.size} numbers; expected start/length pairs")
    runs = values.reshape(-1, 2)
    starts, lengths = runs[:, 0], runs[:, 1]
    if (starts < 1).any():
        raise ValueError(f"{where}RLE start {int(starts[starts < 1][0])} < 1 (runs are 1-indexed)")
    if (lengths < 1).any():
        raise ValueError(f"{where}RLE run length {int(lengths[lengths < 1][0])} < 1")
    ends = starts - 1 + lengths
    if (ends > n_pixels).any():
        k = int(np.argmax(ends > n_pixels))
        raise ValueError(
            f"{where}RLE run ({int(starts[k])}, {int(lengths[k])}) ends at pixel {int(ends[k])}, "
            f"past the image's {n_pixels} pixels"
        )
    return np.stack([starts - 1, ends], axis=1)


def rle_decode(
    rle: str, shape: Sequence[int], *, source: str | None = None, row: int | None = None
) -> np.ndarray:
    """Decode one Kaggle RLE string into a boolean mask.

    Args:
        rle: ``"start length ..."`` (1-indexed, column-major); empty / NaN gives an empty mask.
        shape: ``(H, W)`` of the image.
        source, row: the file and row the string came from, named in errors.

    Returns:
        ``bool`` array of shape ``(H, W)``.

    Raises:
        ValueError: malformed string, or a run that starts before pixel 1 or runs off the image.
    """
    return rle_decode_union([rle], shape, source=source, rows=None if row is None else [row])


def rle_decode_union(
    rles: Iterable[str],
    shape: Sequence[int],
    *,
    source: str | None = None,
    rows: Sequence[int] | None = None,
) -> np.ndarray:
    """Decode several RLE strings of one image (one per nucleus) into the union of their masks.

    Args:
        rles: RLE strings, each decoded as in :func:`rle_decode`.
        shape: ``(H, W)`` of the image.
        source: the file the strings came from, named in errors.
        rows: the row of each string in ``source``, named in errors.

    Returns:
        ``bool`` array of shape ``(H, W)``: ``True`` where any RLE covers the pixel.
    """
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"{_where(source, None)}invalid mask shape {tuple(shape)}")
    n = h * w
    rles = list(rles)
    rows = list(rows) if rows is not None else [None] * len(rles)
    runs = [_parse(r, n, source, row) for r, row in zip(rles, rows)]
    runs = np.concatenate(runs) if runs else np.zeros((0, 2), np.int64)
    delta = np.zeros(n + 1, np.int64)
    np.add.at(delta, runs[:, 0], 1)
    np.add.at(delta, runs[:, 1], -1)
    flat = np.cumsum(delta[:-1]) > 0
    return flat.reshape((h, w), order="F")
