"""Spatial filter kernels as pure torch functions.

Everything here is stateless: functions take shapes and a ``torch.Generator`` and
return tensors. The model-level initializers in :mod:`explainfix.init` build on them.

Conventions:
    * ``shape`` is the spatial kernel shape ``(N_1, ..., N_d)``; any ``d >= 1``.
    * A *basis index* ``i`` is a raster (C-order) index over the 1-D frequency
      indices ``(k_1, ..., k_d)``: the first dimension varies slowest, as in
      ``numpy.unravel_index(i, shape)``.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

import torch

__all__ = ["dct_basis_1d", "dct_basis", "frequency_order", "basis_frequencies"]


def _as_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"kernel shape must be a non-empty sequence of positive sizes, got {shape!r}")
    return shape


def dct_basis_1d(n: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Orthonormal 1-D DCT-II basis (Eq. 2), one basis vector per row.

    Args:
        n: Length of the signal (kernel size in one dimension).

    Returns:
        Tensor ``B`` of shape ``(n, n)`` with
        ``B[k, x] = s_k cos(pi / n * k * (x + 0.5))``, ``s_0 = sqrt(1/n)``, ``s_k = sqrt(2/n)``.

    Notes:
        The paper prints the argument as ``2 pi / N``; that family is not orthogonal
        (frequencies ``k`` and ``N - k`` alias), so we use the standard DCT-II
        ``pi / N``, which equals ``scipy.fft.dct(np.eye(n), norm="ortho", axis=0).T``.
    """
    (n,) = _as_shape(n)
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    x = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    basis = torch.cos(math.pi / n * k * (x + 0.5))
    scale = torch.full((n, 1), math.sqrt(2.0 / n), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / n)
    return (basis * scale).to(dtype=dtype, device=device)


def dct_basis(shape: int | Sequence[int], *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Orthonormal d-dimensional DCT-II basis filters (Eq. 2), in raster order.

    Args:
        shape: Kernel shape ``(N_1, ..., N_d)``; square or not, any ``d``.
        dtype, device: Of the returned tensor.

    Returns:
        Tensor of shape ``(prod(shape), *shape)``. Basis filter ``i`` is the outer
        product of the 1-D basis vectors ``k = numpy.unravel_index(i, shape)``.
        Flattened to ``(m, m)`` it is an orthonormal matrix ``B`` (``B @ B.T = I``).

    Example:
        >>> B = dct_basis((3, 3))
        >>> B.shape
        torch.Size([9, 3, 3])
    """
    shape = _as_shape(shape)
    basis = dct_basis_1d(shape[0], dtype=torch.float64)
    for n in shape[1:]:
        b1 = dct_basis_1d(n, dtype=torch.float64)
        # (m, *s) x (n, n) -> (m, n, *s, n): outer product in both index and space
        basis = torch.einsum("i...,jx->ij...x", basis, b1)
        basis = basis.reshape(-1, *basis.shape[2:])
    return basis.reshape(math.prod(shape), *shape).to(dtype=dtype, device=device)


def basis_frequencies(shape: int | Sequence[int]) -> torch.Tensor:
    """The 1-D frequency indices ``(k_1, ..., k_d)`` of each basis filter, shape ``(m, d)``."""
    shape = _as_shape(shape)
    grids = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


@lru_cache(maxsize=64)
def _frequency_order(shape: tuple[int, ...]) -> tuple[int, ...]:
    freqs = basis_frequencies(shape).tolist()

    def key(i: int):
        k = freqs[i]
        normalized = [Fraction(kj, nj) for kj, nj in zip(k, shape)]
        return (sum(normalized), tuple(sorted(normalized)), i)

    return tuple(sorted(range(len(freqs)), key=key))


def frequency_order(shape: int | Sequence[int]) -> list[int]:
    """Raster indices of the DCT-II basis filters, ordered low to high frequency (App. F).

    The rule (diagonal traversal, edges before middles):

    1. by total frequency ``sum_j k_j / N_j`` (for square kernels: the anti-diagonal
       ``k_1 + ... + k_d``);
    2. within a diagonal, by the frequencies sorted ascending, compared
       lexicographically - filters that vary along fewer dimensions (edges of the
       index grid) come before mixed ones (middles);
    3. ties by raster index (stable).

    For square kernels the normalisation by ``N_j`` changes nothing; for non-square
    kernels it compares physical frequencies, so a 3x5 kernel's ``(0, 1)`` (1/5)
    comes before ``(1, 0)`` (1/3). The rule applies unchanged to 1-D and 3-D shapes.

    Example:
        >>> frequency_order((3, 3))
        [0, 1, 3, 2, 6, 4, 5, 7, 8]
    """
    return list(_frequency_order(_as_shape(shape)))
