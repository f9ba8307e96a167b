"""Init methods that fill each spatial kernel from a kernel generator, and ``unchanged``."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from explainfix import kernels
from explainfix.init.registry import InitPlan, register_init

Layers = Sequence[tuple[str, nn.Module]]


def kernel_count(weight: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    """``(number of kernels, kernel shape)`` of a Conv / ConvTranspose weight.

    Conv weights are ``(out, in/groups, *k)`` and ConvTranspose weights
    ``(in, out/groups, *k)``; either way ``weight.view(-1, *k)`` enumerates the kernels.
    """
    shape = tuple(weight.shape[2:])
    return weight.numel() // math.prod(shape), shape


def _generate(layers: Layers, generate, generator: torch.Generator, **options) -> InitPlan:
    weights = {}
    for name, module in layers:
        w = module.weight
        n, shape = kernel_count(w)
        new = generate(n, shape, generator=generator, dtype=w.dtype, device=w.device, **options)
        weights[name] = new.reshape(w.shape)
    return InitPlan(weights)


@register_init("ones")
def ones(layers: Layers, *, generator: torch.Generator) -> InitPlan:
    """Every spatial weight set to one (box filters; not steered)."""
    return _generate(layers, kernels.ones_kernels, generator)


@register_init("dct2")
def dct2(layers: Layers, *, generator: torch.Generator) -> InitPlan:
    """Each kernel a random orthonormal DCT-II basis filter, the basis used evenly per layer (not steered)."""
    return _generate(layers, kernels.dct2_kernels, generator)


@register_init("ghaar")
def ghaar(layers: Layers, *, generator: torch.Generator, normalize: bool = False) -> InitPlan:
    """GHaar kernels (steered generalized Haar); ``normalize`` whitens them."""
    return _generate(layers, kernels.ghaar_kernels, generator, normalize=bool(normalize))


@register_init("psine")
def psine(
    layers: Layers, *, generator: torch.Generator, max_frequency: tuple[float, float] = (1.0, 5.0),
    normalize: str = "minmax",
) -> InitPlan:
    """Psine kernels (polynomially steered sinusoids); ``normalize`` ``"minmax"`` (default) or ``"whiten"``."""
    return _generate(layers, kernels.psine_kernels, generator, max_frequency=tuple(max_frequency), normalize=normalize)


@register_init("unchanged")
def unchanged(layers: Layers, *, generator: torch.Generator) -> InitPlan:
    """Keep the current weights (Kaiming random or loaded pretrained ones); only fix them."""
    return InitPlan({})
