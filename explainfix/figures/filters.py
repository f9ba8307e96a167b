"""Filter pictures: DCT-II basis (App. F), GHaar basis (Fig. 3) and example GHaar, Psine and
GuidedSteer filters (Figs. 4-7).

Every picture uses a diverging colormap centred at zero (red positive, blue negative)
with one colour scale shared by all panels of a figure, shown by one colour bar.
Functions take an optional ``fig`` and return the figure; nothing is shown.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from explainfix import kernels as K

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "plot_filter_grid",
    "plot_dct_basis",
    "plot_ghaar_basis",
    "plot_ghaar_filters",
    "plot_psine_filters",
    "plot_psine_steering",
    "plot_guided_steer_filters",
    "render_filter_figures",
]

CMAP = "RdBu_r"
HIRES = 20


def _new_figure(fig, size):
    from matplotlib.figure import Figure

    if fig is None:
        fig = Figure(figsize=size, layout="constrained")
    return fig


def _vmax(arrays) -> float:
    v = max((float(a.abs().max()) for a in arrays if a.numel()), default=0.0)
    return v if v > 0 else 1.0  # an all-zero picture must not break the scale


def _show(ax, image: torch.Tensor, vmax: float):
    image = image.detach().to("cpu", torch.float64)
    if image.dim() == 1:
        image = image[None]
    ax.set_xticks([])
    ax.set_yticks([])
    return ax.imshow(image.numpy(), cmap=CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest")


def _colorbar(fig, mappable, axes, label="weight"):
    fig.colorbar(mappable, ax=axes, shrink=0.8, label=label)


def plot_filter_grid(
    rows: Sequence[torch.Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    titles: Sequence[Sequence[str]] | None = None,
    suptitle: str | None = None,
    share: str = "figure",
    fig: "Figure | None" = None,
) -> "Figure":
    """Draw 2-D filters in rows with a symmetric colour scale centred at zero.

    Args:
        rows: One tensor ``(n_i, h, w)`` per row.
        row_labels: Label at the left of each row.
        titles: Optional title of each panel, per row.
        suptitle: Figure title.
        share: ``"figure"``: one colour scale for all panels; ``"row"``: one per row (e.g.
            whitened kernels of different sizes, whose per-pixel values differ).
        fig: Figure to draw into (new one if None).

    Returns:
        The figure.
    """
    ncols = max(r.shape[0] for r in rows)
    fig = _new_figure(fig, (1.4 * ncols + 1.6, 1.5 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    if share not in ("figure", "row"):
        raise ValueError(f"share must be 'figure' or 'row', got {share!r}")
    vmax = _vmax(rows)
    im = None
    for i, row in enumerate(rows):
        if share == "row":
            vmax = _vmax([row])
        for j in range(ncols):
            ax = axes[i, j]
            if j >= row.shape[0]:
                ax.set_axis_off()
                continue
            im = _show(ax, row[j], vmax)
            if titles is not None and j < len(titles[i]):
                ax.set_title(titles[i][j], fontsize=8)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=9)
        if share == "row":
            _colorbar(fig, im, axes[i, :])
    if share == "figure":
        _colorbar(fig, im, axes)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_dct_basis(shape: Sequence[int] = (3, 3), *, fig: "Figure | None" = None) -> "Figure":
    """The 2-D DCT-II basis with its frequency-order index numbers (Fig. F.1).

    The first row and column show the 1-D basis vectors whose outer product makes each
    2-D basis filter; the number above each filter is its index from low to high
    frequency (:func:`explainfix.kernels.frequency_order`).

    Args:
        shape: 2-D kernel shape ``(h, w)``.
        fig: Figure to draw into.
    """
    h, w = (int(s) for s in shape)
    basis = K.dct_basis((h, w), dtype=torch.float64)
    rank = {raster: i for i, raster in enumerate(K.frequency_order((h, w)))}
    rows_1d, cols_1d = K.dct_basis_1d(h, dtype=torch.float64), K.dct_basis_1d(w, dtype=torch.float64)
    fig = _new_figure(fig, (1.1 * (w + 1) + 1.2, 1.1 * (h + 1) + 0.6))
    axes = fig.subplots(h + 1, w + 1, squeeze=False)
    vmax = _vmax([basis, rows_1d, cols_1d])
    axes[0, 0].set_axis_off()
    for c in range(w):
        im = _show(axes[0, c + 1], cols_1d[c][None, :], vmax)
        axes[0, c + 1].set_title(f"$k_2$={c}", fontsize=8)
    for r in range(h):
        _show(axes[r + 1, 0], rows_1d[r][:, None], vmax)
        axes[r + 1, 0].set_ylabel(f"$k_1$={r}", fontsize=8)
    for r in range(h):
        for c in range(w):
            im = _show(axes[r + 1, c + 1], basis[r * w + c], vmax)
            axes[r + 1, c + 1].set_title(str(rank[r * w + c]), fontsize=10, fontweight="bold")
    _colorbar(fig, im, axes)
    fig.suptitle(f"DCT-II basis, {h}x{w}: index = low to high frequency")
    return fig


def plot_ghaar_basis(*, fig: "Figure | None" = None) -> "Figure":
    """Haar and GHaar basis filters (Fig. 3).

    Top row: the 2-D Haar basis, ``b a^T``, ``a b^T``, ``b b^T`` with ``a = cos(0 x)``,
    ``b = cos(1 x)``, ``x = linspace(0, pi, 2)``. Bottom row: the same construction for
    3x3 filters (``x = linspace(0, pi, 3)``), the GHaar basis at ``f = 1``. The ones
    matrix ``a a^T`` is not used.
    """
    rows = []
    for size in (2, 3):
        params = K.GHaarParams(torch.ones(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
        rows.append(K.ghaar_from_params(params, (size, size)))
    titles = [["$b a^T$ (h)", "$a b^T$ (v)", "$b b^T$ (d)"]] * 2
    return plot_filter_grid(
        rows,
        row_labels=["2-D Haar\n2x2", "GHaar\n3x3, f=1"],
        titles=titles,
        suptitle="GHaar basis: $a$ = cos(0x), $b$ = cos(fx), x = linspace(0, π, N)",
        fig=fig,
    )


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def plot_ghaar_filters(
    n: int = 6, shape: Sequence[int] = (3, 3), *, hires: int = HIRES, seed: int = 0, fig: "Figure | None" = None
) -> "Figure":
    """Random GHaar filters as ``shape`` (top) and ``hires x hires`` with the same parameters (bottom; Fig. 4)."""
    params = K.ghaar_params(n, shape, generator=_generator(seed))
    small, large = K.ghaar_from_params(params, shape), K.ghaar_from_params(params, (hires, hires))
    titles = [f"f={f:.2f}" for f in params.frequencies.tolist()]
    k = "x".join(map(str, shape))
    return plot_filter_grid(
        [small, large],
        row_labels=[k, f"{hires}x{hires}"],
        titles=[titles, []],
        suptitle="GHaar filters (random frequency f and steering weights)",
        fig=fig,
    )


def plot_psine_filters(
    n: int = 6, shape: Sequence[int] = (3, 3), *, hires: int = HIRES, seed: int = 0, fig: "Figure | None" = None
) -> "Figure":
    """Random Psine filters as ``shape`` (top) and ``hires x hires`` with the same parameters (bottom; Fig. 6)."""
    params = K.psine_params(n, shape, generator=_generator(seed))
    small, large = K.psine_from_params(params, shape), K.psine_from_params(params, (hires, hires))
    titles = [f"ℓ={int(t)}, max p={int(p)}" for t, p in zip(params.terms, params.powers.amax(1))]
    k = "x".join(map(str, shape))
    return plot_filter_grid(
        [small, large],
        row_labels=[k, f"{hires}x{hires}"],
        titles=[titles, []],
        suptitle="Psine filters (min-max to [-1, 1], unit norm)",
        share="row",
        fig=fig,
    )


def plot_psine_steering(
    terms: Sequence[int] = (4, 6, 10, 16, 30, 60), *, size: int = HIRES, seed: int = 0, fig: "Figure | None" = None
) -> "Figure":
    """Psine with full and degenerate steering (Fig. 5).

    Top row: ``ℓ >= 2 max(p) + 1`` (the powers Psine draws). Bottom row: the same
    sinusoids and weights with every power raised by ``ℓ``, which breaks the
    constraint and gives degenerate filters.
    """
    t = torch.tensor([int(x) for x in terms])
    full = K.psine_params(len(t), (size, size), terms=t, generator=_generator(seed))
    degenerate = dataclasses.replace(full, powers=torch.where(full.mask, full.powers + t[:, None], 0))
    rows, titles = [], []
    for params in (full, degenerate):
        rows.append(K.psine_from_params(params, (size, size)))
        titles.append([f"ℓ={int(a)}, max p={int(b)}" for a, b in zip(params.terms, params.powers.amax(1))])
    return plot_filter_grid(
        rows,
        row_labels=["ℓ ≥ 2 max(p) + 1\n(full)", "ℓ < 2 max(p) + 1\n(degenerate)"],
        titles=titles,
        suptitle=f"Psine: full and degenerate steering ({size}x{size})",
        fig=fig,
    )


def _default_guide(seed: int) -> nn.Module:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return torchvision.models.densenet121(weights=None)


def plot_guided_steer_filters(
    guide: nn.Module | None = None,
    n: int = 8,
    shape: Sequence[int] = (3, 3),
    *,
    layer: int = 0,
    sampler: str = "kde",
    seed: int = 0,
    fig: "Figure | None" = None,
) -> "Figure":
    """Guide filters and GuidedSteer filters sampled from them (Fig. 7).

    Args:
        guide: Guide model; default a randomly initialized torchvision DenseNet121 (no download).
        n: Filters per row.
        shape: Kernel shape of the guide filters to use.
        layer: Which guide layer of that shape gives the steering distributions (the basis
            comes from all guide filters of that shape).
        sampler: ``"kde"`` or ``"normal"``.
        seed: Seed of the default guide and of the sampling.
        fig: Figure to draw into.
    """
    from explainfix.init.guided_steer import guide_filters, guided_steer_kernels

    default = guide is None
    guide = _default_guide(seed) if default else guide
    shape = tuple(int(s) for s in shape)
    layers = [(name, f) for name, f in guide_filters(guide) if tuple(f.shape[1:]) == shape]
    if not layers:
        raise ValueError(f"the guide has no {shape} filters")
    if isinstance(layer, bool) or not isinstance(layer, int) or not -len(layers) <= layer < len(layers):
        raise ValueError(
            f"layer must index one of the guide's {len(layers)} layers with {shape} filters, got {layer!r}"
        )
    name, filters = layers[layer]
    gen = _generator(seed)
    everything = torch.cat([f for _, f in layers])
    sampled = guided_steer_kernels(n, filters, basis_filters=everything, sampler=sampler, generator=gen, dtype=torch.float64)
    shown = filters[torch.randperm(filters.shape[0], generator=gen)[:n]]
    k = "x".join(map(str, shape))
    return plot_filter_grid(
        [shown, sampled],
        row_labels=["guide", f"GuidedSteer\n({sampler})"],
        suptitle=(
            f"GuidedSteer {k} filters; guide: {type(guide).__name__}{' (random init)' if default else ''}, "
            f"layer {name}"
        ),
        fig=fig,
    )


def render_filter_figures(out_dir: str | os.PathLike, formats: Sequence[str] = ("png",), seed: int = 0) -> list[Path]:
    """Write every filter picture to ``out_dir`` (created if needed), files written atomically.

    Args:
        out_dir: Output folder.
        formats: File formats, any of ``png``, ``pdf``, ``svg``.
        seed: Seed of the random filters.

    Returns:
        Paths written, in order.

    Example:
        >>> paths = render_filter_figures("out/filters")  # doctest: +SKIP
    """
    from explainfix.explain.plot import FIGURE_FORMATS, save_figure

    formats = [f.lower().lstrip(".") for f in formats]
    bad = sorted(set(formats) - set(FIGURE_FORMATS))
    if bad or not formats:
        raise ValueError(f"unsupported figure format(s) {bad or formats}; use {', '.join(FIGURE_FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "dct_basis_3x3": lambda: plot_dct_basis((3, 3)),
        "dct_basis_5x5": lambda: plot_dct_basis((5, 5)),
        "ghaar_basis": plot_ghaar_basis,
        "ghaar_filters": lambda: plot_ghaar_filters(seed=seed),
        "psine_filters": lambda: plot_psine_filters(seed=seed),
        "psine_steering": lambda: plot_psine_steering(seed=seed),
        "guided_steer_filters": lambda: plot_guided_steer_filters(seed=seed),
    }
    paths = []
    for name, make in makers.items():
        paths += save_figure(make(), out / name, formats)
    return paths
