"""Save and load models whose layer shapes changed (e.g. after ChannelPrune).

A pruned model's ``state_dict`` no longer fits its class's constructor, so a
checkpoint holds everything needed to get the model back without the code that
pruned it::

    {"format": "explainfix.checkpoint", "version": 1,
     "arch": {"name": ..., "kwargs": {...}} or None,   # explainfix.create_model call
     "state_dict": {...}, "module": <pickled nn.Module as bytes>, "meta": {...}}

:func:`load` first reads the file with ``torch.load(weights_only=True)`` (no code is
executed). If ``arch`` is known, it rebuilds the model with
:func:`explainfix.create_model`, resizes every conv / linear / norm layer to the
shapes in the ``state_dict`` and loads it strictly - no pickled code runs. Otherwise
(custom models, or a rebuild that does not fit) it unpickles the stored module, which
**executes pickled code: only load checkpoints you trust**. Writes are atomic: a
temporary file in the same folder replaced into place, so a failing save leaves any
previous file intact.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Any

import torch
from torch import nn

from .fileio import atomic_write, load_tensors

__all__ = ["save", "load", "model_payload", "model_from_payload", "FORMAT", "VERSION"]

FORMAT = "explainfix.checkpoint"
VERSION = 1


def save(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    meta: dict | None = None,
    arch: dict | None = None,
) -> str:
    """Write ``model`` to ``path`` atomically.

    Args:
        model: Any ``nn.Module`` (pruned or not). Its device is kept in the file.
        path: File to write (its folder must exist).
        meta: JSON-like extra information (e.g. ``PruneReport.to_dict()``).
        arch: ``{"name": registry name, "kwargs": {...}}`` when the model came from
            :func:`explainfix.create_model`; lets :func:`load` rebuild it without
            unpickling code.

    Returns:
        The path written, as a string.

    Example:
        >>> import tempfile, os, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
        >>> _ = save(torch.nn.Conv2d(1, 2, 3), path)
        >>> load(path).weight.shape
        torch.Size([2, 1, 3, 3])
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder of checkpoint {path!r} does not exist")
    payload = model_payload(model, meta=meta, arch=arch)
    with atomic_write(path, fsync=True) as f:
        torch.save(payload, f)
    return path


def model_payload(model: nn.Module, *, meta: dict | None = None, arch: dict | None = None) -> dict:
    """The dict :func:`save` writes: everything :func:`model_from_payload` needs to rebuild ``model``.

    Other files (e.g. a training checkpoint, which adds optimizer and RNG state) embed it.
    """
    if arch is not None and (not isinstance(arch, dict) or not isinstance(arch.get("name"), str)):
        raise ValueError(f"arch must be a dict {{'name': str, 'kwargs': dict}}, got {arch!r}")
    buffer = io.BytesIO()
    torch.save(model, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": None if arch is None else {"name": arch["name"], "kwargs": dict(arch.get("kwargs") or {})},
        "state_dict": {k: v.detach() for k, v in model.state_dict().items()},
        "module": buffer.getvalue(),
        "meta": dict(meta or {}),
        "structure": _structure(model),
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
    }


def load(path: str | os.PathLike, *, map_location: Any = "cpu") -> nn.Module:
    """Load a model written by :func:`save`; it gives the outputs of the saved one.

    Args:
        path: Checkpoint file.
        map_location: As for ``torch.load`` (default: CPU).

    Returns:
        The model, in the ``training`` mode it was saved in. Its checkpoint ``meta``
        is attached as ``model.explainfix_meta``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ExplainFix checkpoint (also an empty, truncated or corrupt file),
            or a newer format version.
        RuntimeError: the stored module cannot be unpickled (e.g. its class is not importable).

    Warning:
        Without a usable ``arch`` the stored module is unpickled, which executes code
        from the file. Only load checkpoints from sources you trust.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    payload = load_tensors(path, map_location=map_location, what="ExplainFix checkpoint")
    return model_from_payload(payload, map_location=map_location, source=path)


def model_from_payload(payload: Any, *, map_location: Any = "cpu", source: str = "the checkpoint") -> nn.Module:
    """The model stored in a :func:`model_payload` dict (see :func:`load`, which reads one from a file)."""
    path = source
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an ExplainFix checkpoint (use torch.load for other files)")
    if int(payload.get("version", 0)) > VERSION:
        raise ValueError(f"{path!r} has checkpoint version {payload['version']}; this ExplainFix reads up to {VERSION}")
    model = None
    if payload.get("arch"):
        model = _rebuild(payload)
    if model is None:
        try:
            model = torch.load(io.BytesIO(payload["module"]), map_location=map_location, weights_only=False)
        except (AttributeError, ImportError, pickle.UnpicklingError, EOFError) as err:
            raise RuntimeError(
                f"{path!r} stores a model that cannot be rebuilt here ({type(err).__name__}: {err}); "
                "import the module that defines its class first"
            ) from err
    model.explainfix_meta = payload.get("meta", {})
    return model


def _structure(model: nn.Module) -> list[list[str]]:
    """Every module's name, class and ``extra_repr`` - what a rebuild must reproduce."""
    return [[n, f"{type(m).__module__}.{type(m).__qualname__}", m.extra_repr()] for n, m in model.named_modules()]


def _rebuild(payload: dict) -> nn.Module | None:
    """``create_model(**arch)`` resized to the saved shapes; None unless it matches exactly."""
    arch, state = payload["arch"], payload["state_dict"]
    try:
        from .models import create_model

        model = create_model(arch["name"], **arch.get("kwargs", {}))
        with torch.no_grad():
            for name, module in model.named_modules():
                _resize(module, name, state)
        if _structure(model) != payload.get("structure"):
            return None
        model.load_state_dict(state, strict=True)
    except Exception:  # noqa: BLE001 - any mismatch falls back to the pickled module
        return None
    flags = payload.get("requires_grad", {})
    for n, p in model.named_parameters():
        p.requires_grad_(bool(flags.get(n, True)))
    training = payload.get("training", {})
    for n, m in model.named_modules():
        m.training = bool(training.get(n, m.training))
    return model


def _resize(module: nn.Module, name: str, state: dict) -> None:
    prefix = f"{name}." if name else ""
    w = state.get(prefix + "weight")
    if isinstance(module, nn.modules.conv._ConvNd) and w is not None:
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        if module.transposed:
            c_in, c_out = w.shape[0], w.shape[1] * module.groups
        else:
            c_out, c_in = w.shape[0], w.shape[1] * module.groups
        if depthwise:
            module.groups = c_in = c_out = w.shape[0]
        module.in_channels, module.out_channels = c_in, c_out
    elif isinstance(module, nn.Linear) and w is not None:
        module.out_features, module.in_features = w.shape
    elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        ref = w if w is not None else state.get(prefix + "running_mean")
        if ref is not None:
            if isinstance(module, nn.GroupNorm):
                module.num_channels = ref.shape[0]
            else:
                module.num_features = ref.shape[0]
    elif isinstance(module, nn.PReLU) and w is not None:
        module.num_parameters = w.shape[0]
    for key, value in module._parameters.items():
        saved = state.get(prefix + key)
        if value is not None and saved is not None and (saved.shape != value.shape or saved.dtype != value.dtype):
            module._parameters[key] = nn.Parameter(torch.empty_like(saved), requires_grad=value.requires_grad)
    for key, value in module._buffers.items():
        saved = state.get(prefix + key)
        if value is not None and saved is not None and (saved.shape != value.shape or saved.dtype != value.dtype):
            module._buffers[key] = torch.empty_like(saved)
