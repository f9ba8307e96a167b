"""Training losses of the paper (Appendix C).

* :class:`ChexpertFocalBCE`: multi-label focal binary cross-entropy with intra-class
  (positive / negative) and inter-class (task) balancing weights, Eqs. 7-11.
* :class:`PixelBCE`: pixel-wise binary cross-entropy on logits for segmentation, without
  class weights (BBBC038v1).

Label encoding (the CheXpert U-Ignore policy): ``1`` positive, ``0`` negative, ``-1``
uncertain (ignored: masked out of the loss and of the counts), NaN missing (counted and
trained as negative). An optional boolean ``mask`` (True = use) removes more entries.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChexpertFocalBCE", "PixelBCE", "u_ignore"]

UNCERTAIN = -1


def u_ignore(
    labels: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the U-Ignore label policy.

    Args:
        labels: ``(N, T)`` labels: 1 positive, 0 negative, -1 uncertain, NaN missing.
        mask: optional ``(N, T)`` boolean, False drops an entry.

    Returns:
        ``(y, m)``: float targets in {0, 1} (missing and uncertain become 0) and the boolean
        mask of entries that count (not uncertain and, if given, ``mask`` True).

    Raises:
        ValueError: labels other than 1, 0, -1 or NaN, or a mask of another shape.
    """
    labels = torch.as_tensor(labels)
    labels = labels.to(torch.float64 if labels.dtype == torch.float64 else torch.float32)
    missing = torch.isnan(labels)
    known = labels[~missing]
    bad = (known != 0) & (known != 1) & (known != UNCERTAIN)
    if bool(bad.any()):
        raise ValueError(
            f"labels must be 1 (positive), 0 (negative), -1 (uncertain) or NaN (missing); got {known[bad][:5].tolist()}"
        )
    valid = labels != UNCERTAIN
    if mask is not None:
        mask = torch.as_tensor(mask, device=labels.device)
        if mask.shape != labels.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from labels shape {tuple(labels.shape)}")
        valid = valid & mask.bool()
    y = torch.where(labels == 1, 1.0, 0.0).to(labels.dtype)
    return y, valid


