"""Seeded transforms on dataset items.

An *item* is the dict every dataset of :mod:`explainfix.data` returns::

    {"image": (C, H, W) float32, "target": ..., "target_mask": ..., "meta": {...}}

A target with three dims ``(C, H, W)`` is *spatial* (a segmentation mask): crops, pads and
flips move it, and its ``target_mask`` (``False`` = not labelled, e.g. padding), together
with the image. Any other target (class index, multi-label vector) is left alone.

A transform is a callable ``(item, generator) -> item`` that returns a new dict and draws
all its randomness from ``generator`` (a ``torch.Generator``; ``None`` = torch's global
RNG). The datasets pass a generator seeded per item by
:class:`explainfix.data.loaders.SeededSampler`, so the same seed gives the same
augmented samples whatever the number of workers.

Example:
    >>> t = Compose([RandomCrop(256), RandomFlip4(), RandomNoise(p=0.8)])
    >>> out = t(item, torch.Generator().manual_seed(0))  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Transform",
    "is_spatial_target",
    "center_mean",
    "pad_item",
    "random_crop",
    "random_flip4",
    "random_noise",
    "RandomCrop",
    "RandomFlip4",
    "RandomNoise",
    "Compose",
    "chexpert_train_transform",
    "bbbc038_train_transform",
]

Item = dict[str, Any]
Transform = Callable[[Item, "torch.Generator | None"], Item]


def is_spatial_target(target: Any) -> bool:
    """True when ``target`` is a ``(C, H, W)`` tensor, i.e. a segmentation mask."""
    return isinstance(target, torch.Tensor) and target.dim() == 3


def _spatial_keys(item: Item) -> list[str]:
    keys = ["image"]
    if is_spatial_target(item.get("target")):
        keys.append("target")
        if "target_mask" in item:
            keys.append("target_mask")
    return keys


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


def center_mean(image: torch.Tensor, mean: float = 0.5) -> torch.Tensor:
    """Shift an image so its mean over all pixels and channels is ``mean``: ``x - x.mean() + mean``.

    The result is not clipped, so values may leave ``[0, 1]`` (as in the paper's BBBC038v1
    pre-processing, where only the noise augmentation clips).
    """
    return image - image.mean() + mean


def pad_item(item: Item, size: Sequence[int], *, center: bool = True) -> Item:
    """Zero-pad the image (and a spatial target) to at least ``size = (H, W)``.

    Padded pixels get image 0, target 0 and ``target_mask`` ``False``. ``center=True``
    splits the padding evenly between both sides (the extra pixel goes bottom / right);
    ``center=False`` pads only at the bottom and right.
    """
    h, w = item["image"].shape[-2:]
    dh, dw = max(0, int(size[0]) - h), max(0, int(size[1]) - w)
    if dh == 0 and dw == 0:
        return item
    top, left = (dh // 2, dw // 2) if center else (0, 0)
    pad = (left, dw - left, top, dh - top)
    out = dict(item)
    for key in _spatial_keys(item):
        out[key] = F.pad(item[key], pad, value=False if item[key].dtype == torch.bool else 0)
    return out


def random_crop(item: Item, size: int | Sequence[int], generator: torch.Generator | None = None) -> Item:
    """Crop a random ``size`` window (``int`` or ``(H, W)``), zero-padding smaller images first.

    The window is uniform over all positions; the image and a spatial target are cropped alike.
    """
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    item = pad_item(item, size)
    h, w = item["image"].shape[-2:]
    top = _randint(h - size[0] + 1, generator)
    left = _randint(w - size[1] + 1, generator)
    out = dict(item)
    for key in _spatial_keys(item):
        out[key] = item[key][..., top : top + size[0], left : left + size[1]]
    return out


_FLIPS = ((), (-1,), (-2,), (-2, -1))  # none, horizontal, vertical, both


def random_flip4(item: Item, generator: torch.Generator | None = None) -> Item:
    """Apply one of four flips with equal probability: none, horizontal, vertical, both."""
    dims = _FLIPS[_randint(4, generator)]
    if not dims:
        return item
    out = dict(item)
    for key in _spatial_keys(item):
        out[key] = torch.flip(item[key], dims)
    return out


def random_noise(
    item: Item,
    generator: torch.Generator | None = None,
    *,
    p: float = 0.8,
    divisor: tuple[float, float] = (5.0, 10.0),
) -> Item:
    """With probability ``p``: ``x' = clip(x + N(0, 1) / U(a, b), 0, 1)`` per pixel.

    One divisor ``U(a, b)`` is drawn per image, the normal noise per pixel and channel.
    """
    apply = torch.rand((), generator=generator).item() < p
    if not apply:
        return item
    a, b = divisor
    scale = a + (b - a) * torch.rand((), generator=generator).item()
    x = item["image"]
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return {**item, "image": (x + noise / scale).clamp_(0.0, 1.0)}


class RandomCrop:
    """Transform form of :func:`random_crop`."""

    def __init__(self, size: int | Sequence[int]):
        self.size = size

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        return random_crop(item, self.size, generator)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomFlip4:
    """Transform form of :func:`random_flip4`."""

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        return random_flip4(item, generator)

    def __repr__(self) -> str:
        return "RandomFlip4()"


class RandomNoise:
    """Transform form of :func:`random_noise`."""

    def __init__(self, p: float = 0.8, divisor: tuple[float, float] = (5.0, 10.0)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"noise probability must lie in [0, 1], got {p}")
        if not 0 < divisor[0] <= divisor[1]:
            raise ValueError(f"noise divisor range must satisfy 0 < a <= b, got {divisor}")
        self.p, self.divisor = p, tuple(divisor)

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        return random_noise(item, generator, p=self.p, divisor=self.divisor)

    def __repr__(self) -> str:
        return f"RandomNoise(p={self.p}, divisor={self.divisor})"


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        for t in self.transforms:
            item = t(item, generator)
        return item

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def chexpert_train_transform(size: int = 320) -> Transform:
    """The paper's CheXpert training augmentation: a random ``size x size`` crop."""
    return RandomCrop(size)


def bbbc038_train_transform(size: int = 256, noise_p: float = 0.8) -> Transform:
    """The paper's BBBC038v1 training augmentation.

    Random ``size x size`` crop, one of four flips, then with probability ``noise_p``
    ``clip(x + N(0, 1) / U(5, 10), 0, 1)``.
    """
    return Compose([RandomCrop(size), RandomFlip4(), RandomNoise(p=noise_p)])
