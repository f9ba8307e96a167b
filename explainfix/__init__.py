"""ExplainFix: explainable spatially fixed deep networks.

Fix every spatial convolution of a CNN at a steered initialization, explain its
spatial filters with ExplainSteer, and prune it with ChannelPrune.

The public API is listed in ``__all__``; submodules load on first use so that
``import explainfix`` stays light.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    # spatial layers
    "is_spatial_conv": "explainfix.spatial",
    "spatial_convs": "explainfix.spatial",
    "fix_spatial": "explainfix.spatial",
    "unfix_spatial": "explainfix.spatial",
    "NoSpatialConvError": "explainfix.spatial",
    # kernels
    "dct_basis": "explainfix.kernels",
    "frequency_order": "explainfix.kernels",
    "ones_kernels": "explainfix.kernels",
    "dct2_kernels": "explainfix.kernels",
    "ghaar_kernels": "explainfix.kernels",
    "psine_kernels": "explainfix.kernels",
    # fixed initializations
    "list_inits": "explainfix.init",
    "register_init": "explainfix.init",
    "initialize": "explainfix.init",
    "InitReport": "explainfix.init",
    "calibrate_batchnorm": "explainfix.init.batchnorm",
    # ExplainSteer
    "spectra": "explainfix.explain",
    "Spectra": "explainfix.explain",
    "spatial_saliency": "explainfix.explain",
    "explainsteer": "explainfix.explain",
    "ExplainSteerResult": "explainfix.explain",
    "plot_explainsteer": "explainfix.explain",
    "plot_spectra_lines": "explainfix.explain",
    "deletion_curve": "explainfix.explain.faithfulness",
    "DeletionCurve": "explainfix.explain.faithfulness",
    # ChannelPrune
    "channelprune": "explainfix.prune",
    "PruneReport": "explainfix.prune",
    "measure_latency": "explainfix.prune.latency",
    "compare_latency": "explainfix.prune.latency",
    "save": "explainfix.checkpoint",
    "load": "explainfix.checkpoint",
    # models
    "create_model": "explainfix.models",
    "list_models": "explainfix.models",
    "register_model": "explainfix.models",
    "UNetD": "explainfix.models",
    # losses and metrics
    "ChexpertFocalBCE": "explainfix.train.losses",
    "PixelBCE": "explainfix.train.losses",
    "roc_auc": "explainfix.train.metrics",
    "multilabel_auc": "explainfix.train.metrics",
    "study_auc": "explainfix.train.metrics",
    "mcc": "explainfix.train.metrics",
    "dice": "explainfix.train.metrics",
    "ConfusionMatrix": "explainfix.train.metrics",
    # training, sweeps and their statistics
    "train": "explainfix.train",
    "load_config": "explainfix.train.config",
    "TrainConfig": "explainfix.train.config",
    "run_sweep": "explainfix.sweep",
    "mean_ci": "explainfix.stats",
    "per_epoch_ci": "explainfix.stats",
    "wilcoxon_table": "explainfix.stats",
    "windowed_wilcoxon": "explainfix.stats",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'explainfix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
