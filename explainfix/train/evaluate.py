"""Losses and metrics by task: what a run optimises and what it reports per epoch.

=============  ============================================  ================================
task           loss (``loss: auto``)                          metrics (``val_`` / ``test_``)
=============  ============================================  ================================
multilabel     CheXpert focal class-balanced BCE (Eqs. 7-11)  ``auc`` (mean ROC AUC), ``auc_<task>``,
               from the training label counts                 ``study_auc`` when items carry a study
segmentation   pixel BCE, no class weights                    ``dice``, ``mcc`` (pooled pixel counts,
                                                              logit > 0), ``loss``
multiclass     cross-entropy                                  ``accuracy``, ``loss``
=============  ============================================  ================================

Entries a target mask marks invalid (CheXpert's uncertain labels, padding of a crop) are left
out of losses and metrics alike.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from explainfix.batches import batch_mask, eval_mode, output_tensor, split_batch

from .losses import ChexpertFocalBCE
from .metrics import BinaryCounts, binary_counts, multilabel_auc, study_auc

__all__ = ["make_loss", "default_monitor", "evaluate", "LOSSES"]

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]

#: ``loss: auto`` for each task
AUTO_LOSS = {"multilabel": "chexpert_focal", "segmentation": "pixel_bce", "multiclass": "cross_entropy"}
LOSSES = ("chexpert_focal", "bce", "pixel_bce", "cross_entropy")


def _masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    target = torch.nan_to_num(target.to(logits.dtype), nan=0.0).clamp(0, 1)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if mask is None:
        return loss.mean()
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(logits, target.long().reshape(-1))


def make_loss(name: str, task: str, train_labels: torch.Tensor | None = None) -> tuple[Loss, str]:
    """``(loss_fn(logits, target, mask), resolved name)`` for a task.

    Raises:
        ValueError: a loss that does not fit the task, or ``chexpert_focal`` without labels.
    """
    name = AUTO_LOSS[task] if name == "auto" else name
    fits = {"chexpert_focal": ("multilabel",), "bce": ("multilabel", "segmentation"),
            "pixel_bce": ("segmentation",), "cross_entropy": ("multiclass",)}
    if name not in fits:
        raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
    if task not in fits[name]:
        raise ValueError(f"loss {name!r} does not fit a {task} task (it takes {', '.join(fits[name])})")
    if name == "chexpert_focal":
        if train_labels is None:
            raise ValueError("loss chexpert_focal needs the training labels' counts; this data source gives none (use loss: bce)")
        focal = ChexpertFocalBCE.from_labels(train_labels)
        return (lambda logits, y, mask: focal.to(logits.device)(logits, y, mask)), name
    if name in ("bce", "pixel_bce"):
        return _masked_bce, name
    return _cross_entropy, name


def default_monitor(task: str) -> tuple[str, str]:
    """``(metric, "max" | "min")`` that picks the best epoch by default."""
    return {"multilabel": ("val_auc", "max"), "segmentation": ("val_dice", "max"),
            "multiclass": ("val_accuracy", "max")}[task]


@torch.no_grad()
def _outputs(model: nn.Module, loader: Iterable, device: torch.device, autocast, channels_last: bool):
    for batch in loader:
        x, y = split_batch(batch)
        mask = batch_mask(batch)
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = output_tensor(model(x))
        meta = batch.get("meta") if isinstance(batch, dict) else None
        yield logits.float().cpu(), y.cpu(), (None if mask is None else mask.cpu()), meta


def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    task: str,
    loss_fn: Loss,
    device: torch.device | str,
    task_names: tuple[str, ...] = (),
    autocast=None,
    channels_last: bool = False,
    gather: Callable[[Any], list[Any]] | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` (in eval mode; flags restored) over ``loader``.

    Args:
        gather: under DDP, ``gather(obj) -> [obj of every process]``; each process then
            evaluates its share of the batches and all get the metrics of the whole set.

    Returns:
        ``{"loss": ..., <metrics of the task>}`` (unprefixed), plus ``"n"`` images.
    """
    autocast = autocast or contextlib.nullcontext
    device = torch.device(device)
    loss_sum, n, counts = 0.0, 0, BinaryCounts()
    scores, labels, masks, studies = [], [], [], []
    with eval_mode(model):
        for logits, y, mask, meta in _outputs(model, loader, device, autocast, channels_last):
            loss_sum += float(loss_fn(logits, y, mask)) * logits.shape[0]
            n += logits.shape[0]
            if task == "segmentation":
                keep = torch.ones_like(y, dtype=torch.bool) if mask is None else mask.bool()
                counts = counts + binary_counts(logits[keep], y[keep] > 0.5)
            else:
                scores.append(logits)
                labels.append(y)
                masks.append(torch.ones_like(y, dtype=torch.bool) if mask is None else mask.bool())
                if meta is not None and "study" in meta:
                    studies.extend(meta["study"])
    part = {"loss_sum": loss_sum, "n": n, "counts": counts, "scores": scores, "labels": labels, "masks": masks,
            "studies": studies}
    parts = gather(part) if gather is not None else [part]
    n = sum(p["n"] for p in parts)
    if n == 0:
        raise ValueError("the evaluation set yielded no image")
    out: dict[str, float] = {"loss": sum(p["loss_sum"] for p in parts) / n, "n": n}
    if task == "segmentation":
        total = BinaryCounts()
        for p in parts:
            total = total + p["counts"]
        out.update(dice=total.dice, mcc=total.mcc)
        return out
    s = torch.cat([t for p in parts for t in p["scores"]])
    y = torch.cat([t for p in parts for t in p["labels"]])
    m = torch.cat([t for p in parts for t in p["masks"]])
    if task == "multiclass":
        out["accuracy"] = float((s.argmax(1) == y.long().reshape(-1)).float().mean())
        return out
    names = task_names or tuple(f"task{t}" for t in range(s.shape[1]))
    auc = multilabel_auc(s, y, m, tasks=names)
    out["auc"] = auc.mean
    out.update({f"auc_{k}": v for k, v in zip(auc.tasks, auc.per_task)})
    ids = [sid for p in parts for sid in p["studies"]]
    if ids and len(ids) == s.shape[0]:
        out["study_auc"] = study_auc(s, y, ids, m, tasks=names).mean
    return {k: float(v) for k, v in out.items()}

