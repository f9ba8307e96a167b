"""The transactional shell of a pruning strategy: work on a copy, verify in float64, commit.

A strategy (ChannelPrune today) copies the caller's model (:func:`copy_model`), runs in
float64 on the copy (:func:`to_float64` / :func:`restore_dtypes`), measures outputs
(:func:`outputs`, :func:`rel_change`) and, only when every step succeeded, gives the
caller's modules the copy's parameters, buffers and sizes (:func:`commit`).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ..batches import eval_mode
from .trace import flatten, run_model

__all__ = ["copy_model", "outputs", "rel_change", "commit", "to_float64", "restore_dtypes", "float64_inputs"]


def copy_model(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(f"pruning works on a copy of the model, but copy.deepcopy failed: {err}") from err


@torch.no_grad()
def outputs(model: nn.Module, example_inputs: Any) -> list[torch.Tensor]:
    """The model's output tensors on ``example_inputs`` in eval mode (flags restored)."""
    with eval_mode(model):
        out = run_model(model, example_inputs)
    return [t.detach().clone() for t in flatten(out) if isinstance(t, torch.Tensor)]


def rel_change(reference: list[torch.Tensor], other: list[torch.Tensor]) -> float:
    """Max over outputs of ``max|other - reference| / max|reference|`` (inf if shapes differ)."""
    if len(reference) != len(other) or any(a.shape != b.shape for a, b in zip(reference, other)):
        return math.inf
    rel = 0.0
    for a, b in zip(reference, other):
        if not a.is_floating_point():
            rel = rel if torch.equal(a, b) else math.inf
            continue
        if not a.numel():
            continue
        scale = a.double().abs().max().item()
        diff = (a.double() - b.double()).abs().max().item()
        rel = max(rel, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
    return rel


def float64_inputs(example_inputs):
    if isinstance(example_inputs, torch.Tensor):
        return example_inputs.double() if example_inputs.is_floating_point() else example_inputs
    if isinstance(example_inputs, dict):
        return {k: float64_inputs(v) for k, v in example_inputs.items()}
    if isinstance(example_inputs, (tuple, list)):
        return type(example_inputs)(float64_inputs(v) for v in example_inputs)
    return example_inputs


def to_float64(model: nn.Module) -> dict[str, torch.dtype]:
    """Cast floating parameters and buffers to float64 in place; returns the original dtypes by name."""
    dtypes = {}
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point():
            dtypes[n] = t.dtype
    model.double()
    return dtypes


@torch.no_grad()
def restore_dtypes(model: nn.Module, dtypes: dict[str, torch.dtype]) -> None:
    """Undo :func:`to_float64`; a tensor added meanwhile (a folded bias) takes its module's weight dtype."""
    for mname, module in model.named_modules():
        prefix = mname + "." if mname else ""
        default = dtypes.get(prefix + "weight")
        for key, p in list(module._parameters.items()):
            dtype = dtypes.get(prefix + key, default)
            if p is not None and p.is_floating_point() and dtype is not None and p.dtype != dtype:
                module._parameters[key] = nn.Parameter(p.detach().to(dtype), requires_grad=p.requires_grad)
        for key, b in list(module._buffers.items()):
            dtype = dtypes.get(prefix + key, default)
            if b is not None and b.is_floating_point() and dtype is not None and b.dtype != dtype:
                module._buffers[key] = b.to(dtype)


_SIZES = (int, float, bool, str, tuple, torch.Size)


def commit(model: nn.Module, work: nn.Module) -> None:
    """Give every module of ``model`` the parameters, buffers and channel counts of ``work``.

    Only assignments happen here (nothing can fail half-way): each module keeps its
    identity, children, hooks and ``training`` flag; its ``_parameters`` and ``_buffers``
    and any changed size attribute (``in_channels``, ``num_features``, ``groups``, ...)
    come from the pruned copy.
    """
    pairs = [(m, work.get_submodule(n)) for n, m in model.named_modules()]
    updates = []
    for mine, theirs in pairs:
        new = {"_parameters": theirs._parameters, "_buffers": theirs._buffers}
        for key, value in theirs.__dict__.items():
            if isinstance(value, _SIZES) and key in mine.__dict__ and mine.__dict__[key] != value:
                new[key] = value
        updates.append((mine, new))
    for mine, new in updates:
        mine.__dict__.update(new)
