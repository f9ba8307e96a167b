"""Spatial filter kernels as pure torch functions.

Everything here is stateless: functions take shapes and a ``torch.Generator`` and
return tensors. The model-level initializers in :mod:`explainfix.init` build on them.

Basis: :func:`dct_basis`, :func:`frequency_order`. Kernel generators for the fixed
initializations of Sec. 3.1, each ``f(n, shape, *, generator=None, dtype=torch.float32,
device=None) -> (n, *shape)``: :func:`ones_kernels`, :func:`dct2_kernels`,
:func:`ghaar_kernels`, :func:`psine_kernels`. GHaar and Psine also expose their random
parameters (:func:`ghaar_params`, :func:`psine_params`) and the deterministic formulas
(:func:`ghaar_from_params`, :func:`psine_from_params`), e.g. to draw the same filters at
a higher resolution.

Conventions:
    * ``shape`` is the spatial kernel shape ``(N_1, ..., N_d)``; any ``d >= 1``.
    * A *basis index* ``i`` is a raster (C-order) index over the 1-D frequency
      indices ``(k_1, ..., k_d)``: the first dimension varies slowest, as in
      ``numpy.unravel_index(i, shape)``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Iterator, Sequence

import torch

__all__ = [
    "dct_basis_1d",
    "dct_basis",
    "frequency_order",
    "basis_frequencies",
    "ones_kernels",
    "dct2_kernels",
    "dct2_indices",
    "ghaar_kernels",
    "GHaarParams",
    "ghaar_params",
    "ghaar_from_params",
    "ghaar_subsets",
    "psine_kernels",
    "PsineParams",
    "psine_params",
    "psine_from_params",
]


def _as_size(s) -> int:
    """One kernel size as an int: an integer, or a float with an integral value (``3.0``)."""
    if isinstance(s, numbers.Integral):
        return int(s)
    if isinstance(s, numbers.Real) and float(s).is_integer():
        return int(s)
    raise TypeError(f"kernel size {s!r} is not an integer")


def _as_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints; an int ``n`` means ``(n,)``.

    Sizes must have integer values: ``3.5`` or the string ``"33"`` are refused rather
    than truncated or split into characters.
    """
    given = shape
    try:
        if isinstance(shape, str):
            raise TypeError
        if torch.is_tensor(shape):
            shape = shape.tolist()
        items = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        shape = tuple(_as_size(s) for s in items)
    except TypeError:
        shape = None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"kernel shape must be a non-empty sequence of positive sizes (integers), got {given!r}")
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


# ---------------------------------------------------------------------------------------------
# Kernel generators for the fixed initializations (Sec. 3.1)
#
# Every generator has the signature ``f(n, shape, *, generator=None, dtype=torch.float32,
# device=None) -> Tensor (n, *shape)``. Random numbers are drawn on the generator's device
# (the CPU by default) and the result is moved to ``device`` afterwards, so a seeded CPU
# generator gives the same kernels whatever the target device. Work is vectorised over
# kernels and chunked to bound memory.
# ---------------------------------------------------------------------------------------------

#: Elements of the largest intermediate tensor of one chunk of work.
_CHUNK_ELEMENTS = 1 << 22


