"""Save and load models whose layer shapes changed (e.g. after ChannelPrune).

A pruned model's ``state_dict`` no longer fits its class's constructor, so a
checkpoint holds everything needed to get the model back without the code that
pruned it::

    {"format": "explainfix.checkpoint", "version": 1,
     "arch": {"name": ..., "kwargs": {...}} or None,   # explainfix.create_model call
     "state_dict": {...}, "structure": [...], "meta": {...},
     "module": <pickled nn.Module as bytes>}          # only when arch cannot rebuild it

:func:`load` reads the file with ``torch.load(weights_only=True)`` (no code is
executed). With a known ``arch`` it rebuilds the model with
:func:`explainfix.create_model`, resizes every conv / linear / norm layer to the
shapes in the ``state_dict``, checks the module structure and loads the state
strictly - no pickled code runs, and a ``pretrained`` option stored in ``arch`` is
dropped (the weights come from the file; file contents never start a download).

:func:`save` checks at save time whether that rebuild reproduces the model; only
when it does not (custom classes, ``arch=None``, changes a ``state_dict`` cannot
show) is the pickled module stored as well. Loading such a file **executes code
from it**, so :func:`load` refuses unless called with ``trust=True`` (CLI:
``--trust-checkpoint``); the error says why the safe rebuild failed. Writes are
atomic: a temporary file in the same folder replaced into place, so a failing save
leaves any previous file intact.
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
        >>> load(path, trust=True).weight.shape  # a plain Conv2d has no arch: stored pickled
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
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": None if arch is None else {"name": arch["name"], "kwargs": _safe_kwargs(arch.get("kwargs"))},
        "state_dict": {k: v.detach() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
        "structure": _structure(model),
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
    }
    if payload["arch"] is None or not _rebuilds_exactly(model, payload):
        buffer = io.BytesIO()
        torch.save(model, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
        payload["module"] = buffer.getvalue()
    return payload


#: ``arch`` kwargs that would fetch weights when rebuilding; the file's state_dict holds them anyway
_FETCHING_KWARGS = ("pretrained", "weights")


def _safe_kwargs(kwargs: Any) -> dict:
    return {k: v for k, v in dict(kwargs or {}).items() if k not in _FETCHING_KWARGS}


def _rebuilds_exactly(model: nn.Module, payload: dict) -> bool:
    """Whether :func:`_rebuild` gives ``model`` back: same structure and bit-identical state."""
    try:
        rebuilt, _ = _rebuild(payload)
    except Exception:  # noqa: BLE001 - any failure means: store the pickled module too
        return False
    if rebuilt is None:
        return False
    mine, theirs = payload["state_dict"], rebuilt.state_dict()
    return mine.keys() == theirs.keys() and all(
        mine[k].dtype == theirs[k].dtype and mine[k].shape == theirs[k].shape
        and torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine
    )


def load(path: str | os.PathLike, *, map_location: Any = "cpu", trust: bool = False) -> nn.Module:
    """Load a model written by :func:`save`; it gives the outputs of the saved one.

    Args:
        path: Checkpoint file.
        map_location: As for ``torch.load`` (default: CPU).
        trust: Allow unpickling the stored module when ``arch`` cannot rebuild the model
            (this runs code from the file: only for files you trust). Default: refuse.

    Returns:
        The model, in the ``training`` mode it was saved in. Its checkpoint ``meta``
        is attached as ``model.explainfix_meta``, its ``arch`` (or None) as ``model.explainfix_arch``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ExplainFix checkpoint (also an empty, truncated or corrupt file),
            a newer format version, missing keys, or a model that only unpickling could
            restore while ``trust`` is False (the message says why the rebuild failed).
        RuntimeError: the stored module cannot be unpickled (e.g. its class is not importable).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    payload = load_tensors(path, map_location=map_location, what="ExplainFix checkpoint")
    return model_from_payload(payload, map_location=map_location, source=path, trust=trust)


