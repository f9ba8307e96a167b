"""Deletion curves of a model on a training data source: the held-out metric as salient kernels are zeroed.

Glue between :func:`explainfix.explain.faithfulness.deletion_curve` (the method), the data sources of
:func:`explainfix.data.training.training_data` and the per-task metrics of :func:`evaluate`, so that
``explainfix faithfulness`` and the Fig. I.1 experiment run the same code.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from explainfix.batches import model_device
from explainfix.explain.faithfulness import DEFAULT_FRACTIONS, ORDERS, DeletionCurve, deletion_curve
from explainfix.explain.saliency import spatial_saliency

from .data import eval_loader, eval_subset, train_loader
from .evaluate import default_monitor, evaluate, make_loss

__all__ = ["data_deletion_curve"]


def data_deletion_curve(
    model: nn.Module,
    data,
    *,
    metric: str | None = None,
    split: str = "test",
    eval_images: int | None = None,
    saliency_batches: int = 15,
    batch_size: int = 4,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    orders: Sequence[str] = ORDERS,
    repeats: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> DeletionCurve:
    """Eq. 4 saliency on ``saliency_batches`` training batches, then the deletion curve of ``metric``.

    Args:
        data: a :class:`~explainfix.data.training.TrainingData`.
        metric: a metric of :func:`evaluate` for the data's task (``auc``, ``dice``, ``accuracy``,
            ``loss``, ...); default the task's monitor (``auc`` / ``dice`` / ``accuracy``).
        split: ``"test"`` or ``"val"`` - the images the metric is measured on.
        eval_images: measure on a fixed random subset of this many images (faster).

    Raises:
        ValueError: a split the data lacks, or a metric the task does not report.
    """
    held_out = {"test": data.test, "val": data.val}.get(split)
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    if held_out is None:
        raise ValueError(f"the data has no {split} set ({data.description})")
    metric = metric or default_monitor(data.task)[0].removeprefix("val_")
    higher = metric != "loss"
    device = model_device(model)
    loss_fn, _ = make_loss("bce" if data.task == "multilabel" else "auto", data.task)
    indices = eval_subset(len(held_out), eval_images, seed) if eval_images else None
    loader = eval_loader(held_out, batch_size=max(batch_size, 8), indices=indices)
    batches = train_loader(data.train, batch_size=batch_size, seed=seed + 99_991, epoch=0, max_batches=saliency_batches,
                           num_samples=saliency_batches * batch_size,
                           replacement=len(data.train) < saliency_batches * batch_size)
    scores = spatial_saliency(model, batches, max_batches=saliency_batches, progress=progress)

    def measure(m: nn.Module) -> float:
        values = evaluate(m, loader, task=data.task, loss_fn=loss_fn, device=device, task_names=data.task_names)
        if metric not in values:
            raise ValueError(f"metric {metric!r} is not reported for a {data.task} task; choose one of "
                             f"{sorted(k for k in values if k != 'n')}")
        return values[metric]

    with torch.no_grad():
        measure(model)  # an unknown metric fails before the sweep
    return deletion_curve(model, scores, measure, fractions=fractions, orders=orders, repeats=repeats, seed=seed,
                          metric=f"{split} {metric}", higher_is_better=higher, progress=progress)
