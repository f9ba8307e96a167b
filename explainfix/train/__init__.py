"""Training utilities: losses (Appendix C) and evaluation metrics.

Example:
    >>> from explainfix.train import ChexpertFocalBCE, multilabel_auc, dice
"""
from __future__ import annotations

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

__all__ = [
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
