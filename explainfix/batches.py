"""What every loop over a model and a loader needs: batch formats and saved flags.

Loaders in this project (and users' own) yield tensors, ``(input, target, ...)`` tuples or
dicts (``{"image": ..., "target": ..., "target_mask": ...}``). These helpers are the one
place that reads such a batch, moves it to a device and restores a model's flags; saliency,
BatchNorm calibration, ChannelPrune, the training loop and the CLI all build on them.

Example:
    >>> import torch
    >>> x, y = split_batch({"image": torch.zeros(2, 1, 4, 4), "target": torch.ones(2)})
    >>> x.shape, y.tolist()
    (torch.Size([2, 1, 4, 4]), [1.0, 1.0])
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "INPUT_KEYS",
    "TARGET_KEYS",
    "MASK_KEYS",
    "split_batch",
    "batch_mask",
    "to_device",
    "output_tensor",
    "model_device",
    "preserved_modes",
    "preserved_requires_grad",
    "eval_mode",
]

#: keys under which a dict batch holds the model input / the target / the target's validity mask
INPUT_KEYS = ("x", "input", "image")
TARGET_KEYS = ("y", "target", "label", "mask")
MASK_KEYS = ("target_mask",)


def _first_key(batch: Mapping, keys: Sequence[str], what: str, required: bool):
    for key in keys:
        if key in batch:
            return batch[key]
    if required:
        raise ValueError(f"a dict batch must hold the {what} under one of {list(keys)}; got keys {list(batch)}")
    return None


def split_batch(batch) -> tuple[torch.Tensor, Any]:
    """``(input, target or None)`` of one loader item (tensor, tuple or dict)."""
    if torch.is_tensor(batch):
        return batch, None
    if isinstance(batch, Mapping):
        return _first_key(batch, INPUT_KEYS, "input", True), _first_key(batch, TARGET_KEYS, "target", False)
    if isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) >= 1:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise ValueError(
        "the loader must yield tensors, (input, target, ...) tuples or dicts with keys "
        f"{list(INPUT_KEYS)} / {list(TARGET_KEYS)}; got {type(batch).__name__}"
    )


def batch_mask(batch) -> torch.Tensor | None:
    """The target's validity mask of a batch (``target_mask`` of a dict, the third item of a tuple), or None."""
    if isinstance(batch, Mapping):
        return _first_key(batch, MASK_KEYS, "target mask", False)
    if isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) > 2 and torch.is_tensor(batch[2]):
        return batch[2]
    return None


def to_device(value, device: torch.device | str, *, non_blocking: bool = True):
    """``value`` (a tensor, or dicts / lists / tuples of them) on ``device``; other leaves unchanged."""
    if torch.is_tensor(value):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, Mapping):
        return {k: to_device(v, device, non_blocking=non_blocking) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(to_device(v, device, non_blocking=non_blocking) for v in value)
    return value


def output_tensor(output) -> torch.Tensor:
    """The tensor a model output stands for: itself, ``output["out"]`` or ``output[0]``."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, Mapping) and "out" in output:
        return output["out"]
    if isinstance(output, Sequence) and len(output) > 0 and torch.is_tensor(output[0]):
        return output[0]
    raise ValueError(
        f"cannot use a model output of type {type(output).__name__}: expected a tensor, a dict with 'out' "
        "or a tuple whose first item is a tensor"
    )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    return next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Every module's ``training`` flag is restored on exit, also on error."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def preserved_requires_grad(model: nn.Module) -> Iterator[nn.Module]:
    """Every parameter's ``requires_grad`` flag is restored on exit, also on error."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def eval_mode(model: nn.Module, *, no_grad: bool = False) -> Iterator[nn.Module]:
    """``model.eval()`` inside (and ``torch.no_grad()`` with ``no_grad``); flags restored on exit."""
    with preserved_modes(model):
        model.eval()
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            yield model
