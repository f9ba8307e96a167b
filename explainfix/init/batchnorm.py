"""Re-estimate BatchNorm statistics after the spatial filters were re-initialized.

A fixed initialization (GHaar, Psine, ...) changes every spatial layer's output scale,
so the BatchNorm running statistics of the original model no longer fit: in eval mode
activations of a deep network can overflow. Estimating them again from a few batches
(as after weight averaging) restores a usable eval-mode model without learning anything.
"""
from __future__ import annotations

import itertools
from typing import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from explainfix.batches import model_device, split_batch, to_device
from explainfix.explain.saliency import check_max_batches

__all__ = ["calibrate_batchnorm"]


def calibrate_batchnorm(model: nn.Module, loader: Iterable, *, max_batches: int | None = None) -> int:
    """Recompute every BatchNorm layer's running mean and variance from ``loader`` (in place).

    Running statistics are reset and re-estimated as a plain average over the batches
    (``torch.optim.swa_utils.update_bn``) under ``torch.no_grad()``; no parameter
    changes. Each module's train/eval flag and each BatchNorm's ``momentum`` are
    restored afterwards, also on error, and on error the previous statistics are put back.

    Args:
        model: Any module; one without BatchNorm is left untouched.
        loader: Batches as accepted by :func:`explainfix.spatial_saliency` (a tensor,
            an ``(x, y, ...)`` tuple or a dict with the input under ``x``/``input``/``image``).
        max_batches: Use at most this many batches.

    Returns:
        The number of batches used.

    Raises:
        ValueError: if the loader yields no batch, or ``max_batches`` is not an
            integer >= 1.

    Example:
        >>> import torch, torchvision
        >>> from explainfix import initialize
        >>> model = torchvision.models.resnet18()
        >>> _ = initialize(model, "ghaar", seed=0)
        >>> calibrate_batchnorm(model, [torch.rand(4, 3, 32, 32)])
        1
    """
    max_batches = check_max_batches(max_batches)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    device = model_device(model)
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    # update_bn sets every momentum to None and restores it only when it succeeds
    momenta = [(m, m.momentum) for m in norms]
    modes = [(m, m.training) for m in model.modules()]
    count = 0

    def inputs():
        nonlocal count
        batches = loader if max_batches is None else itertools.islice(loader, max_batches)
        for batch in batches:
            count += 1
            yield split_batch(to_device(batch, device))[0]

    try:
        update_bn(inputs(), model)
        if count == 0:
            raise ValueError("the loader yielded no batch; BatchNorm calibration needs at least one")
    except BaseException:
        with torch.no_grad():
            for m, state in zip(norms, saved):
                m.load_state_dict(state)
        raise
    finally:
        for m, momentum in momenta:
            m.momentum = momentum
        for m, mode in modes:
            m.training = mode
    return count
