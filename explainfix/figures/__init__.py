"""Pictures of spatial filters: the DCT-II basis and the fixed initializations (Figs. 3-7, F.1).

Matplotlib is imported lazily, inside the functions.
"""
from explainfix.figures.filters import (
    plot_dct_basis,
    plot_filter_grid,
    plot_ghaar_basis,
    plot_ghaar_filters,
    plot_guided_steer_filters,
    plot_psine_filters,
    plot_psine_steering,
    render_filter_figures,
)

__all__ = [
    "plot_dct_basis",
    "plot_filter_grid",
    "plot_ghaar_basis",
    "plot_ghaar_filters",
    "plot_guided_steer_filters",
    "plot_psine_filters",
    "plot_psine_steering",
    "render_filter_figures",
]
