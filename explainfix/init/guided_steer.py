"""GuidedSteer: sample spatial filters with the steering properties of a guide (Sec. 3.1, Alg. 1).

Notation of the paper: ``G`` (c, m) holds guide filters as rows, ``B`` (m, m) an
orthonormal basis with one basis filter per row, ``G B^T`` the *steering weights*.
``B = V^T`` from the SVD ``G = U S V^T``, computed from the small ``m x m`` covariance
``G^T G = V S^2 V^T``. Each column of ``G_l B^T`` (guide layer ``l``) defines a 1-D
distribution that is sampled independently (Gaussian KDE or normal); a sampled weight
row ``w`` becomes the filter ``f = w B + Gbar`` (``Gbar = 0`` unless centered).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from explainfix.init.generated import Layers, kernel_count
from explainfix.init.registry import InitPlan, register_init
from explainfix.spatial import spatial_convs

__all__ = [
    "steering_basis",
    "steering_weights",
    "kde_bandwidth",
    "sample_steering_weights",
    "guided_steer_kernels",
    "guide_filters",
    "SAMPLERS",
]

Shape = tuple[int, ...]


def steering_basis(filters: torch.Tensor, *, centered: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal basis ``B`` and mean ``Gbar`` of a set of guide filters.

    Args:
        filters: Guide filters ``G``, shape ``(c, *k)`` or ``(c, m)``.
        centered: Subtract the mean filter before the decomposition.

    Returns:
        ``(B, Gbar)``: ``B`` of shape ``(m, m)`` with the right singular vectors of
        ``G - Gbar`` as rows (largest singular value first), and ``Gbar`` of shape
        ``(m,)`` (zeros unless ``centered``). Computed in float64.

    Shape:
        ``B @ B.T == I``.
    """
    G = filters.detach().reshape(filters.shape[0], -1).to(torch.float64)
    if G.shape[0] == 0:
        raise ValueError("need at least one guide filter")
    mean = G.mean(dim=0) if centered else torch.zeros(G.shape[1], dtype=G.dtype, device=G.device)
    Gc = G - mean
    # SVD of the m x m covariance: G^T G = V S^2 V^T, so its right singular vectors are V
    _, _, Vh = torch.linalg.svd(Gc.T @ Gc)
    return Vh, mean


