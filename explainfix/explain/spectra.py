"""DCT-II energy spectra of a set of spatial filters (paper Eqs. 3, 5, 6).

Pure tensor functions: :func:`spectra` projects kernels onto the orthonormal
DCT-II basis of :func:`explainfix.kernels.dct_basis` and reduces the projection to
the three ExplainSteer spectra ``e^(d)``, ``e^(1)`` and ``e^(0)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from explainfix.kernels import _as_shape, dct_basis, frequency_order

__all__ = ["Spectra", "spectra", "spectra_from_energy"]


@dataclass(frozen=True)
class Spectra:
    """The ExplainSteer energy spectra of one set of spatial filters.

    Attributes:
        ed: ``e^(d)`` (Eq. 3), one energy per DCT-II basis filter, ordered from
            low to high frequency (``ed[q] == ed_raster[order[q]]``; index ``q`` is
            the basis index drawn in the paper's Appendix F). Shape ``(m,)``,
            ``m = prod(shape)``.
        ed_raster: the same energies in raster order of the basis filters
            (basis filter ``i`` is built from the 1-D frequencies
            ``numpy.unravel_index(i, shape)``). Shape ``(m,)``.
        e1: ``e^(1)`` (Eq. 5), one energy per 1-D basis vector: the ``N_1``
            frequencies of dimension 1, then the ``N_2`` of dimension 2, ...
            Shape ``(sum(shape),)``.
        e0: ``e^(0)`` (Eq. 6), one energy per 1-D frequency, the *mean* over the
            ``d`` dimensions of ``e^(1)`` reshaped to ``(d, N)``; ``None`` unless all
            dimensions have the same size. Shape ``(N,)``.
        shape: spatial kernel shape ``(N_1, ..., N_d)``.
        order: raster indices of the basis filters in frequency order
            (:func:`explainfix.kernels.frequency_order`).
    """

    ed: torch.Tensor
    ed_raster: torch.Tensor
    e1: torch.Tensor
    e0: torch.Tensor | None
    shape: tuple[int, ...]
    order: tuple[int, ...]

    def e1_per_dim(self) -> list[torch.Tensor]:
        """``e^(1)`` split into one tensor per spatial dimension (lengths ``shape``)."""
        return list(torch.split(self.e1, list(self.shape)))

    def to_dict(self) -> dict:
        """JSON-serialisable plain lists (``e0`` is ``None`` for non-square kernels)."""
        return {
            "shape": list(self.shape),
            "order": list(self.order),
            "ed": self.ed.tolist(),
            "ed_raster": self.ed_raster.tolist(),
            "e1": self.e1.tolist(),
            "e0": None if self.e0 is None else self.e0.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Spectra":
        """The inverse of :meth:`to_dict` (float64 tensors)."""
        t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        return cls(t(d["ed"]), t(d["ed_raster"]), t(d["e1"]), None if d.get("e0") is None else t(d["e0"]),
                   tuple(int(s) for s in d["shape"]), tuple(int(i) for i in d["order"]))


def _kernel_shape(F: torch.Tensor, shape: Sequence[int] | None) -> tuple[int, ...]:
    if shape is None:
        if F.ndim < 2:
            raise ValueError(
                f"F must have shape (n, *kernel_shape), got {tuple(F.shape)}; pass shape= for flattened kernels"
            )
        return tuple(int(s) for s in F.shape[1:])
    return _as_shape(shape)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def spectra_from_energy(ed_raster: torch.Tensor, shape: Sequence[int]) -> Spectra:
    """Reduce an ``e^(d)`` spectrum (raster order) to ``e^(1)`` and ``e^(0)`` (Eqs. 5, 6).

    Useful to combine spectra: ``e^(d)`` is linear in the weights, so the ``e^(d)``
    of several sets of filters of one shape is the sum of their ``e^(d)``.

    Args:
        ed_raster: Nonnegative energies, one per basis filter in raster order.
        shape: Kernel shape ``(N_1, ..., N_d)`` with ``prod(shape) == len(ed_raster)``.

    Returns:
        :class:`Spectra`.

    Raises:
        ValueError: on a wrong shape, or energies that are not finite and
            nonnegative.

    Shape:
        - ed_raster: ``(m,)``
    """
    shape = _kernel_shape(ed_raster, shape)
    m = math.prod(shape)
    if ed_raster.shape != (m,):
        raise ValueError(f"ed_raster must have shape ({m},) for kernel shape {shape}, got {tuple(ed_raster.shape)}")
    if not bool(torch.isfinite(ed_raster).all()) or bool((ed_raster < 0).any()):
        # the d-th root of Eq. 5 would silently turn a negative energy into NaN
        raise ValueError("ed_raster must be finite and nonnegative (energies)")
    d = len(shape)
    order = tuple(frequency_order(shape))
    # Eq. 5: each basis filter's energy is shared as its d-th root by the d 1-D basis
    # vectors it is built from; summing the grid over all other dimensions collects,
    # for every 1-D vector, the roots of the filters built with it.
    root = ed_raster.reshape(shape) ** (1.0 / d)
    all_dims = tuple(range(d))
    e1 = torch.cat([root.sum(dim=tuple(a for a in all_dims if a != j)) if d > 1 else root for j in all_dims])
    e0 = e1.reshape(d, shape[0]).mean(dim=0) if len(set(shape)) == 1 else None
    index = torch.tensor(order, device=ed_raster.device)
    return Spectra(ed=ed_raster[index], ed_raster=ed_raster, e1=e1, e0=e0, shape=shape, order=order)


def spectra(F: torch.Tensor, w: torch.Tensor | None = None, shape: Sequence[int] | None = None) -> Spectra:
    """ExplainSteer energy spectra of a set of spatial filters (Eqs. 3, 5, 6).

    Args:
        F: ``n`` kernels, shape ``(n, *shape)``; or flattened ``(n, m)`` / any
            ``(..., *shape)`` when ``shape`` is given (leading dimensions are
            flattened, e.g. a conv weight ``(out, in, kh, kw)`` with
            ``shape=(kh, kw)``).
        w: Nonnegative weight per kernel (e.g. saliency), shape ``(n,)`` or the
            leading shape of ``F``. Default: uniform ``1/n``.
        shape: Spatial kernel shape ``(N_1, ..., N_d)``; inferred from ``F`` when
            omitted. Any ``d >= 1``, square or not.

    Returns:
        :class:`Spectra` with ``e^(d)`` in frequency order (and raster order),
        ``e^(1)`` and ``e^(0)`` (``None`` for non-square kernels). Computed in
        ``F``'s dtype (float64 stays float64; half precision is promoted to
        float32) on ``F``'s device.

    Raises:
        ValueError: on empty ``F``, a kernel shape that does not match ``F``, or
            weights of the wrong shape, negative or not finite.

    Shape:
        - F: ``(n, *shape)`` or ``(..., m)`` with ``m = prod(shape)``
        - w: ``(n,)``
        - output: ``ed (m,)``, ``e1 (sum(shape),)``, ``e0 (N,)``

    Notes:
        With ``B`` the flattened orthonormal DCT-II basis (rows = basis filters)
        and ``F`` the flattened kernels (rows), Eq. 3 is
        ``e^(d) = w |F B^T|``. Eq. 5 gives each 1-D basis vector ``l`` of
        dimension ``j`` the energy ``e^(1)_l = sum_i ed_i^(1/d)`` over the basis
        filters ``i`` built with it. Eq. 6 reshapes ``e^(1)`` to ``E (d, N)`` and
        takes ``e^(0) = 1 E / d``, the mean over dimensions, as printed in the
        paper; a sum over dimensions would be ``d`` times larger and is otherwise
        identical. For a single kernel with ``w = 1``, ``||e^(d)||_2`` equals the
        kernel's Frobenius norm (Parseval).

    Example:
        >>> from explainfix.kernels import dct_basis
        >>> s = spectra(dct_basis((3, 3))[[4]])   # one basis filter, k = (1, 1)
        >>> s.ed_raster.argmax().item(), s.ed.max().item()
        (4, 1.0)
        >>> s.e1.tolist(), s.e0.tolist()
        ([0.0, 1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0])
    """
    if not torch.is_tensor(F):
        raise TypeError(f"F must be a torch.Tensor, got {type(F).__name__}")
    shape = _kernel_shape(F, shape)
    m = math.prod(shape)
    d = len(shape)
    if tuple(F.shape[-d:]) == shape and F.ndim > d:
        lead = tuple(F.shape[:-d])
    elif F.ndim >= 2 and F.shape[-1] == m:
        lead = tuple(F.shape[:-1])
    else:
        raise ValueError(f"F of shape {tuple(F.shape)} does not hold kernels of shape {shape} (m={m})")
    n = math.prod(lead)
    if n == 0:
        raise ValueError(f"F holds no kernels (shape {tuple(F.shape)})")
    dtype = _work_dtype(F.dtype)
    flat = F.detach().reshape(n, m).to(dtype)
    if w is None:
        weights = torch.full((n,), 1.0 / n, dtype=dtype, device=F.device)
    else:
        w = torch.as_tensor(w)
        if tuple(w.shape) not in (lead, (n,)):
            raise ValueError(f"w must have shape ({n},) or {lead} to weigh {n} kernels, got {tuple(w.shape)}")
        weights = w.detach().reshape(n).to(dtype=dtype, device=F.device)
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError("w must be finite and nonnegative")
    B = dct_basis(shape, dtype=dtype, device=F.device).reshape(m, m)
    ed_raster = weights @ (flat @ B.T).abs_()  # Eq. 3 (abs_ on the fresh projection)
    return spectra_from_energy(ed_raster, shape)
