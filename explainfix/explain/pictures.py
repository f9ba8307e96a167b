"""The ExplainSteer pictures of one model, written to a folder (CLI, training runs, demo)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["write_pictures"]


def write_pictures(uniform, salient, out: Path, title: str, *, skip=(), log: bool = False,
                   formats=("png",)) -> list[Path]:
    """Write ``ed_heatmap``, ``ed_heatmap_saliency`` (when ``salient`` is given) and ``e0`` into ``out``.

    Args:
        uniform: :class:`~explainfix.explain.ExplainSteerResult` without saliency.
        salient: The same with saliency, or None.
        out: Existing output folder.
        title: Figure title prefix (model and init).
        skip, log: As in :func:`~explainfix.explain.plot.plot_explainsteer`.
        formats: Picture formats.

    Returns:
        The paths written.
    """
    from explainfix.explain.explainsteer import shape_label
    from explainfix.explain.plot import plot_explainsteer, plot_spectra_lines, save_figure

    written = []
    for result, stem, label in ((uniform, "ed_heatmap", "without saliency"), (salient, "ed_heatmap_saliency", "with saliency")):
        if result is None:
            continue
        fig = plot_explainsteer(result, skip=skip, log=log, title=f"{title}: $e^{{(d)}}$ {label}")
        written += save_figure(fig, out / stem, formats)

    square = [s for s in uniform.kernel_shapes if len(set(s)) == 1]
    if square:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.5 * len(square) + 1.5, 3.4), layout="constrained")
        axes = fig.subplots(1, len(square), squeeze=False)[0]
        for ax, shape in zip(axes, square):
            curves = {"uniform 1/n": uniform}
            if salient is not None:
                curves[f"saliency ({salient.saliency})"] = salient
            plot_spectra_lines(curves, shape, ax=ax, title=f"$e^{{(0)}}$, {shape_label(shape)} kernels")
        fig.suptitle(title)
        written += save_figure(fig, out / "e0", formats)
    return written