def _count(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < 0:
        raise ValueError(f"number of kernels must be a non-negative integer, got {n!r}")
    return int(n)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Compute in float64 when float64 is asked for, else in float32 (then cast)."""
    if not dtype.is_floating_point:
        raise ValueError(f"kernels must have a floating point dtype, got {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


def _work_device(generator: torch.Generator | None, device) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    size = max(1, int(size))
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _setup(n, shape, dtype: torch.dtype, generator: torch.Generator | None, device):
    """Checked ``(n, shape)``, the dtype to compute in and the device to draw on."""
    return _count(n), _as_shape(shape), _work_dtype(dtype), _work_device(generator, device)


def _in_chunks(
    n: int,
    shape: tuple[int, ...],
    elements_per_kernel: int,
    make: Callable[[int, int], torch.Tensor],
    *,
    dtype: torch.dtype,
    device: torch.device,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(n, *shape)`` kernels made chunk by chunk, so no intermediate exceeds ``_CHUNK_ELEMENTS``.

    ``make(start, stop)`` returns the kernels of positions ``start:stop`` of ``order``
    (default: kernels ``start:stop``); chunks are made in increasing ``start``, so random
    numbers are drawn in the same order whatever the chunk size.
    """
    out = torch.empty(n, *shape, dtype=dtype, device=device)
    for a, b in _chunks(n, _CHUNK_ELEMENTS // elements_per_kernel):
        out[slice(a, b) if order is None else order[a:b]] = make(a, b)
    return out


def _grid(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``linspace(0, pi, n)``: the sampling points of the sinusoids of GHaar and Psine."""
    return torch.linspace(0.0, math.pi, n, dtype=dtype, device=device)


def _outer(vectors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Batched outer product: ``(*b, N_1), ..., (*b, N_d) -> (*b, N_1, ..., N_d)``."""
    out = vectors[0]
    for j, v in enumerate(vectors[1:], start=1):
        out = out.unsqueeze(-1) * v.reshape(*v.shape[:-1], *([1] * j), v.shape[-1])
    return out


def _whiten(kernels: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit L2 norm per kernel; a kernel that is constant becomes zero."""
    flat = kernels.reshape(kernels.shape[0], -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    norm = flat.norm(dim=1, keepdim=True)
    tiny = torch.finfo(flat.dtype).tiny
    flat = flat / torch.where(norm > tiny, norm, torch.ones_like(norm))
    return flat.reshape(kernels.shape)


def _minmax_unit(kernels: torch.Tensor) -> torch.Tensor:
    """Min-max to ``[-1, 1]`` then unit L2 norm per kernel (keeps a DC component); constant -> zero."""
    flat = kernels.reshape(kernels.shape[0], -1)
    lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = hi - lo
    tiny = torch.finfo(flat.dtype).tiny
    flat = torch.where(span > tiny, 2 * (flat - lo) / torch.where(span > tiny, span, torch.ones_like(span)) - 1,
                       torch.zeros_like(flat))
    norm = flat.norm(dim=1, keepdim=True)
    flat = flat / torch.where(norm > tiny, norm, torch.ones_like(norm))
    return flat.reshape(kernels.shape)


#: Psine normalisations: ``"minmax"`` (min-max to [-1, 1], unit norm: as the paper's models were
#: trained, keeps each kernel's mean) and ``"whiten"`` (zero mean, unit norm: the paper's text)
PSINE_NORMALIZATIONS = {"minmax": _minmax_unit, "whiten": _whiten}


def ones_kernels(
    n: int,
    shape: int | Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """``n`` box filters: every weight is one (the paper's *Ones*, not steered).

    Args:
        n: Number of kernels.
        shape: Kernel shape ``(N_1, ..., N_d)``.
        generator: Accepted for a uniform signature; unused.
        dtype, device: Of the returned tensor.

    Returns:
        Tensor of shape ``(n, *shape)`` filled with ones.

    Example:
        >>> ones_kernels(2, (3, 3)).sum().item()
        18.0
    """
    n, shape, _, _ = _setup(n, shape, dtype, generator, device)
    return torch.ones(n, *shape, dtype=dtype, device=device)


def dct2_indices(n: int, m: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Which basis filter each of ``n`` kernels gets, using the ``m`` filters evenly.

    Concatenates independent random permutations of ``arange(m)`` (the last one cut
    short) and shuffles the result, so every basis filter is used ``floor(n/m)`` or
    ``ceil(n/m)`` times, and which filters get the extra use is random.

    Returns:
        Long tensor of shape ``(n,)`` with values in ``[0, m)``.
    """
    n, m = _count(n), _count(m)
    if m < 1:
        raise ValueError("the basis must have at least one filter")
    device = _work_device(generator, device)
    reps = max(1, -(-n // m))
    perms = torch.rand(reps, m, generator=generator, device=device).argsort(dim=1)
    idx = perms.reshape(-1)[:n]
    return idx[torch.randperm(n, generator=generator, device=device)]


def dct2_kernels(
    n: int,
    shape: int | Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """``n`` orthonormal DCT-II basis filters chosen at random (the paper's *DCT2*).

    The ``m = prod(shape)`` basis filters of :func:`dct_basis` are used evenly (see
    :func:`dct2_indices`), so the DCT-II energy spectrum of the kernels is flat - the
    sanity check of the paper's Appendix G.

    Args:
        n: Number of kernels.
        shape: Kernel shape ``(N_1, ..., N_d)``.
        generator: Source of randomness.
        dtype, device: Of the returned tensor.

    Returns:
        Tensor of shape ``(n, *shape)``; each kernel equals one basis filter exactly.

    Example:
        >>> k = dct2_kernels(9, (3, 3), generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(k.reshape(9, 9) @ k.reshape(9, 9).T, torch.eye(9), atol=1e-6)
        True
    """
    n, shape, work, wdev = _setup(n, shape, dtype, generator, device)
    basis = dct_basis(shape, dtype=work, device=wdev)
    idx = dct2_indices(n, basis.shape[0], generator=generator, device=wdev)
    return basis[idx].to(dtype=dtype, device=device)


# --------------------------------------------------------------------------------- GHaar


@dataclass(frozen=True)
class GHaarParams:
    """Random parameters of ``n`` GHaar kernels.

    Attributes:
        frequencies: ``(n,)`` frequency ``f`` of the sinusoid ``cos(f x)``.
        weights: ``(n, 2**d - 1)`` steering weight of each basis filter, in the order of
            :func:`ghaar_subsets`.
    """

    frequencies: torch.Tensor
    weights: torch.Tensor


def ghaar_subsets(ndim: int) -> list[tuple[bool, ...]]:
    """The non-empty subsets ``S`` of dimensions that make the GHaar basis filters.

    Subset ``s`` (0-based) is the binary expansion of ``s + 1``: bit ``j`` set means
    dimension ``j`` uses ``b = cos(f x)``, otherwise the constant ``a = 1``. In 2-D the
    order is ``b a^T`` (varies along rows, weight ``h``), ``a b^T`` (along columns,
    ``v``), ``b b^T`` (``d``); the all-constant ``a a^T`` is not used.
    """
    if ndim < 1:
        raise ValueError(f"ndim must be >= 1, got {ndim}")
    return [tuple(bool((s >> j) & 1) for j in range(ndim)) for s in range(1, 2**ndim)]


def ghaar_params(
    n: int,
    shape: int | Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> GHaarParams:
    """Draw GHaar parameters: ``f ~ U(0, 2(N-1))`` with ``N = max(shape)``, weights ``~ U(-1, 1)``.

    For non-square kernels one frequency serves every dimension, with ``N`` the largest
    side (beyond ``2(N-1)`` the sampled sinusoid repeats on the longest side).
    """
    n, shape = _count(n), _as_shape(shape)
    device = _work_device(generator, device)
    top = 2.0 * (max(shape) - 1)
    # drawn in float64 whatever the dtype, so a seed gives the same kernels in every dtype
    freqs = torch.rand(n, generator=generator, dtype=torch.float64, device=device) * top
    weights = torch.rand(n, 2 ** len(shape) - 1, generator=generator, dtype=torch.float64, device=device) * 2 - 1
    return GHaarParams(freqs.to(dtype), weights.to(dtype))


def ghaar_from_params(params: GHaarParams, shape: int | Sequence[int], *, normalize: bool = False) -> torch.Tensor:
    """GHaar kernels from given parameters (deterministic; Sec. 3.1, Fig. 3).

    Args:
        params: Frequencies ``(n,)`` and weights ``(n, 2**d - 1)``.
        shape: Kernel shape ``(N_1, ..., N_d)``; may differ from the shape the parameters
            were drawn for (e.g. a 20x20 rendering of 3x3 kernels).
        normalize: Whiten each kernel to zero mean and unit L2 norm.

    Returns:
        Tensor ``(n, *shape)`` in the dtype / device of ``params``.

    Notes:
        With ``x_j = linspace(0, pi, N_j)``, ``b_j = cos(f x_j)`` and ``a_j = 1``, the kernel
        is ``sum_S w_S  outer_j (b_j if j in S else a_j)`` over the non-empty subsets ``S``
        of :func:`ghaar_subsets`. In 2-D:
        ``K[r, c] = h cos(f x_r) + v cos(f x_c) + d cos(f x_r) cos(f x_c)``.
    """
    shape = _as_shape(shape)
    freqs, weights = params.frequencies, params.weights
    subsets = ghaar_subsets(len(shape))
    if freqs.dim() != 1 or weights.shape != (freqs.shape[0], len(subsets)):
        raise ValueError(
            f"GHaar parameters for {len(shape)}-D kernels need frequencies (n,) and weights (n, {len(subsets)}), "
            f"got {tuple(freqs.shape)} and {tuple(weights.shape)}"
        )
    n = freqs.shape[0]
    cos = [torch.cos(freqs[:, None] * _grid(s, freqs.dtype, freqs.device)) for s in shape]
    ones = [torch.ones_like(c) for c in cos]
    out = torch.zeros(n, *shape, dtype=freqs.dtype, device=freqs.device)
    for s, subset in enumerate(subsets):
        term = _outer([c if use else o for c, o, use in zip(cos, ones, subset)])
        out += weights[:, s].reshape(n, *([1] * len(shape))) * term
    return _whiten(out) if normalize else out


def ghaar_kernels(
    n: int,
    shape: int | Sequence[int],
    *,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """``n`` random GHaar kernels (generalized, steered Haar filters; Sec. 3.1, Fig. 3).

    Each kernel has its own frequency ``f ~ U(0, 2(N-1))`` (``N = max(shape)``) and
    steering weights ``~ U(-1, 1)`` over the ``2**d - 1`` separable basis filters built
    from ``cos(f x)`` and ones (see :func:`ghaar_from_params`). Not normalized by
    default, as trained in the paper.

    Args:
        n: Number of kernels.
        shape: Kernel shape ``(N_1, ..., N_d)``, square or not, any ``d``.
        normalize: Whiten each kernel to zero mean and unit L2 norm.
        generator: Source of randomness.
        dtype, device: Of the returned tensor.

    Returns:
        Tensor of shape ``(n, *shape)``.

    Example:
        >>> ghaar_kernels(4, (3, 3), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 3])
    """
    n, shape, work, wdev = _setup(n, shape, dtype, generator, device)

    def make(a: int, b: int) -> torch.Tensor:
        params = ghaar_params(b - a, shape, generator=generator, dtype=work, device=wdev)
        return ghaar_from_params(params, shape, normalize=normalize)

    out = _in_chunks(n, shape, math.prod(shape), make, dtype=work, device=wdev)
    return out.to(dtype=dtype, device=device)


# --------------------------------------------------------------------------------- Psine

#: Largest number of Psine terms: ``int(3 + 2**(6u))`` for ``u`` in ``[0, 1)``.
PSINE_MAX_TERMS = 66


@dataclass(frozen=True)
class PsineParams:
    """Random parameters of ``n`` Psine kernels, padded to ``L = max(terms)`` terms.

    Attributes:
        terms: ``(n,)`` number of terms ``l`` of each kernel.
        powers: ``(n, L)`` integer power ``p`` of each term (0 for padding).
        frequencies: ``(n, L, d)`` frequency of each term's sinusoid per dimension.
        phases: ``(n, L, d)`` phase of each term's sinusoid per dimension.
        weights: ``(n, L)`` steering weight of each term (0 for padding).
    """

    terms: torch.Tensor
    powers: torch.Tensor
    frequencies: torch.Tensor
    phases: torch.Tensor
    weights: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """``(n, L)`` True for the real (not padded) terms."""
        return torch.arange(self.powers.shape[1], device=self.terms.device) < self.terms[:, None]

    @property
    def full_steering(self) -> torch.Tensor:
        """``(n,)`` True where ``l >= 2 max(p) + 1``: the kernel can steer the full space."""
        return self.terms >= 2 * self.powers.amax(dim=1) + 1


def psine_params(
    n: int,
    shape: int | Sequence[int],
    *,
    terms: torch.Tensor | None = None,
    max_frequency: tuple[float, float] = (1.0, 5.0),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> PsineParams:
    """Draw Psine parameters (Sec. 3.1; the distributions the paper trained with).

    Per kernel: ``l = int(3 + 2**(6u))`` terms (4 to 66), ``fmax ~ U(max_frequency)``;
    per term and dimension a frequency ``U * fmax`` and a phase ``U * 2 pi``; per term an
    integer power ``p ~ U{1, ..., floor((l - 1) / 2)}`` - so ``l >= 2 max(p) + 1`` holds
    for every kernel - and a weight ``w = 2 U / sum(U) - 1`` (sum over the kernel's terms).

    Args:
        n: Number of kernels.
        shape: Kernel shape; only its dimensionality ``d`` is used.
        terms: Optional ``(n,)`` numbers of terms to use instead of drawing them (each >= 3).
        max_frequency: Range ``(low, high)`` of ``fmax``.
        generator: Source of randomness.
        dtype, device: Of the floating point parameters.
    """
    n, shape = _count(n), _as_shape(shape)
    device = _work_device(generator, device)
    d = len(shape)
    if terms is None:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        terms = (3 + torch.pow(2.0, 6 * u)).long()
    else:
        terms = torch.as_tensor(terms, device=device).long().reshape(-1)
        if terms.shape[0] != n or (n and int(terms.min()) < 3):
            raise ValueError(f"terms must be {n} integers >= 3 (l >= 2p + 1 with p >= 1)")
    L = int(terms.max()) if n else 0
    lo, hi = float(max_frequency[0]), float(max_frequency[1])
    if not 0 <= lo <= hi:
        raise ValueError(f"max_frequency must be a range 0 <= low <= high, got {max_frequency!r}")

    def rand(*size):
        # drawn in float64 whatever the dtype, so a seed gives the same kernels in every dtype
        return torch.rand(*size, generator=generator, dtype=torch.float64, device=device)

    mask = torch.arange(L, device=device) < terms[:, None]
    fmax = lo + (hi - lo) * rand(n)
    freqs = rand(n, L, d) * fmax[:, None, None]
    phases = rand(n, L, d) * (2 * math.pi)
    pmax = ((terms - 1) // 2)[:, None]
    powers = 1 + (rand(n, L) * pmax).long()
    powers = torch.minimum(powers, pmax).masked_fill(~mask, 0)
    u = rand(n, L).masked_fill(~mask, 0)
    weights = (2 * u / u.sum(dim=1, keepdim=True).clamp_min(1e-300) - 1).masked_fill(~mask, 0)
    return PsineParams(terms, powers, freqs.to(dtype), phases.to(dtype), weights.to(dtype))


def psine_from_params(params: PsineParams, shape: int | Sequence[int], *, normalize: str = "minmax") -> torch.Tensor:
    """Psine kernels from given parameters (deterministic), normalised per kernel.

    Args:
        params: See :class:`PsineParams`.
        shape: Kernel shape ``(N_1, ..., N_d)`` with ``d`` matching the parameters; may
            differ from the shape they were drawn for (e.g. a 20x20 rendering).
        normalize: ``"minmax"`` (default; min-max to [-1, 1] then unit L2 norm) or ``"whiten"``
            (zero mean, unit L2 norm), see :data:`PSINE_NORMALIZATIONS`.

    Returns:
        Tensor ``(n, *shape)`` in the dtype / device of ``params.frequencies``.

    Notes:
        ``F = normalize( sum_i w_i (outer_j sin(f_ij x_j + t_ij)) ** p_i )`` with
        ``x_j = linspace(0, pi, N_j)``; powers are element-wise.
    """
    shape = _as_shape(shape)
    if normalize not in PSINE_NORMALIZATIONS:
        raise ValueError(f"Psine normalize must be one of {sorted(PSINE_NORMALIZATIONS)}, got {normalize!r}")
    f, t = params.frequencies, params.phases
    if f.dim() != 3 or f.shape[2] != len(shape):
        raise ValueError(f"Psine parameters of {f.shape[-1]}-D kernels do not fit kernel shape {shape}")
    n, L = f.shape[:2]
    p = params.powers.reshape(n, L, 1).to(f.dtype)
    # (prod_j s_j) ** p == prod_j s_j ** p: raise the 1-D sinusoids, not the d-D products
    sines = [torch.sin(f[..., j, None] * _grid(s, f.dtype, f.device) + t[..., j, None]).pow(p) for j, s in enumerate(shape)]
    # sum over terms as a batched matmul with the last dimension's sinusoids
    head = _outer(sines[:-1]).reshape(n, L, -1) if len(shape) > 1 else torch.ones(n, L, 1, dtype=f.dtype, device=f.device)
    head = head * params.weights.to(f.dtype)[..., None]  # (n, L, N_1 * ... * N_{d-1})
    out = torch.bmm(head.transpose(1, 2), sines[-1])  # (n, N_1 * ... * N_{d-1}, N_d)
    return PSINE_NORMALIZATIONS[normalize](out.reshape(n, *shape))


def psine_kernels(
    n: int,
    shape: int | Sequence[int],
    *,
    max_frequency: tuple[float, float] = (1.0, 5.0),
    normalize: str = "minmax",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """``n`` random Psine kernels: polynomially steered sinusoids (Sec. 3.1, Figs. 5-6).

    Each kernel is a weighted sum of ``l`` outer products of sinusoids, each raised
    element-wise to an integer power ``p``, with ``l >= 2 max(p) + 1`` (full steering),
    normalised per kernel: ``normalize="minmax"`` (default) maps it to [-1, 1] then to unit
    L2 norm, as the paper's trained models did, keeping the kernel's mean (its response to
    flat image regions); ``"whiten"`` gives zero mean and unit norm, as the paper's text
    says - such kernels ignore the image's local brightness, which costs Dice on the
    nuclei data (see the README). See :func:`psine_params` for the
    distributions and :func:`psine_from_params` for the formula.

    Args:
        n: Number of kernels.
        shape: Kernel shape ``(N_1, ..., N_d)``, square or not, any ``d``.
        max_frequency: Range of the per-kernel maximum frequency ``fmax``.
        normalize: ``"minmax"`` or ``"whiten"`` (see above).
        generator: Source of randomness.
        dtype, device: Of the returned tensor.

    Returns:
        Tensor of shape ``(n, *shape)``.

    Example:
        >>> k = psine_kernels(4, (3, 3), generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(k.flatten(1).norm(dim=1), torch.ones(4))
        True
    """
    n, shape, work, wdev = _setup(n, shape, dtype, generator, device)
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=wdev)
    terms = (3 + torch.pow(2.0, 6 * u)).long()
    # process kernels with similar numbers of terms together: little padding
    order = torch.argsort(terms, stable=True)

    def make(a: int, b: int) -> torch.Tensor:
        params = psine_params(
            b - a, shape, terms=terms[order[a:b]], max_frequency=max_frequency, generator=generator, dtype=work,
            device=wdev,
        )
        return psine_from_params(params, shape, normalize=normalize)

    out = _in_chunks(n, shape, PSINE_MAX_TERMS * math.prod(shape), make, dtype=work, device=wdev, order=order)
    return out.to(dtype=dtype, device=device)
