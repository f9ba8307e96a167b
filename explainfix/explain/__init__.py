"""ExplainSteer: DCT-II energy spectra of spatial filters, gradient saliency and pictures.

* :func:`spectra` - Eqs. 3, 5, 6 for one set of kernels;
* :func:`spatial_saliency` - Eq. 4, one score per spatial kernel;
* :func:`explainsteer` - spectra of every spatial conv of a model;
* :func:`plot_explainsteer`, :func:`plot_ed_heatmap`, :func:`plot_spectra_lines` -
  the pictures (matplotlib is imported only when they are called);
* :func:`deletion_curve` - is the saliency faithful? metric as salient kernels are zeroed.
"""
from explainfix.explain.explainsteer import ExplainSteerResult, LayerSpectra, explainsteer
from explainfix.explain.saliency import spatial_saliency
from explainfix.explain.spectra import Spectra, spectra, spectra_from_energy

__all__ = [
    "Spectra",
    "spectra",
    "spectra_from_energy",
    "spatial_saliency",
    "explainsteer",
    "ExplainSteerResult",
    "LayerSpectra",
    "plot_explainsteer",
    "plot_ed_heatmap",
    "plot_spectra_lines",
    "deletion_curve",
    "DeletionCurve",
]


def __getattr__(name: str):
    if name in ("plot_explainsteer", "plot_ed_heatmap", "plot_spectra_lines"):
        from explainfix.explain import plot

        return getattr(plot, name)
    if name in ("deletion_curve", "DeletionCurve"):
        from explainfix.explain import faithfulness

        return getattr(faithfulness, name)
    raise AttributeError(f"module 'explainfix.explain' has no attribute {name!r}")
