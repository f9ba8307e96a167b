"""Evaluation metrics: ROC AUC (per task, mean, study level), MCC and Dice.

* ROC AUC is the Mann-Whitney U statistic on average ranks (ties count 1/2), so it
  equals the fraction of (positive, negative) pairs ordered correctly. A task with a
  single class present has no AUC: NaN with a warning.
* Multi-label labels follow the U-Ignore policy of :mod:`explainfix.train.losses`:
  1 positive, 0 negative, -1 uncertain (ignored), NaN missing (negative).
* Segmentation metrics threshold logits at ``> 0`` (probability > 0.5) and count pixels
  in a :class:`BinaryCounts` confusion matrix. Dice is ``2TP / (2TP + FP + FN)``; an
  image whose prediction and ground truth are both empty has Dice 1 (perfect
  agreement). MCC is 0 when undefined (a row or column of the matrix is empty).

Example:
    >>> import torch
    >>> roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
    0.75
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from ..data.studies import aggregate_by_study
from .losses import u_ignore

__all__ = [
    "roc_auc",
    "multilabel_auc",
    "study_auc",
    "aggregate_by_study",
    "AUCResult",
    "BinaryCounts",
    "ConfusionMatrix",
    "binary_counts",
    "mcc",
    "dice",
    "dice_per_image",
]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def roc_auc(scores, labels, *, name: str = "task") -> float:
    """Area under the ROC curve of binary ``labels`` ranked by ``scores``.

    Args:
        scores: ``(n,)`` real scores (logits or probabilities; any monotone map gives
            the same AUC).
        labels: ``(n,)`` binary labels (0/1 or bool).
        name: label used in the warning when AUC is undefined.

    Returns:
        AUC in [0, 1]; NaN (with a ``RuntimeWarning``) when only one class is present.

    Notes:
        ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the sum of
        the positives' average ranks (scipy.stats.rankdata), i.e. the Mann-Whitney U.
    """
    s = _numpy(scores).astype(np.float64).ravel()
    y = _numpy(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if np.isnan(s).any():
        raise ValueError(f"{name}: scores contain NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0 or 1")
    pos = y.astype(bool)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        warnings.warn(
            f"ROC AUC of {name} is undefined: only {'negative' if n_pos == 0 else 'positive'} labels "
            f"among {pos.size} samples; returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return math.nan
    ranks = rankdata(s)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class AUCResult:
    """Per-task ROC AUC and their mean over the tasks where AUC is defined.

    Attributes:
        per_task: AUC of each task (NaN where only one class is present).
        mean: mean of the defined per-task AUCs (NaN if none is defined).
        tasks: task names.
        counts: ``(n_pos, n_neg)`` used per task.
    """

    per_task: tuple[float, ...]
    mean: float
    tasks: tuple[str, ...]
    counts: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict[str, float]:
        """``{task: auc, ..., "mean": mean}``."""
        return {**dict(zip(self.tasks, self.per_task)), "mean": self.mean}


def _scores_and_labels(scores, labels, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``(N, T)`` float64 scores, U-Ignore labels and their validity, as numpy arrays."""
    s = _numpy(scores).astype(np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, T), got shape {s.shape}")
    lab = torch.as_tensor(_numpy(labels).astype(np.float64))
    if tuple(lab.shape) != s.shape:
        raise ValueError(f"labels shape {tuple(lab.shape)} differs from scores shape {s.shape}")
    y, valid = u_ignore(lab, None if mask is None else torch.as_tensor(_numpy(mask).astype(bool)))
    return s, y.numpy(), valid.numpy()


def multilabel_auc(scores, labels, mask=None, tasks: Sequence[str] | None = None) -> AUCResult:
    """ROC AUC of each task of a multi-label problem, ignoring uncertain / masked labels.

    Args:
        scores: ``(N, T)`` scores or logits.
        labels: ``(N, T)`` labels: 1, 0, -1 (uncertain, ignored), NaN (missing -> negative).
        mask: optional ``(N, T)`` boolean; False ignores an entry.
        tasks: optional task names (default ``"task0"``, ...).

    Returns:
        An :class:`AUCResult`.
    """
    s, y, valid = _scores_and_labels(scores, labels, mask)
    names = tuple(tasks) if tasks is not None else tuple(f"task{t}" for t in range(s.shape[1]))
    if len(names) != s.shape[1]:
        raise ValueError(f"{len(names)} task names for {s.shape[1]} tasks")
    per_task, counts = [], []
    for t, name in enumerate(names):
        keep = valid[:, t]
        yt = y[keep, t]
        counts.append((int(yt.sum()), int(keep.sum() - yt.sum())))
        per_task.append(roc_auc(s[keep, t], yt, name=name))
    defined = [a for a in per_task if not math.isnan(a)]
    mean = float(np.mean(defined)) if defined else math.nan
    return AUCResult(tuple(per_task), mean, names, tuple(counts))


