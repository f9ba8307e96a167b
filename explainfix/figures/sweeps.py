"""Pictures of a sweep's collected tables (:func:`explainfix.sweep.collect`): the paper's training figures.

Each function draws onto ``ax`` (a new figure when omitted) and returns the axes; the numbers come
from :mod:`explainfix.stats`. Matplotlib is imported lazily.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["plot_ci_curves", "plot_best_runs", "plot_value_table", "plot_grouped_bars", "plot_lines"]


def _axes(ax, figsize=(6, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _colors(groups: Sequence) -> dict:
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    out = {}
    for i, g in enumerate(groups):
        out[g] = "black" if g == "learned" else cycle[i % len(cycle)]
    return out


def plot_ci_curves(ci: pd.DataFrame, by: str = "arm", *, ax=None, title: str = "", ylabel: str = "",
                   significance: pd.DataFrame | None = None, log_x: bool = False, x: str = "epoch"):
    """Mean per epoch with its CI band per group (Figs. D.1, E.1, H.1, K.1).

    ``ci``: :func:`explainfix.stats.per_epoch_ci`'s table (``by, epoch, mean, low, high``).
    ``significance``: :func:`explainfix.stats.epoch_significance`'s table; epochs where the fixed
    arms beat the baseline are shaded green, where they lose red (App. D).
    """
    ax = _axes(ax)
    if significance is not None and len(significance):
        for _, r in significance.iterrows():
            if r["verdict"]:
                ax.axvspan(r["epoch"] - 0.5, r["epoch"] + 0.5, color="tab:green" if r["verdict"] == "better" else "tab:red",
                           alpha=0.12, lw=0)
    groups = list(dict.fromkeys(ci[by]))
    colors = _colors(groups)
    for g in groups:
        sub = ci[ci[by] == g].sort_values(x)
        ax.plot(sub[x], sub["mean"], color=colors[g], lw=1.5, label=str(g))
        ax.fill_between(sub[x], sub["low"], sub["high"], color=colors[g], alpha=0.2, lw=0)
    if log_x:
        ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_best_runs(best: pd.DataFrame, by: str = "arm", *, ax=None, title: str = "", ylabel: str = ""):
    """Fig. 8: one bar per group (its best run's mean over the epoch window) with the CI as error bar."""
    ax = _axes(ax, (6, 3.5))
    groups = list(best[by])
    colors = _colors(groups)
    xs = np.arange(len(groups))
    ax.bar(xs, best["mean"], yerr=[best["mean"] - best["low"], best["high"] - best["mean"]],
           color=[colors[g] for g in groups], capsize=4, alpha=0.85)
    ax.set_xticks(xs, [str(g) for g in groups], rotation=30, ha="right")
    lo = float(np.nanmin(best["low"]))
    hi = float(np.nanmax(best["high"]))
    pad = max(1e-3, 0.15 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_value_table(table: pd.DataFrame, *, ax=None, title: str = "", fmt: str = ".3f", cmap: str = "Greens",
                     vmin: float | None = None, vmax: float | None = None):
    """A rows x columns table drawn as an annotated heatmap (Fig. 10a: AUC; Fig. 10b: p-values)."""
    ax = _axes(ax, (1.2 + 0.9 * table.shape[1], 1 + 0.45 * table.shape[0]))
    values = table.to_numpy(float)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=30, ha="right")
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    finite = values[np.isfinite(values)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = values[i, j]
            ax.text(j, i, "-" if not np.isfinite(v) else format(v, fmt), ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v) and v > mid and cmap == "Greens" else "black")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return ax


def plot_grouped_bars(df: pd.DataFrame, group: str, hue: str, value: str, *, ax=None, title: str = "",
                      ylabel: str = "", low: str | None = None, high: str | None = None):
    """Bars of ``value`` per ``group`` (x) and ``hue`` (colour), with optional CI columns (Fig. 11)."""
    ax = _axes(ax, (6, 3.5))
    groups = list(dict.fromkeys(df[group]))
    hues = list(dict.fromkeys(df[hue]))
    colors = _colors(hues)
    width = 0.8 / max(1, len(hues))
    for k, h in enumerate(hues):
        sub = df[df[hue] == h].set_index(group).reindex(groups)
        xs = np.arange(len(groups)) + (k - (len(hues) - 1) / 2) * width
        err = None
        if low and high:
            err = [sub[value] - sub[low], sub[high] - sub[value]]
        ax.bar(xs, sub[value], width, yerr=err, capsize=3, color=colors[h], label=str(h), alpha=0.85)
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_lines(df: pd.DataFrame, x: str, y: str, hue: str, *, ax=None, title: str = "", xlabel: str = "",
               ylabel: str = "", low: str | None = None, high: str | None = None, categorical_x: bool = False,
               hlines: dict | None = None):
    """``y`` against ``x`` per ``hue`` with markers and optional CI bars (Figs. 9, L.1b).

    ``hlines``: ``{label: value}`` dashed horizontal references (L.1b's unpruned baselines).
    """
    ax = _axes(ax, (6, 3.5))
    hues = list(dict.fromkeys(df[hue]))
    colors = _colors(hues)
    order = list(dict.fromkeys(df[x])) if categorical_x else None
    for h in hues:
        sub = df[df[hue] == h]
        sub = sub.set_index(x).reindex(order).reset_index() if categorical_x else sub.sort_values(x)
        xs = np.arange(len(order)) if categorical_x else sub[x]
        err = [sub[y] - sub[low], sub[high] - sub[y]] if low and high else None
        ax.errorbar(xs, sub[y], yerr=err, marker="o", ms=4, capsize=3, color=colors[h], label=str(h))
    for label, v in (hlines or {}).items():
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.annotate(str(label), (0, v), xycoords=("axes fraction", "data"), fontsize=7, color="gray", va="bottom")
    if categorical_x:
        ax.set_xticks(range(len(order)), [str(o) for o in order])
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