def model_from_payload(
    payload: Any, *, map_location: Any = "cpu", source: str = "the checkpoint", trust: bool = False
) -> nn.Module:
    """The model stored in a :func:`model_payload` dict (see :func:`load`, which reads one from a file).

    ``trust=True`` allows unpickling the stored module when ``arch`` cannot rebuild the model.
    """
    path = source
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an ExplainFix checkpoint (use torch.load for other files)")
    try:
        version = int(payload.get("version", 0))
    except (TypeError, ValueError):
        raise ValueError(f"{path!r} has an invalid checkpoint version {payload.get('version')!r}") from None
    if version > VERSION:
        raise ValueError(f"{path!r} has checkpoint version {payload['version']}; this ExplainFix reads up to {VERSION}")
    arch = payload.get("arch")
    needed = ["state_dict", "structure"] if arch else []
    missing = [k for k in needed if k not in payload]
    if missing and "module" not in payload:
        raise ValueError(f"{path!r} lacks the keys {missing} of an ExplainFix checkpoint (a truncated or edited file?)")
    model, why = None, "it stores no architecture (arch is None: a custom model or one saved without arch=)"
    if arch and not missing:
        model, why = _rebuild(payload)
    elif arch:
        why = f"it lacks the keys {missing} needed to rebuild arch {arch!r}"
    if model is None:
        if "module" not in payload:
            raise ValueError(f"{path!r} cannot be rebuilt: {why}, and it stores no pickled module")
        if not trust:
            raise ValueError(
                f"{path!r} cannot be rebuilt safely because {why}. Only unpickling the module stored in the file "
                "could restore it, and unpickling runs code from the file. If you trust the file, pass trust=True "
                "(explainfix.load(path, trust=True); on the command line --trust-checkpoint)"
            )
        try:
            model = torch.load(io.BytesIO(payload["module"]), map_location=map_location, weights_only=False)
        except (AttributeError, ImportError, pickle.UnpicklingError, EOFError) as err:
            raise RuntimeError(
                f"{path!r} stores a model that cannot be rebuilt here ({type(err).__name__}: {err}); "
                "import the module that defines its class first"
            ) from err
        if not isinstance(model, nn.Module):
            raise ValueError(f"{path!r} stores a {type(model).__name__}, not an nn.Module")
    model.explainfix_meta = payload.get("meta", {})
    model.explainfix_arch = arch if isinstance(arch, dict) else None
    return model


def _structure(model: nn.Module) -> list[list[str]]:
    """Every module's name, class and ``extra_repr`` - what a rebuild must reproduce."""
    return [[n, f"{type(m).__module__}.{type(m).__qualname__}", m.extra_repr()] for n, m in model.named_modules()]


def _rebuild(payload: dict) -> tuple[nn.Module | None, str]:
    """``(create_model(**arch) resized to the saved shapes, "")``, or ``(None, why not)``."""
    arch, state = payload["arch"], payload["state_dict"]
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs", {}), dict):
        return None, f"its arch {arch!r} is not {{'name': str, 'kwargs': dict}}"
    if not isinstance(state, dict):
        return None, f"its state_dict is a {type(state).__name__}, not a dict"
    try:
        from .models import create_model, list_models

        if arch["name"] not in list_models():
            return None, f"its arch {arch['name']!r} is not a registered model (explainfix.list_models())"
        model = create_model(arch["name"], **_safe_kwargs(arch.get("kwargs")))
        with torch.no_grad():
            for name, module in model.named_modules():
                _resize(module, name, state)
        if _structure(model) != payload.get("structure"):
            return None, f"the modules of create_model({arch['name']!r}, ...) differ from those stored in the file"
        model.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001 - any mismatch is reported to the caller
        first = (str(err).strip().splitlines() or [""])[0][:300]
        return None, f"rebuilding arch {arch['name']!r} failed ({type(err).__name__}: {first})"
    flags = payload.get("requires_grad", {})
    for n, p in model.named_parameters():
        p.requires_grad_(bool(flags.get(n, True)))
    training = payload.get("training", {})
    for n, m in model.named_modules():
        m.training = bool(training.get(n, m.training))
    return model, ""


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
