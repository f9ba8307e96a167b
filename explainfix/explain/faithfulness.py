"""Is the saliency faithful? Deletion curves: a metric as the most / least / random salient kernels are zeroed.

Fig. I.1 of the paper, for any model and any metric: zero a growing fraction of the spatial
kernels - the most salient first, the least salient first, or in random order - and measure the
model each time. A saliency that ranks kernels by their real influence keeps the metric near its
starting value when the least salient kernels go, and loses it fast when the most salient go. One
number sums the separation up: the (normalised) area between the least-first and the most-first
curves, :attr:`DeletionCurve.area_between`, in metric units; 0 means the ranking is no better than
its reverse, and random order should land in between.

    >>> curve = deletion_curve(model, scores, lambda m: accuracy(m, test_loader))  # doctest: +SKIP
    >>> print(curve.summary())  # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from explainfix.prune.channelprune import check_scores, zero_kernels

__all__ = ["DeletionCurve", "deletion_curve", "DEFAULT_FRACTIONS", "ORDERS"]

#: fractions of all spatial kernels zeroed (dense near 1, where the paper's Fig. I.1 uses a log axis)
DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
ORDERS = ("most", "least", "random")


@dataclass
class DeletionCurve:
    """Metric per zeroed fraction for each order (``random``: mean over ``repeats`` random orders)."""

    fractions: list[float]
    curves: dict[str, list[float]]
    metric: str = "metric"
    higher_is_better: bool = True
    random_std: list[float] | None = None
    repeats: int = 0
    notes: list[str] = field(default_factory=list)

    def area(self, order: str) -> float:
        """Mean of the curve over the fraction range (trapezoid area / range width)."""
        x, y = np.asarray(self.fractions, float), np.asarray(self.curves[order], float)
        width = x[-1] - x[0]
        return float(np.trapezoid(y, x) / width) if width > 0 else float(y.mean())

    @property
    def area_between(self) -> float:
        """Area between the least-first and the most-first curves (> 0: the saliency separates)."""
        sign = 1.0 if self.higher_is_better else -1.0
        return sign * (self.area("least") - self.area("most"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["area"] = {o: self.area(o) for o in self.curves}
        if {"least", "most"} <= set(self.curves):
            d["area_between"] = self.area_between
        return d

    def summary(self) -> str:
        lines = [f"deletion curve of {self.metric} ({'higher' if self.higher_is_better else 'lower'} is better)",
                 "fraction zeroed " + " ".join(f"{f:>7.3g}" for f in self.fractions)]
        for order, ys in self.curves.items():
            lines.append(f"{order + ' first':<15} " + " ".join(f"{y:>7.4g}" for y in ys) + f"   area {self.area(order):.4g}")
        if {"least", "most"} <= set(self.curves):
            lines.append(f"area between least-first and most-first: {self.area_between:.4g} {self.metric} "
                         "(> 0: the saliency ranks kernels by their influence)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def plot(self, ax=None, title: str | None = None, log: bool = False):
        """Line plot of the curves (random with a ±1 std band); returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
        x = np.asarray(self.fractions, float)
        styles = {"most": ("tab:red", "most salient first"), "least": ("tab:green", "least salient first"),
                  "random": ("tab:gray", "random order")}
        for order, ys in self.curves.items():
            color, label = styles.get(order, (None, order))
            ax.plot(x, ys, marker="o", ms=3, color=color, label=label)
            if order == "random" and self.random_std and self.repeats > 1:
                y, s = np.asarray(ys), np.asarray(self.random_std)
                ax.fill_between(x, y - s, y + s, color=color, alpha=0.2, lw=0)
        if log:
            ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("fraction of spatial kernels zeroed")
        ax.set_ylabel(self.metric)
        ax.set_title(title or (f"area between: {self.area_between:.3g}" if "least" in self.curves else ""))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return ax


def _ordered(scores: Mapping[str, torch.Tensor], order: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Scores whose lowest values are zeroed first."""
    if order == "least":
        return {k: v.detach().double().cpu() for k, v in scores.items()}
    if order == "most":
        return {k: -v.detach().double().cpu() for k, v in scores.items()}
    return {k: torch.rand(v.shape, generator=generator, dtype=torch.float64) for k, v in scores.items()}


def deletion_curve(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor],
    metric_fn: Callable[[nn.Module], float],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    orders: Sequence[str] = ORDERS,
    repeats: int = 3,
    seed: int = 0,
    metric: str = "metric",
    higher_is_better: bool = True,
    progress: bool = True,
) -> DeletionCurve:
    """Zero ``fractions`` of the spatial kernels in each order and measure ``metric_fn(model)``.

    Args:
        model: any model with spatial convs; its weights are restored bit for bit afterwards (also
            on error or Ctrl-C), its train/eval mode is left to ``metric_fn``.
        scores: ``{layer: kernel scores}`` as :func:`explainfix.spatial_saliency` returns (or
            :func:`explainfix.prune.weight_scores`).
        metric_fn: the model -> a number (e.g. test AUC); called once per point.
        fractions: increasing values in [0, 1).
        orders: any of ``"most"``, ``"least"``, ``"random"``.
        repeats: random orders averaged for ``"random"`` (their std is kept).

    Raises:
        ValueError: unknown orders, fractions outside [0, 1) or not increasing, ``repeats < 1``,
            scores that do not match the model's spatial convs, a metric that is not a finite number.
    """
    fractions = [float(f) for f in fractions]
    if not fractions or any(not (0 <= f < 1) for f in fractions) or any(b <= a for a, b in zip(fractions, fractions[1:])):
        raise ValueError(f"fractions must be increasing values in [0, 1), got {fractions}")
    bad = [o for o in orders if o not in ORDERS]
    if bad or not orders:
        raise ValueError(f"orders must be among {ORDERS}, got {list(orders)}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    layers = check_scores(model, scores)
    saved = {name: conv.weight.detach().clone() for name, conv in layers}
    generator = torch.Generator().manual_seed(seed)
    points = [(o, r) for o in orders for r in range(repeats if o == "random" else 1)]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(points) * len(fractions), desc="deletion curve", disable=not progress, leave=False)
    raw: dict[str, list[list[float]]] = {o: [] for o in orders}
    try:
        for order, _ in points:
            ordered = _ordered(scores, order, generator)
            ys = []
            for fraction in fractions:
                _restore(layers, saved)
                with torch.no_grad():
                    zero_kernels(model, ordered, fraction)
                value = float(metric_fn(model))
                if not math.isfinite(value):
                    raise ValueError(f"metric_fn returned {value} at {fraction:g} zeroed ({order} first)")
                ys.append(value)
                bar.update()
            raw[order].append(ys)
    finally:
        _restore(layers, saved)
        bar.close()
    curves = {o: np.mean(raw[o], axis=0).tolist() for o in orders}
    std = np.std(raw["random"], axis=0).tolist() if "random" in orders else None
    notes = []
    if "most" in orders and "least" in orders:
        b = DeletionCurve(fractions, curves, metric, higher_is_better).area_between
        if b <= 0:
            notes.append("least-first does not stay above most-first: the scores do not rank kernels by influence here")
    return DeletionCurve(fractions, curves, metric, higher_is_better, std, repeats if "random" in orders else 0, notes)


def _restore(layers, saved) -> None:
    with torch.no_grad():
        for name, conv in layers:
            conv.weight.copy_(saved[name])