class ChexpertFocalBCE(nn.Module):
    """Multi-label focal class-balanced binary cross-entropy (paper Eqs. 7-11).

    For each task ``t`` with training counts ``c_pos``, ``c_neg`` (Eqs. 8-9) and
    ``c_t = c_pos + c_neg`` (Eqs. 10-11)::

        a_pos = 1 / (1 + c_pos / c_neg)        a_neg = 1 / (1 + c_neg / c_pos)
        w_t   = 1 / (1 + c_t * sum_{i != t} 1 / c_i)
        yhat  = 0.99999 * sigmoid(logit) + 0.000005
        L     = -m * w_t * (a_pos (1 - yhat)^gamma y log(yhat) + a_neg yhat^gamma (1 - y) log(1 - yhat))

    ``L`` is summed over tasks and averaged over the batch.

    Args:
        c_pos: per-task counts of positive training labels, shape ``(T,)``.
        c_neg: per-task counts of negative training labels (missing counted as negative).
        gamma: focal exponent (the paper uses 1).

    Shape:
        logits, labels, mask: ``(N, T)``; output: scalar.

    Notes:
        ``a_pos, a_neg`` equal the class-balancing weights ``x = max(c) / c`` normalised to
        sum 1, with ``c = (c_pos, c_neg)``; ``w`` is the same normalisation of ``1 / c_t``
        over tasks. A task whose counts are all positive or all negative gets weights
        (1, 0) or (0, 1), the limit of Eqs. 8-9.

    Example:
        >>> loss_fn = ChexpertFocalBCE.from_labels(torch.tensor([[1., 0.], [0., float("nan")], [-1., 1.]]))
        >>> loss_fn.c_pos.tolist(), loss_fn.c_neg.tolist()
        ([1.0, 1.0], [1.0, 2.0])
        >>> loss = loss_fn(torch.zeros(3, 2), torch.tensor([[1., 0.], [0., 1.], [-1., 1.]]))
    """

    def __init__(self, c_pos: Sequence[float] | torch.Tensor, c_neg: Sequence[float] | torch.Tensor, gamma: float = 1.0):
        super().__init__()
        c_pos = torch.as_tensor(c_pos, dtype=torch.float64).flatten()
        c_neg = torch.as_tensor(c_neg, dtype=torch.float64).flatten()
        if c_pos.shape != c_neg.shape or c_pos.numel() == 0:
            raise ValueError(f"c_pos and c_neg need the same non-zero length, got {c_pos.numel()} and {c_neg.numel()}")
        if bool((c_pos < 0).any() | (c_neg < 0).any()) or not bool(torch.isfinite(c_pos + c_neg).all()):
            raise ValueError("label counts must be finite and non-negative")
        c_task = c_pos + c_neg
        if bool((c_task == 0).any()):
            empty = torch.nonzero(c_task == 0).flatten().tolist()
            raise ValueError(f"tasks {empty} have no labelled training sample; cannot balance them")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        # Eqs. 8-9 in the normalised form (1/c_pos, 1/c_neg) / sum, defined when a count is 0
        a_pos = c_neg / c_task
        a_neg = c_pos / c_task
        inv = 1.0 / c_task
        w_task = inv / inv.sum()  # Eq. 11
        for name, value in (("c_pos", c_pos), ("c_neg", c_neg), ("a_pos", a_pos), ("a_neg", a_neg), ("w_task", w_task)):
            self.register_buffer(name, value.float())

    @classmethod
    def from_labels(
        cls,
        labels: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray | None = None,
        gamma: float = 1.0,
    ) -> "ChexpertFocalBCE":
        """Build the loss from the training labels.

        Args:
            labels: ``(N, T)`` training labels: 1, 0, -1 (uncertain, ignored) or NaN
                (missing, counted as negative).
            mask: optional ``(N, T)`` boolean, False ignores an entry as well.
            gamma: focal exponent.

        Returns:
            The loss with ``c_pos``, ``c_neg`` counted per task.
        """
        labels = torch.as_tensor(np.asarray(labels, dtype=np.float64))
        if labels.dim() != 2:
            raise ValueError(f"labels must be (N, T), got shape {tuple(labels.shape)}")
        mask_t = None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool))
        y, valid = u_ignore(labels, mask_t)
        c_pos = (y * valid).sum(0)
        c_neg = ((1 - y) * valid).sum(0)
        return cls(c_pos, c_neg, gamma=gamma)

    def unreduced(
        self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The ``(N, T)`` loss matrix L of Eq. 7 (zero where masked)."""
        if logits.dim() != 2 or logits.shape[1] != self.c_pos.numel():
            raise ValueError(
                f"logits must be (N, {self.c_pos.numel()}), got shape {tuple(logits.shape)}"
            )
        if labels.shape != logits.shape:
            raise ValueError(f"labels shape {tuple(labels.shape)} differs from logits shape {tuple(logits.shape)}")
        y, m = u_ignore(labels.to(logits.device), None if mask is None else mask.to(logits.device))
        y, m = y.to(logits.dtype), m.to(logits.dtype)
        yhat = 0.99999 * torch.sigmoid(logits) + 0.000005
        a_pos, a_neg, w = (t.to(logits.dtype) for t in (self.a_pos, self.a_neg, self.w_task))
        w_pos = a_pos * (1 - yhat) ** self.gamma
        w_neg = a_neg * yhat**self.gamma
        return -m * w * (w_pos * y * torch.log(yhat) + w_neg * (1 - y) * torch.log(1 - yhat))

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss summed over tasks and averaged over the batch.

        Args:
            logits: ``(N, T)`` raw model outputs.
            labels: ``(N, T)`` labels (1, 0, -1 uncertain, NaN missing).
            mask: optional ``(N, T)`` boolean; False ignores an entry.

        Returns:
            A scalar tensor.
        """
        return self.unreduced(logits, labels, mask).sum(1).mean()

    def extra_repr(self) -> str:
        return f"tasks={self.c_pos.numel()}, gamma={self.gamma}"


class PixelBCE(nn.BCEWithLogitsLoss):
    """Pixel-wise binary cross-entropy on logits, no class weights (mean over pixels).

    Accepts boolean / integer masks as targets and checks that shapes match (no silent
    broadcasting).

    Shape:
        logits and target: ``(N, 1, H, W)`` (any equal shapes); output: scalar.

    Example:
        >>> loss = PixelBCE()(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool))
        >>> round(float(loss), 4)
        0.6931
    """

    def __init__(self):
        super().__init__(reduction="mean")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"target shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}")
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="mean")
