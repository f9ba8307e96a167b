"""Training: the run config, the loop, its checkpoints, and the paper's losses and metrics.

Example:
    >>> from explainfix.train import train, load_config
    >>> config = load_config({"arm": {"init": "ghaar"}, "epochs": 2})
    >>> result = train(config, "runs/ghaar", progress=False)  # doctest: +SKIP
"""
from __future__ import annotations

from .config import ConfigError, TrainConfig, apply_overrides, config_hash, load_config
from .losses import ChexpertFocalBCE, PixelBCE, u_ignore
from .metrics import (
    AUCResult,
    BinaryCounts,
    ConfusionMatrix,
    binary_counts,
    dice,
    dice_per_image,
    mcc,
    multilabel_auc,
    roc_auc,
    study_auc,
)
from .run import RunError, TrainingInterrupted, build_arm, train
from .step import TrainStep, build_optimizer, trainable_parameters

__all__ = [
    "train",
    "build_arm",
    "TrainConfig",
    "ConfigError",
    "RunError",
    "TrainingInterrupted",
    "load_config",
    "apply_overrides",
    "config_hash",
    "TrainStep",
    "build_optimizer",
    "trainable_parameters",
    "ChexpertFocalBCE",
    "PixelBCE",
    "u_ignore",
    "AUCResult",
    "BinaryCounts",
    "ConfusionMatrix",
    "binary_counts",
    "dice",
    "dice_per_image",
    "mcc",
    "multilabel_auc",
    "roc_auc",
    "study_auc",
]
