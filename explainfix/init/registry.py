"""Registry of the fixed spatial initializations.

An *init method* takes the spatial convolutions of a model and a seeded
``torch.Generator`` and returns the new weights it wants, without assigning them
(:func:`explainfix.init.initialize` assigns them once every layer has succeeded):

.. code-block:: python

    def method(layers: list[tuple[str, nn.Module]], *, generator: torch.Generator, **options) -> InitPlan

New methods are added with :func:`register_init`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

__all__ = ["InitPlan", "InitMethod", "register_init", "list_inits", "get_init"]


@dataclass(frozen=True)
class InitPlan:
    """What an init method wants to write.

    Attributes:
        weights: New weight per layer name, with the layer's weight shape, dtype and
            device. Layers left out keep their weights.
        details: Per-layer notes as ``(layer, note)`` pairs (GuidedSteer: which guide
            layer steered it).
    """

    weights: Mapping[str, torch.Tensor]
    details: tuple[tuple[str, str], ...] = field(default=())


InitMethod = Callable[..., InitPlan]

_REGISTRY: dict[str, InitMethod] = {}


def register_init(name: str) -> Callable[[InitMethod], InitMethod]:
    """Decorator that registers an init method under ``name``.

    Example:
        >>> from explainfix.init import InitPlan, register_init
        >>> @register_init("zeros")
        ... def zeros(layers, *, generator):
        ...     return InitPlan({n: torch.zeros_like(m.weight) for n, m in layers})
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"init method names must be identifiers, got {name!r}")

    def decorate(fn: InitMethod) -> InitMethod:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"an init method named {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorate


def list_inits() -> list[str]:
    """Names of the registered init methods, sorted.

    Example:
        >>> "ghaar" in list_inits()
        True
    """
    return sorted(_REGISTRY)


def get_init(name: str) -> InitMethod:
    """The init method registered as ``name``; ValueError naming the valid ones otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown init method {name!r}; valid methods: {', '.join(list_inits())}") from None
