"""ExplainSteer pictures: ``e^(d)`` heatmaps over layers and ``e^(0)`` / ``e^(1)`` lines.

Matplotlib is imported when a function is called, never at import time. Every
function takes an optional ``ax`` / ``fig``, returns the figure and never shows it;
save it with :func:`save_figure` (PNG, PDF or SVG).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from explainfix.explain.explainsteer import ExplainSteerResult, shape_label
from explainfix.explain.spectra import Spectra
from explainfix.fileio import atomic_write

__all__ = ["plot_ed_heatmap", "plot_explainsteer", "plot_spectra_lines", "save_figure", "FIGURE_FORMATS"]

FIGURE_FORMATS = ("png", "pdf", "svg")
#: default dynamic range of logarithmic colour scales, in decades
LOG_DECADES = 4


def _norm(values: np.ndarray, *, log: bool, vmin: float | None, vmax: float | None):
    """A colour normalisation that never fails (all-zero maps give ``[0, 1]``)."""
    from matplotlib import colors

    finite = values[np.isfinite(values)]
    hi = float(finite.max()) if finite.size else 0.0
    vmax = hi if vmax is None else float(vmax)
    if log:
        positive = finite[finite > 0]
        if vmax <= 0:
            vmax = 1.0
        # default floor: the smallest positive value, but at most LOG_DECADES below the top
        # (round-off energies such as a whitened filter's constant term would flatten the rest)
        lo = max(float(positive.min()), vmax * 10.0 ** -LOG_DECADES) if positive.size else 0.0
        vmin = lo if vmin is None or vmin <= 0 else float(vmin)
        if vmin <= 0 or vmin >= vmax:
            vmin = vmax * 1e-6
        return colors.LogNorm(vmin=vmin, vmax=vmax, clip=True)
    vmin = 0.0 if vmin is None else float(vmin)
    if not vmax > vmin:
        vmax = vmin + 1.0
    return colors.Normalize(vmin=vmin, vmax=vmax, clip=True)


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _default_shape(result: ExplainSteerResult, skip: Iterable[str]) -> tuple[int, ...]:
    skip = set(skip)
    counts = {s: sum(l.name not in skip for l in ls) for s, ls in result.by_shape().items()}
    return max(counts, key=counts.get)


def plot_ed_heatmap(
    result: ExplainSteerResult,
    shape: Sequence[int] | None = None,
    *,
    skip: Iterable[str] = (),
    ax=None,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "Greens",
    title: str | None = None,
    max_names: int = 32,
    colorbar: bool = True,
):
    """The ``e^(d)`` heatmap of one kernel shape over layers (Fig. 12a, App. G).

    Columns are the layers of that shape in model order, rows the DCT-II basis
    filters in frequency order (row 0 = the constant "bias" filter, then vertical
    and horizontal gradients, ... as numbered in App. F). A bar plot above shows
    each column's sum (energy per layer), one on the right each row's sum (energy
    per basis filter). Energies are nonnegative; darker means more energy.

    Args:
        result: An :class:`~explainfix.explain.explainsteer.ExplainSteerResult`.
        shape: Kernel shape to draw; default the shape with the most layers.
        skip: Layer names to leave out (e.g. DenseNet's 7x7 stem ``"features.conv0"``).
        ax: Axes for the heatmap (bars and colour bar are appended beside it);
            a new figure when omitted.
        log: Logarithmic colour scale (zeros drawn in the lowest colour).
        vmin, vmax: Colour limits (share them across panels to compare); default
            ``0`` and the map's maximum; with ``log`` the smallest positive value
            but at most :data:`LOG_DECADES` decades below the maximum (lower values
            get the lowest colour). An all-zero map is drawn without error.
        cmap: Matplotlib colour map (a sequential one reads in grayscale too).
        title: Panel title; default ``"e^(d), 3x3 kernels"``.
        max_names: Label columns with layer names when there are at most this
            many layers, else with layer indices.
        colorbar: Draw a colour bar.

    Returns:
        The matplotlib ``Figure``.
    """
    from matplotlib.ticker import MaxNLocator

    shape = _default_shape(result, skip) if shape is None else tuple(int(s) for s in shape)
    E_t, names = result.ed_matrix(shape, skip)
    E = E_t.detach().cpu().double().numpy()
    m, n_layers = E.shape
    fig, ax = _new_axes(ax, (max(4.0, 2.5 + 0.16 * n_layers), max(3.0, 1.8 + 0.16 * m)))
    norm = _norm(E, log=log, vmin=vmin, vmax=vmax)
    import matplotlib

    colormap = matplotlib.colormaps[cmap]
    colormap = colormap.with_extremes(bad=colormap(0.0))  # log scale: zeros in the lowest colour
    shown = np.ma.masked_less_equal(E, 0) if log else E
    image = ax.imshow(shown, aspect="auto", cmap=colormap, norm=norm, interpolation="nearest")
    ax.set_xlabel("spatial layer index" if n_layers > max_names else "spatial layer")
    ax.set_ylabel("basis filter index (low → high frequency)")
    ax.set_yticks(range(m) if m <= 16 else range(0, m, 2))
    if 0 < n_layers <= max_names:
        ax.set_xticks(range(n_layers), names, rotation=90, fontsize="x-small")
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)

    # bars and colour bar as inset axes: they move with the heatmap and constrained
    # layout makes room for them
    bar_height = 0.22 * min(1.0, 9.0 / m) ** 0.5  # about the same height in inches for 3x3 ... 7x7
    top = ax.inset_axes((0.0, 1.03, 1.0, bar_height), sharex=ax)
    right = ax.inset_axes((1.02, 0.0, 0.13, 1.0), sharey=ax)
    top.bar(np.arange(n_layers), E.sum(axis=0), width=0.85, color="0.35")
    right.barh(np.arange(m), E.sum(axis=1), height=0.85, color="0.35")
    top.tick_params(labelbottom=False, labelsize="x-small")
    right.tick_params(labelleft=False, labelsize="x-small")
    top.yaxis.set_major_locator(MaxNLocator(2))
    top.yaxis.tick_right()  # keeps its labels clear of the heatmap's y label
    right.xaxis.set_major_locator(MaxNLocator(2))
    right.set_xlabel("row sum", fontsize="x-small")
    for spine in ("top", "right"):
        top.spines[spine].set_visible(False)
        right.spines[spine].set_visible(False)
    if colorbar:
        cax = ax.inset_axes((1.18, 0.0, 0.025, 1.0))
        cbar = fig.colorbar(image, cax=cax)
        cbar.set_label("energy" + (" (log scale)" if log else ""), fontsize="small")
        cbar.ax.tick_params(labelsize="x-small")
    weighting = "saliency" if result.saliency else "uniform 1/n"
    top.set_title(title if title is not None else f"$e^{{(d)}}$, {shape_label(shape)} kernels ({weighting})",
                  fontsize="medium")
    return fig


def plot_explainsteer(
    result: ExplainSteerResult,
    *,
    shapes: Iterable[Sequence[int]] | None = None,
    skip: Iterable[str] = (),
    fig=None,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    share_scale: bool = False,
    cmap: str = "Greens",
    title: str | None = None,
):
    """One :func:`plot_ed_heatmap` panel per kernel shape, stacked (App. G).

    Args:
        result: The spectra to draw.
        shapes: Kernel shapes to draw, in this order; default every shape that has a
            layer not in ``skip`` (e.g. EfficientNet's 3x3 and 5x5).
        skip: Layer names to leave out.
        fig: Figure to draw into (cleared); a new one when omitted.
        log, vmin, vmax, cmap: As in :func:`plot_ed_heatmap`.
        share_scale: One colour scale for all panels (max over all of them).
        title: Figure title.

    Returns:
        The matplotlib ``Figure``.
    """
    skip = list(skip)
    if shapes is None:
        shapes = [s for s, ls in result.by_shape().items() if any(l.name not in skip for l in ls)]
    shapes = [tuple(int(k) for k in s) for s in shapes]
    if not shapes:
        raise ValueError("nothing to draw: every layer is skipped")
    mats = [result.ed_matrix(s, skip)[0] for s in shapes]
    if share_scale and vmax is None:
        vmax = max((float(E.max()) for E in mats if E.numel()), default=0.0)
    if share_scale and log and vmin is None:
        positive = [float(E[E > 0].min()) for E in mats if bool((E > 0).any())]
        vmin = max(min(positive), (vmax or 0.0) * 10.0 ** -LOG_DECADES) if positive else None
    widest = max(E.shape[1] for E in mats)
    heights = [max(2.5, 1.5 + 0.16 * E.shape[0]) for E in mats]
    if fig is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(6.0, 3.0 + 0.16 * widest), sum(heights) + 0.4), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(len(shapes), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, shape in zip(axes, shapes):
        plot_ed_heatmap(result, shape, skip=skip, ax=ax, log=log, vmin=vmin, vmax=vmax, cmap=cmap)
    if title:
        fig.suptitle(title)
    return fig


def _curve(item, shape: tuple[int, ...], which: str) -> torch.Tensor | None:
    if isinstance(item, ExplainSteerResult):
        if shape not in item.kernel_shapes:
            return None
        return item.global_e0(shape) if which == "e0" else item.global_e1(shape)
    if isinstance(item, Spectra):
        return item.e0 if which == "e0" else item.e1
    return torch.as_tensor(item)


def plot_spectra_lines(
    spectra_by_model: Mapping[str, ExplainSteerResult | Spectra | torch.Tensor],
    shape: Sequence[int] = (3, 3),
    *,
    which: str = "e0",
    normalize: str | None = "sum",
    ax=None,
    title: str | None = None,
):
    """``e^(0)`` (or ``e^(1)``) of several models as lines (Fig. 12b).

    For an :class:`ExplainSteerResult` the curve is the sum over all its layers of
    the given kernel shape (``global_e0`` / ``global_e1``); models without such
    layers are left out.

    Args:
        spectra_by_model: ``{label: result, Spectra or 1-D tensor}``.
        shape: Kernel shape (square for ``e0``).
        which: ``"e0"`` (energy per frequency) or ``"e1"`` (per dimension and
            frequency).
        normalize: ``"sum"`` (each curve sums to 1), ``"max"`` (peak 1) or ``None``.
            All-zero curves stay zero.
        ax: Axes to draw into; a new figure when omitted.
        title: Axes title.

    Returns:
        The matplotlib ``Figure``.
    """
    if which not in ("e0", "e1"):
        raise ValueError(f"which must be 'e0' or 'e1', got {which!r}")
    if normalize not in ("sum", "max", None):
        raise ValueError(f"normalize must be 'sum', 'max' or None, got {normalize!r}")
    shape = tuple(int(s) for s in shape)
    fig, ax = _new_axes(ax, (5.0, 3.5))
    length = None
    for label, item in spectra_by_model.items():
        curve = _curve(item, shape, which)
        if curve is None:
            continue
        y = curve.detach().cpu().double().numpy()
        scale = {"sum": y.sum(), "max": y.max() if y.size else 0.0, None: 1.0}[normalize]
        if scale > 0:
            y = y / scale
        length = len(y)
        ax.plot(np.arange(len(y)), y, marker="o", label=str(label))
    if length is None:
        raise ValueError(f"no model has {shape_label(shape)} kernels with a {which} spectrum")
    if which == "e0":
        ax.set_xticks(range(length))
        ax.set_xlabel("1-D frequency index (low → high)")
    else:
        ticks = [f"d{j + 1}:{k}" for j, n in enumerate(shape) for k in range(n)]
        ax.set_xticks(range(length), ticks[:length], fontsize="small")
        ax.set_xlabel("dimension : 1-D frequency index")
    ylabel = {"sum": "share of energy", "max": "energy / max", None: "energy"}[normalize]
    ax.set_ylabel(ylabel)
    top = max((float(np.max(line.get_ydata())) for line in ax.get_lines()), default=0.0)
    ax.set_ylim(0, top * 1.08 if top > 0 else 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set_title(title if title is not None else f"$e^{{({which[1]})}}$, {shape_label(shape)} kernels")
    return fig


def save_figure(fig, path: str | os.PathLike, formats: Sequence[str] = ("png",), dpi: int = 150) -> list[Path]:
    """Save a figure atomically as ``path.<format>`` for each format.

    Args:
        fig: The figure.
        path: Target path without extension (an extension is replaced).
        formats: Any of :data:`FIGURE_FORMATS`.
        dpi: Resolution of raster formats.

    Returns:
        The written paths.
    """
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad:
        raise ValueError(f"unsupported figure format(s) {bad}; choose from {list(FIGURE_FORMATS)}")
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = base.with_suffix("." + fmt)
        with atomic_write(target) as handle:
            fig.savefig(handle, format=fmt, dpi=dpi)
        written.append(target)
    return written
