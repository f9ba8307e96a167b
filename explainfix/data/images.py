"""Reading images and masks from disk into float tensors, with errors that name the file.

Every dataset of :mod:`explainfix.data` reads files through :func:`read_image` and
:func:`read_mask`, so all of them share the same conventions:

* images become ``float32`` tensors of shape ``(C, H, W)`` with values in ``[0, 1]``
  (8-bit / 255, 16-bit / 65535, floating point kept as is and checked). A 16-bit image whose
  values all fit in fewer bits is scaled by the smallest of 8 and 12 bits that holds them
  (/ 255 or / 4095, e.g. 8-bit data saved as 16-bit TIFF) with an :class:`ImageScaleWarning`
  that names the file, instead of loading near-black;
* ``channels=1`` converts colour to grey (ITU-R 601-2 luma, as PIL's ``"L"``);
  ``channels=3`` drops an alpha channel and repeats a grey image three times;
* masks become ``bool`` tensors of shape ``(H, W)`` (``True`` where any channel is > 0);
* a missing file raises ``FileNotFoundError``, an unreadable or corrupt one ``ValueError``;
  both messages name the file and, when given, where it was referenced (``where=``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_image", "read_mask", "IMAGE_EXTENSIONS", "ImageScaleWarning"]


class ImageScaleWarning(UserWarning):
    """A 16-bit image was scaled by a smaller bit depth than 16 (its values all fit in 8 or 12 bits)."""

#: file name endings treated as images by the folder datasets
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")

_TIFF = (".tif", ".tiff")


def _context(path: str | os.PathLike, where: str | None) -> str:
    return f"{path}" + (f" ({where})" if where else "")


def _read_array(path: str | os.PathLike, where: str | None) -> np.ndarray:
    """Decode a file into a numpy array (H, W) or (H, W, C) in its stored dtype."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {_context(path, where)}")
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            array = np.asarray(tifffile.imread(path))
            if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
                array = np.moveaxis(array, 0, -1)  # (C, H, W) page layout -> (H, W, C)
            return array
        from PIL import Image

        with Image.open(path) as image:
            image.load()  # decode now so truncated files fail here
            if image.mode in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I", "F"):
                return np.asarray(image)
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "I;16N"):
                return np.asarray(image.convert("RGBA" if "A" in image.mode else "RGB"))
            raise ValueError(f"unsupported image mode {image.mode!r}")
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError (truncated), tifffile errors
        raise ValueError(f"cannot read image {_context(path, where)}: {exc}") from exc


def _sixteen_bit_scale(array: np.ndarray, path, where) -> float:
    """65535, or 255 / 4095 (with a warning) when every value of a 16-bit image fits in 8 / 12 bits."""
    top = int(array.max()) if array.size else 0
    for bits in (8, 12):
        if 0 < top <= 2**bits - 1:
            warnings.warn(
                f"16-bit image {_context(path, where)} holds values 0-{top} only: scaled by {2**bits - 1} "
                f"({bits}-bit data) instead of 65535, which would load it near-black",
                ImageScaleWarning, stacklevel=4,
            )
            return float(2**bits - 1)
    return 65535.0


def _to_unit_float(array: np.ndarray, path, where) -> np.ndarray:
    """Scale an integer / bool / float array to float32 in [0, 1]."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
        return array.astype(np.float32) / _sixteen_bit_scale(array, path, where)
    if np.issubdtype(array.dtype, np.integer):
        # PIL reads 16-bit PNGs as mode "I" (int32)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(
                f"image {_context(path, where)} has integer values outside [0, 65535] "
                f"(dtype {array.dtype}); convert it to 8 or 16 bit"
            )
        return array.astype(np.float32) / _sixteen_bit_scale(array, path, where)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 1):
            raise ValueError(
                f"floating-point image {_context(path, where)} must hold finite values in [0, 1]; "
                f"found range [{np.nanmin(array):g}, {np.nanmax(array):g}]"
            )
        return array
    raise ValueError(f"image {_context(path, where)} has unsupported dtype {array.dtype}")


def _set_channels(array: np.ndarray, channels: int | None, path, where) -> np.ndarray:
    """(H, W) or (H, W, C) float array -> (C', H, W) with the requested channel count."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"image {_context(path, where)} has shape {array.shape}; expected 2-D")
    c = array.shape[-1]
    if c in (2, 4):  # grey + alpha, RGB + alpha: drop alpha
        array = array[..., : c - 1]
        c -= 1
    if channels is None or channels == c:
        pass
    elif channels == 3 and c == 1:
        array = np.repeat(array, 3, axis=-1)
    elif channels == 1 and c == 3:
        # ITU-R 601-2 luma, the transform PIL's convert("L") applies
        array = array @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        array = array[..., None]
    else:
        raise ValueError(
            f"image {_context(path, where)} has {c} channels; cannot convert to {channels}"
        )
    return np.ascontiguousarray(np.moveaxis(array, -1, 0))


def read_image(path: str | os.PathLike, *, channels: int | None = None, where: str | None = None) -> torch.Tensor:
    """Read an image file as a float tensor in ``[0, 1]``.

    Args:
        path: image file (PNG, JPEG, BMP, GIF, WebP via Pillow; TIFF via tifffile).
        channels: 1 (grey), 3 (RGB) or ``None`` to keep the stored channels (alpha dropped).
        where: where the file was referenced (e.g. ``"train.csv row 12"``), added to errors.

    Returns:
        ``float32`` tensor of shape ``(C, H, W)`` with values in ``[0, 1]``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image (corrupt, truncated, unsupported).

    Example:
        >>> x = read_image("scan.png", channels=1)  # doctest: +SKIP
        >>> x.shape, x.dtype
        (torch.Size([1, 320, 390]), torch.float32)
    """
    array = _read_array(path, where)
    array = _to_unit_float(array, path, where)
    return torch.from_numpy(_set_channels(array, channels, path, where))


def read_mask(path: str | os.PathLike, *, where: str | None = None) -> torch.Tensor:
    """Read a mask file as a ``bool`` tensor of shape ``(H, W)``: ``True`` where any channel > 0.

    An alpha channel is ignored. Raises like :func:`read_image`.
    """
    array = _read_array(path, where)
    if array.ndim == 3:
        if array.shape[-1] in (2, 4):
            array = array[..., :-1]
        array = array.any(axis=-1) if array.dtype == np.bool_ else (array > 0).any(axis=-1)
    elif array.ndim != 2:
        raise ValueError(f"mask {_context(path, where)} has shape {array.shape}; expected 2-D")
    return torch.from_numpy(np.ascontiguousarray(array > 0))
