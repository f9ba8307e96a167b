"""A model spec - a checkpoint file, a registered name or a torchvision name - as a model.

The CLI (``--model``), the training loop (``model.name`` of a run config) and the
experiments all resolve models here.
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path

from torch import nn

__all__ = ["resolve_model", "CHECKPOINT_SUFFIXES"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def _torchvision_names() -> list[str]:
    """torchvision's classification models (detection / video models would download backbones)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def resolve_model(
    spec: str, *, in_chans: int | None = None, num_classes: int | None = None, trust: bool = False
) -> tuple[nn.Module, dict | None]:
    """A model from a checkpoint file or a model name, and how to rebuild it.

    Args:
        spec: an existing file (loaded with :func:`explainfix.checkpoint.load`), a name of
            :func:`explainfix.list_models` (built with :func:`explainfix.create_model`), or the
            name of another torchvision classification model (``vgg11``, ``regnet_y_400mf``, ...;
            3 input channels, random weights).
        in_chans: input channels of a model built by name (``None``: the architecture's default).
        num_classes: outputs of a model built by name (``None``: the architecture's default).
        trust: let :func:`explainfix.checkpoint.load` unpickle a checkpoint's stored module when its
            architecture cannot rebuild it (runs code from the file; CLI ``--trust-checkpoint``).

    Returns:
        ``(model, arch)``: ``arch = {"name": name, "kwargs": {...}}`` for a registered name, or the
        ``arch`` a checkpoint stores (what :func:`explainfix.checkpoint.save` stores to rebuild it);
        ``None`` otherwise.

    Raises:
        FileNotFoundError: ``spec`` looks like a path (has a folder separator or a checkpoint
            suffix) but no such file exists.
        ValueError: an unknown name (listing close names), ``in_chans`` other than 3 for a
            torchvision-only model, ``in_chans`` / ``num_classes`` with a checkpoint (which keeps
            its own shapes), or a checkpoint only unpickling could restore while ``trust`` is False.

    Example:
        >>> model, arch = resolve_model("resnet18", num_classes=2)
        >>> arch
        {'name': 'resnet18', 'kwargs': {'num_classes': 2}}
    """
    path = Path(spec)
    if path.is_file():
        from explainfix.checkpoint import load

        given = [f"{k}={v}" for k, v in (("in_chans", in_chans), ("num_classes", num_classes)) if v is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} only applies to a model built by name; the checkpoint {spec} keeps the "
                "shapes it was saved with (leave --in-chans / --num-classes out)"
            )
        model = load(path, trust=trust)
        if not isinstance(model, nn.Module):
            raise RuntimeError(f"{path} did not load to a model (got {type(model).__name__})")
        arch = getattr(model, "explainfix_arch", None)
        return model, (copy.deepcopy(arch) if isinstance(arch, dict) else None)
    if os.sep in spec or "/" in spec or spec.endswith(CHECKPOINT_SUFFIXES):
        raise FileNotFoundError(f"no checkpoint file at {spec}")
    from explainfix.models import create_model, list_models

    kwargs = {k: v for k, v in (("in_chans", in_chans), ("num_classes", num_classes)) if v is not None}
    registered = list_models()
    if spec in registered:
        return create_model(spec, **kwargs), {"name": spec, "kwargs": kwargs}
    extra = _torchvision_names()
    if spec not in extra:
        close = difflib.get_close_matches(spec, sorted(set(registered) | set(extra)), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {spec!r}{hint} (explainfix.list_models() gives the {len(registered)} registered "
            "names; other torchvision classification models work too; or give a checkpoint file)"
        )
    if in_chans not in (None, 3):
        raise ValueError(
            f"in_chans={in_chans} needs a registered model (explainfix.list_models()); "
            f"{spec!r} comes from torchvision with 3 input channels"
        )
    import torchvision

    return torchvision.models.get_model(spec, weights=None, **({"num_classes": num_classes} if num_classes is not None else {})), None
