"""Model registry: ``register_model`` / ``create_model`` / ``list_models``.

Every architecture is a factory function registered under a name. A factory takes
keyword arguments ``in_chans``, ``num_classes`` and ``pretrained`` (plus any
architecture-specific keyword) and returns a fresh ``nn.Module``.

Example:
    >>> from explainfix.models import create_model, list_models
    >>> "resnet50" in list_models("resnet*")
    True
    >>> model = create_model("resnet18", in_chans=1, num_classes=5)
    >>> model.fc.out_features
    5
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Protocol

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "ModelFactory"]


class ModelFactory(Protocol):
    """Signature of a registered model factory."""

    def __call__(
        self,
        *,
        in_chans: int | None = None,
        num_classes: int | None = None,
        pretrained: str | None = None,
        **kwargs,
    ) -> nn.Module: ...


_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that registers a model factory under ``name``.

    Args:
        name: the registry key (lower case, no spaces). A name can be registered once.

    Returns:
        A decorator that registers the factory and returns it unchanged.

    Raises:
        ValueError: if ``name`` is empty, has whitespace, or is already registered.

    Example:
        >>> from torch import nn
        >>> @register_model("tiny_doc_example")
        ... def tiny(*, in_chans=None, num_classes=None, pretrained=None):
        ...     return nn.Conv2d(in_chans or 1, num_classes or 5, 3)
        >>> create_model("tiny_doc_example", num_classes=2).out_channels
        2
    """
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        raise ValueError(f"model name must be a non-empty string without spaces, got {name!r}")

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        if not callable(factory):
            raise TypeError(f"register_model({name!r}) needs a callable, got {type(factory).__name__}")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of registered models, optionally filtered by a shell-style pattern.

    Args:
        pattern: ``fnmatch`` pattern such as ``"efficientnet_*"``; None lists all.

    Returns:
        The matching names in sorted order.
    """
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def create_model(
    name: str,
    *,
    in_chans: int | None = None,
    num_classes: int | None = None,
    pretrained: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry key, see :func:`list_models`.
        in_chans: number of input channels. None uses the architecture's default:
            1 for the classification networks (grayscale chest x-rays) and 3 for
            ``unet_d`` (the setting of the paper's Table B.1).
        num_classes: number of outputs. None uses the architecture's default: 5 for the
            classification networks (the five CheXpert tasks) and 1 for ``unet_d``.
        pretrained: None for a random initialization; a path to a local weights file
            (a ``state_dict``); or ``"torchvision"`` / ``"DEFAULT"`` for torchvision's
            published weights (downloaded, so it needs network access).
        **kwargs: architecture-specific options passed to the factory.

    Returns:
        A new ``nn.Module`` in training mode on the CPU.

    Raises:
        ValueError: unknown name (the message lists close matches) or a bad option.
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}{hint} (list_models() gives all {len(_REGISTRY)} names)"
        )
    for arg, value in (("in_chans", in_chans), ("num_classes", num_classes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return factory(in_chans=in_chans, num_classes=num_classes, pretrained=pretrained, **kwargs)