def steering_weights(filters: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Project filters onto a basis: ``(G - Gbar) B^T``, shape ``(c, m)`` in float64."""
    G = filters.detach().reshape(filters.shape[0], -1).to(torch.float64)
    if mean is not None:
        G = G - mean.to(G)
    return G @ basis.to(G).T


def kde_bandwidth(values: torch.Tensor) -> torch.Tensor:
    """Scott's-rule bandwidth of a 1-D Gaussian KDE per column, as ``scipy.stats.gaussian_kde``.

    Args:
        values: ``(c, m)``: ``c`` samples of ``m`` independent 1-D distributions.

    Returns:
        ``(m,)`` kernel standard deviations ``std * c ** (-1/5)`` (``std`` with ``ddof=1``;
        zero when ``c == 1``).
    """
    c = values.shape[0]
    if c < 2:
        return torch.zeros(values.shape[1], dtype=values.dtype, device=values.device)
    return values.std(dim=0, correction=1) * c ** (-1.0 / 5.0)


def _sample_kde(values: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    c, m = values.shape
    idx = torch.randint(c, (n, m), generator=generator, device=values.device)
    noise = torch.randn(n, m, generator=generator, dtype=values.dtype, device=values.device)
    return values.gather(0, idx) + noise * kde_bandwidth(values)


def _sample_normal(values: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    c, m = values.shape
    std = values.std(dim=0, correction=1) if c > 1 else torch.zeros(m, dtype=values.dtype, device=values.device)
    noise = torch.randn(n, m, generator=generator, dtype=values.dtype, device=values.device)
    return values.mean(dim=0) + noise * std


#: How each column of steering weights is sampled: name -> f(values (c, m), n, generator) -> (n, m).
SAMPLERS: dict[str, Callable[[torch.Tensor, int, torch.Generator | None], torch.Tensor]] = {
    "kde": _sample_kde,
    "normal": _sample_normal,
}


def sample_steering_weights(
    values: torch.Tensor, n: int, *, sampler: str = "kde", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``n`` rows, sampling each column of ``values`` (c, m) independently.

    ``"kde"``: Gaussian KDE with Scott's bandwidth (a random data point plus
    ``N(0, bw^2)``, as ``gaussian_kde.resample`` in 1-D); ``"normal"``: ``N(mean, std^2)``
    (``std`` with ``ddof=1``).

    Notes:
        The KDE adds the kernel's variance to the data's: column ``i`` of the samples
        has ``E[w_i^2] = mean(v_i^2) + bw_i^2`` with ``bw_i^2 = var(v_i) c^(-2/5)``
        (:func:`kde_bandwidth`), so the samples carry *more* energy than the values,
        ``E||w||^2 = mean_j ||v_j||^2 + c^(-2/5) sum_i var(v_i)``. For columns of zero
        mean that is ``1 + c^(-2/5) c / (c - 1)`` times the values' energy: 1.35x for
        ``c = 16``, 1.19x for 64, 1.08x for 500, 1.97x for 3 (less when the columns have
        a mean). ``"normal"`` keeps the energy up to the ``c / (c - 1)`` of ``ddof=1``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    return SAMPLERS[sampler](values, int(n), generator)


def guided_steer_kernels(
    n: int,
    guide: torch.Tensor,
    *,
    basis_filters: torch.Tensor | None = None,
    sampler: str = "kde",
    centered: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """``n`` GuidedSteer kernels following the steering distributions of ``guide``.

    Args:
        n: Number of kernels; independent of the number of guide filters.
        guide: Guide filters ``G_l`` (c, *k) whose steering weights define the distributions.
        basis_filters: Filters ``G`` (C, *k) that define the basis ``B`` (e.g. all filters of
            that shape in the guide model); default ``guide`` itself.
        sampler: ``"kde"`` or ``"normal"``. KDE samples have more energy than the
            guide (its bandwidth adds variance; about 1.35x for 16 guide filters, see
            :func:`sample_steering_weights`); ``"normal"`` matches the guide's.
        centered: Center before the SVD and add the mean filter back.
        generator: Source of randomness (its device is where sampling runs).
        dtype, device: Of the returned tensor.

    Returns:
        Tensor of shape ``(n, *k)``.

    Example:
        >>> g = torch.randn(64, 3, 3)
        >>> guided_steer_kernels(10, g, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([10, 3, 3])
    """
    for what, t in (("guide", guide), ("basis_filters", basis_filters)):
        if t is None:
            continue
        if not torch.is_tensor(t) or t.dim() < 2 or t.shape[0] == 0:
            shown = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"{what} must be a tensor of filters (c, *kernel_shape) with c >= 1, got {shown}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{what} has non-finite values")
    shape = tuple(guide.shape[1:])
    basis_filters = guide if basis_filters is None else basis_filters
    if tuple(basis_filters.shape[1:]) != shape:
        raise ValueError(f"basis filters have kernel shape {tuple(basis_filters.shape[1:])}, guide {shape}")
    wdev = generator.device if generator is not None else torch.device("cpu")
    B, mean = steering_basis(basis_filters.to(wdev), centered=centered)
    P = steering_weights(guide.to(wdev), B, mean)
    W = sample_steering_weights(P, n, sampler=sampler, generator=generator)
    return (W @ B + mean).reshape(n, *shape).to(dtype=dtype, device=device)


def guide_filters(guide: nn.Module | Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The spatial filters of a guide, as ``(layer name, kernels (c, *k))``.

    A module contributes its spatial convolutions; a state_dict every tensor whose key
    ends in ``weight`` with ``ndim >= 3`` and all trailing (spatial) dims > 1 (the layer
    name is the key without ``.weight``).
    """
    if isinstance(guide, nn.Module):
        found = [(name, m.weight.detach()) for name, m in spatial_convs(guide)]
    elif isinstance(guide, Mapping):
        found = [
            (key[: -len(".weight")] if key.endswith(".weight") else key, t.detach())
            for key, t in guide.items()
            if key.endswith("weight") and isinstance(t, torch.Tensor) and t.dim() >= 3 and all(s > 1 for s in t.shape[2:])
        ]
    else:
        raise ValueError(f"guide must be an nn.Module or a state_dict, got {type(guide).__name__}")
    if not found:
        raise ValueError("the guide has no spatial filters (conv weights with a kernel > 1 in every dimension)")
    out = []
    for name, w in found:
        n, shape = kernel_count(w)
        filters = w.reshape(n, *shape).to(device="cpu", dtype=torch.float64)
        if not torch.isfinite(filters).all():
            raise ValueError(f"guide layer {name!r} has non-finite weights")
        out.append((name, filters))
    return out


def _text(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _match(targets: Sequence[str], guides: Sequence[str]) -> dict[str, int]:
    """Target layer -> index of its guide layer: same name, else proportional position."""
    by_name = {g: i for i, g in enumerate(guides)}
    T, C = len(targets), len(guides)
    return {t: by_name.get(t, p * C // T) for p, t in enumerate(targets)}


@register_init("guided_steer")
def guided_steer(
    layers: Layers,
    *,
    generator: torch.Generator,
    guide: nn.Module | Mapping[str, torch.Tensor],
    basis: str = "global",
    sampler: str = "kde",
    centered: bool = False,
) -> InitPlan:
    """GuidedSteer (Alg. 1): per-layer steering distributions of a guide model.

    Args:
        layers: Target spatial convolutions.
        generator: Source of randomness.
        guide: ``nn.Module`` or state_dict with spatial filters of the target's kernel shapes.
        basis: ``"global"``: one basis per kernel shape from all guide filters of that shape
            (the paper); ``"layer"``: one basis per guide layer.
        sampler: ``"kde"`` (Alg. 1) or ``"normal"``. The KDE's bandwidth adds variance, so
            KDE-sampled filters carry more energy than their guide layer (about 1.35x for a
            layer of 16 guide kernels, 1.1x for 500; see :func:`sample_steering_weights`).
        centered: Center before the SVD and add the mean filter back (the global mean with
            ``basis="global"``, the layer's mean with ``basis="layer"``).

    Target layer ``i`` is steered by the guide layer of the same name and kernel shape
    when there is one, else by the guide layer at the same relative position among the
    layers of that kernel shape (index ``floor(p * C / T)`` for position ``p`` of ``T``
    targets and ``C`` guide layers).
    """
    if basis not in ("global", "layer"):
        raise ValueError(f"unknown basis {basis!r}; valid: 'global', 'layer'")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    guides = guide_filters(guide)
    guide_by_shape: dict[Shape, list[tuple[str, torch.Tensor]]] = defaultdict(list)
    for name, filters in guides:
        guide_by_shape[tuple(filters.shape[1:])].append((name, filters))
    target_by_shape: dict[Shape, list[str]] = defaultdict(list)
    for name, module in layers:
        target_by_shape[tuple(module.weight.shape[2:])].append(name)

    if not set(target_by_shape) & set(guide_by_shape):
        raise ValueError(
            f"the guide's kernel shapes ({', '.join(map(_text, sorted(guide_by_shape)))}) match none of the "
            f"model's ({', '.join(map(_text, sorted(target_by_shape)))})"
        )
    missing = [(n, s) for s, names in target_by_shape.items() if s not in guide_by_shape for n in names]
    if missing:
        listed = ", ".join(f"{n} ({_text(s)})" for n, s in missing)
        raise ValueError(f"the guide has no filters of the kernel shape of these layers: {listed}")

    sources: dict[str, tuple[int, str, torch.Tensor]] = {}
    for shape, names in target_by_shape.items():
        candidates = guide_by_shape[shape]
        for target, j in _match(names, [g for g, _ in candidates]).items():
            sources[target] = (j, *candidates[j])

    wdev = generator.device
    global_basis = {}
    if basis == "global":
        for shape in target_by_shape:
            G = torch.cat([f for _, f in guide_by_shape[shape]]).to(wdev)
            global_basis[shape] = steering_basis(G, centered=centered)

    projected: dict[tuple[Shape, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    weights, details = {}, []
    for name, module in layers:
        w = module.weight
        n, shape = kernel_count(w)
        j, guide_name, filters = sources[name]
        key = (shape, j)
        if key not in projected:
            filters = filters.to(wdev)
            B, mean = global_basis[shape] if basis == "global" else steering_basis(filters, centered=centered)
            projected[key] = (steering_weights(filters, B, mean), B, mean)
        P, B, mean = projected[key]
        W = sample_steering_weights(P, n, sampler=sampler, generator=generator)
        weights[name] = (W @ B + mean).reshape(w.shape).to(dtype=w.dtype, device=w.device)
        details.append((name, guide_name))
    return InitPlan(weights, tuple(details))