def study_auc(
    scores, labels, study_ids: Sequence[Hashable], mask=None, tasks: Sequence[str] | None = None
) -> AUCResult:
    """Study-level multi-label ROC AUC: one prediction and one label per study.

    A study's score is the maximum of its views' scores; its label is the maximum of its
    views' valid labels (positive if any view is positive), and it is ignored for a task
    where none of its views has a valid label.

    Args:
        scores: ``(N, T)`` per-image scores.
        labels: ``(N, T)`` per-image labels (1, 0, -1 uncertain, NaN missing).
        study_ids: length-N study identifiers.
        mask: optional ``(N, T)`` boolean; False ignores an entry.
        tasks: optional task names.

    Returns:
        An :class:`AUCResult` over studies.
    """
    s, y, valid = _scores_and_labels(scores, labels, mask)
    ids = list(study_ids)
    if len(ids) != s.shape[0]:
        raise ValueError(f"{len(ids)} study ids for {s.shape[0]} images")
    _, s_study = aggregate_by_study(torch.from_numpy(s), ids)
    _, y_study = aggregate_by_study(torch.from_numpy(np.where(valid, y, 0.0)), ids)
    _, v_study = aggregate_by_study(torch.from_numpy(valid), ids)
    s_study, y_study, v_study = s_study.numpy(), y_study.numpy(), v_study.numpy()
    # invalid study labels become -1 (uncertain) so that multilabel_auc ignores them
    return multilabel_auc(s_study, np.where(v_study, y_study, -1.0), tasks=tasks)


@dataclass(frozen=True)
class BinaryCounts:
    """Binary confusion matrix (pixel or sample counts).

    Attributes:
        tp, fp, tn, fn: true / false positives and negatives.
    """

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def __add__(self, other: "BinaryCounts") -> "BinaryCounts":
        return BinaryCounts(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def dice(self) -> float:
        """``2TP / (2TP + FP + FN)``; 1.0 when prediction and truth are both empty."""
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp / denom

    @property
    def mcc(self) -> float:
        """Matthews correlation coefficient; 0.0 when undefined."""
        tp, fp, tn, fn = (float(v) for v in (self.tp, self.fp, self.tn, self.fn))
        denom = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        return 0.0 if denom == 0 else (tp * tn - fp * fn) / math.sqrt(denom)

    @property
    def accuracy(self) -> float:
        return math.nan if self.total == 0 else (self.tp + self.tn) / self.total


def _binarize(pred, target, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    p = pred if pred.dtype == torch.bool else pred > threshold
    t = target.bool() if target.dtype == torch.bool or not target.is_floating_point() else target > 0.5
    return p, t


def binary_counts(pred, target, threshold: float = 0.0) -> BinaryCounts:
    """Confusion matrix of ``pred > threshold`` against binary ``target``.

    Args:
        pred: logits / scores (thresholded at ``threshold``) or a boolean prediction.
        target: binary ground truth (bool, integer 0/1 or float > 0.5 positive).
        threshold: decision threshold on ``pred`` (0 for logits).

    Returns:
        :class:`BinaryCounts` over all elements.
    """
    p, t = _binarize(pred, target, threshold)
    tp = int((p & t).sum())
    fp = int((p & ~t).sum())
    fn = int((~p & t).sum())
    return BinaryCounts(tp, fp, p.numel() - tp - fp - fn, fn)


def mcc(pred, target, threshold: float = 0.0) -> float:
    """Matthews correlation coefficient of ``pred > threshold`` vs ``target``; 0 when undefined."""
    return binary_counts(pred, target, threshold).mcc


def dice(logits, target, threshold: float = 0.0) -> float:
    """Dice from the confusion matrix pooled over all pixels of all images.

    Args:
        logits: ``(N, ...)`` logits (or scores with ``threshold``) or boolean masks.
        target: binary ground truth of the same shape.
        threshold: decision threshold (logit > 0, i.e. probability > 0.5).

    Returns:
        ``2TP / (2TP + FP + FN)``; 1.0 when both are empty everywhere.
    """
    return binary_counts(logits, target, threshold).dice


def dice_per_image(logits, target, threshold: float = 0.0) -> torch.Tensor:
    """Dice of each image along the first dimension (empty prediction and truth -> 1).

    Returns:
        ``(N,)`` float64 tensor.
    """
    p, t = _binarize(logits, target, threshold)
    p, t = p.flatten(1), t.flatten(1)
    tp = (p & t).sum(1).double()
    denom = p.sum(1).double() + t.sum(1).double()
    return torch.where(denom == 0, torch.ones_like(denom), 2 * tp / denom.clamp_min(1))


class ConfusionMatrix:
    """Accumulates a binary confusion matrix over batches.

    Args:
        threshold: decision threshold on predictions (0 for logits).

    Example:
        >>> cm = ConfusionMatrix()
        >>> cm.update(torch.tensor([2.0, -1.0]), torch.tensor([1, 1]))
        >>> cm.update(torch.tensor([-3.0]), torch.tensor([0]))
        >>> cm.counts, cm.dice
        (BinaryCounts(tp=1, fp=0, tn=1, fn=1), 0.6666666666666666)
    """

    def __init__(self, threshold: float = 0.0):
        self.threshold = threshold
        self.counts = BinaryCounts()

    def update(self, pred, target) -> None:
        """Add the counts of one batch."""
        self.counts = self.counts + binary_counts(pred, target, self.threshold)

    def reset(self) -> None:
        self.counts = BinaryCounts()

    @property
    def dice(self) -> float:
        return self.counts.dice

    @property
    def mcc(self) -> float:
        return self.counts.mcc

    def __repr__(self) -> str:
        return f"ConfusionMatrix(threshold={self.threshold}, counts={self.counts})"
