"""Training checkpoints: everything needed to continue a run exactly where an epoch ended.

One file, ``checkpoint.pt``, written atomically after every epoch::

    {"format": "explainfix.train-state", "version": 1, "epoch": completed epochs,
     "model": explainfix.checkpoint.model_payload(...)   # the (pruned) architecture and weights
     "optimizer", "scheduler", "scaler": state dicts,
     "rng": {"torch", "numpy", "python", "cuda"},         # global RNG states after the epoch
     "history": [per-epoch metric rows], "best": {...}, "fixed_digests": {...},
     "config": the run config, "config_hash": str}

The data order of an epoch is a pure function of ``(seed, epoch)`` (see
:func:`explainfix.train.data.epoch_keys`), so restoring these states and re-running the
interrupted epoch gives bit-identical weights and metrics on the CPU.
"""
from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from explainfix.checkpoint import model_from_payload, model_payload
from explainfix.fileio import atomic_write

__all__ = ["FORMAT", "save_state", "load_state", "load_own_model", "rng_state", "restore_rng", "fixed_digests", "tensor_digest"]

FORMAT = "explainfix.train-state"
VERSION = 1


def rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU and CUDA), numpy and Python."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes (dtype and shape included): equal digests = bit-identical."""
    data = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()


def fixed_digests(model: nn.Module) -> dict[str, str]:
    """Digest of every parameter that does not require grad (the fixed spatial weights and biases)."""
    return {name: tensor_digest(p) for name, p in model.named_parameters() if not p.requires_grad}


def save_state(path: str | os.PathLike, *, epoch: int, model: nn.Module, arch: dict | None,
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, **extra: Any) -> None:
    """Write a training checkpoint atomically (a reader never sees half a file)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": model_payload(model, arch=arch),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        **extra,
    }
    with atomic_write(path, fsync=True) as f:
        torch.save(payload, f)


def load_state(path: str | os.PathLike, *, map_location: Any = "cpu") -> tuple[dict, nn.Module]:
    """Read a training checkpoint: ``(state dict, model)``.

    The model is rebuilt from the stored architecture (a pruned one keeps its channel counts).
    The file was written by this run, so its pickled module may be used when the
    architecture cannot be rebuilt by name (``trust=True``).

    Raises:
        ValueError: not a training checkpoint of this format (or a corrupt file).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"{path} is not a readable training checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ExplainFix training checkpoint")
    if int(state.get("version", 0)) > VERSION:
        raise ValueError(f"{path} has training-checkpoint version {state['version']}; this ExplainFix reads up to {VERSION}")
    model = model_from_payload(state["model"], map_location=map_location, source=str(path), trust=True)
    return state, model


def load_own_model(path: str | os.PathLike, *, map_location: Any = "cpu") -> nn.Module:
    """A model file this run wrote itself (``best.pt`` / ``last.pt``): trusted, so custom models load too."""
    from explainfix.checkpoint import load

    return load(path, map_location=map_location, trust=True)
