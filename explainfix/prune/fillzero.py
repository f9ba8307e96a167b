"""FillZero (ChannelPrune step 5): re-initialise the zeros left in spatial kernels.

* ``"fillzero"`` (the paper): every entirely zero spatial kernel gets Kaiming
  uniform values; every remaining exact-zero weight inside a partly zero kernel gets
  Gaussian noise with that kernel's mean and variance.
* ``"reset"``: only entirely zero kernels are re-initialised (Kaiming uniform).
* ``"none"``: nothing changes.

Kaiming uniform uses PyTorch's default for convolutions, ``kaiming_uniform_(w,
a=sqrt(5))`` over the layer's weight shape, so a re-initialised kernel is distributed
like one of a freshly built layer.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..spatial import spatial_convs

__all__ = ["FILLS", "fill_zeros"]

FILLS = ("fillzero", "reset", "none")


@torch.no_grad()
def fill_zeros(model: nn.Module, fill: str = "fillzero", *, generator: torch.Generator | None = None) -> int:
    """Re-initialise zero spatial weights of every spatial conv in place.

    Args:
        model: Any module; only its spatial convolutions are touched.
        fill: ``"fillzero"``, ``"reset"`` or ``"none"``.
        generator: CPU ``torch.Generator`` for reproducible values.

    Returns:
        The number of weights written.

    Example:
        >>> conv = nn.Conv2d(2, 2, 3)
        >>> _ = conv.weight.data.zero_()
        >>> fill_zeros(nn.Sequential(conv), "reset", generator=torch.Generator().manual_seed(0))
        36
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if fill == "none":
        return 0
    written = 0
    for _, conv in spatial_convs(model):
        w = conv.weight
        flat = w.detach().flatten(2)  # (a, b, k)
        zero = flat.eq(0)
        dead = zero.all(-1)  # entire kernels
        if dead.any():
            fresh = torch.empty(w.shape, dtype=torch.float64)
            _kaiming_uniform(fresh, generator)
            fresh = fresh.to(dtype=w.dtype).flatten(2).to(w.device)
            flat = torch.where(dead[..., None], fresh, flat)
            written += int(dead.sum()) * flat.shape[-1]
        if fill == "fillzero":
            partial = zero & ~dead[..., None]
            if partial.any():
                src = w.detach().flatten(2).to(torch.float64)
                mean = src.mean(-1, keepdim=True)
                std = src.var(-1, unbiased=False, keepdim=True).sqrt()
                noise = torch.randn(src.shape, generator=generator, dtype=torch.float64)
                noise = (mean.cpu() + std.cpu() * noise).to(dtype=w.dtype, device=w.device)
                flat = torch.where(partial, noise, flat)
                written += int(partial.sum())
        w.copy_(flat.view_as(w))
    return written


def _kaiming_uniform(t: torch.Tensor, generator: torch.Generator | None) -> None:
    # same bound as nn.init.kaiming_uniform_(t, a=sqrt(5)) for a conv weight, drawn from `generator`
    fan_in = t.shape[1] * math.prod(t.shape[2:])
    gain = math.sqrt(2.0 / (1 + 5.0))
    bound = gain * math.sqrt(3.0 / max(fan_in, 1))
    t.uniform_(-bound, bound, generator=generator)
