"""Fill every spatial convolution of a model with a fixed initialization, then fix it."""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from explainfix.init.generated import kernel_count
from explainfix.init.registry import get_init
from explainfix.spatial import _require_parameter_weights, _require_spatial, fix_spatial

__all__ = ["InitReport", "initialize"]


@dataclass(frozen=True)
class InitReport:
    """What :func:`initialize` did.

    Attributes:
        method: Name of the init method.
        seed: Seed of the generator (drawn at random when none was given, so that the
            run can be repeated with it).
        layers: Names of the spatial convolutions, in ``named_modules`` order.
        kernels: Number of spatial kernels.
        parameters: Number of spatial weights (kernels x kernel size; biases not counted).
        fixed: Whether the spatial convolutions were fixed (``requires_grad=False``).
        seconds: Wall time of the call.
        details: Per-layer notes as ``(layer, note)`` (GuidedSteer: the guide layer used).
    """

    method: str
    seed: int
    layers: tuple[str, ...]
    kernels: int
    parameters: int
    fixed: bool
    seconds: float
    details: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def _check_options(method: str, fn, options: dict) -> None:
    params = {
        name: p
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "generator"
    }
    unknown = sorted(set(options) - set(params))
    if unknown:
        valid = ", ".join(params) or "none"
        raise ValueError(f"init method {method!r} got unknown option(s) {', '.join(unknown)}; its options: {valid}")
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in options]
    if required:
        raise ValueError(f"init method {method!r} needs option(s): {', '.join(required)}")


def _generator(seed: int | None) -> tuple[torch.Generator, int]:
    gen = torch.Generator()
    if seed is None:
        return gen, gen.seed()
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    gen.manual_seed(seed)
    return gen, seed


@torch.no_grad()
def initialize(
    model: nn.Module, method: str, *, seed: int | None = None, fix: bool = True, **options
) -> InitReport:
    """Initialize every spatial convolution of ``model`` in place, and fix it.

    Spatial convolutions are Conv / ConvTranspose layers (1-D, 2-D, 3-D, grouped and
    depthwise included) with a kernel > 1 in every dimension; see
    :func:`explainfix.spatial.spatial_convs`. Everything is computed before anything is
    written, so a failing call leaves the model unchanged. Weights keep their dtype and
    device; biases are not touched (but are fixed with the weights).

    Args:
        model: Any ``nn.Module`` with at least one spatial convolution.
        method: One of :func:`list_inits`: ``"ones"``, ``"dct2"``, ``"unchanged"``,
            ``"ghaar"``, ``"psine"``, ``"guided_steer"``.
        seed: Seed of the ``torch.Generator`` used for the whole call; the same seed gives
            identical weights. ``None``: a random seed (reported).
        fix: Freeze the spatial weights and biases afterwards (:func:`fix_spatial`).
        **options: Options of the method, e.g. ``normalize=True`` for ``"ghaar"`` or
            ``guide=pretrained_model, basis="layer", sampler="normal", centered=True``
            for ``"guided_steer"``.

    Returns:
        An :class:`InitReport`.

    Raises:
        ValueError: unknown method, unknown or missing option, a bad guide, or a
            spatial conv whose weight is computed by a parametrization (e.g.
            ``weight_norm``: writing to it would be lost).
        NoSpatialConvError: the model has no spatial convolution.

    Example:
        >>> import torchvision
        >>> model = torchvision.models.resnet18(num_classes=2)
        >>> report = initialize(model, "ghaar", seed=0)
        >>> report.kernels, model.conv1.weight.requires_grad
        (1220800, False)
    """
    start = time.perf_counter()
    fn = get_init(method)
    _check_options(method, fn, options)
    layers = _require_spatial(model)
    _require_parameter_weights(layers, "initialized")
    generator, seed = _generator(seed)

    plan = fn(layers, generator=generator, **options)

    modules = dict(layers)
    for name, new in plan.weights.items():
        if name not in modules:
            raise RuntimeError(f"init method {method!r} returned weights for unknown layer {name!r}")
        old = modules[name].weight
        if new.shape != old.shape or new.dtype != old.dtype or new.device != old.device:
            raise RuntimeError(
                f"init method {method!r} returned a {tuple(new.shape)} {new.dtype} tensor on {new.device} for "
                f"layer {name!r}, whose weight is {tuple(old.shape)} {old.dtype} on {old.device}"
            )
        if new.numel() and not torch.isfinite(torch.linalg.vector_norm(new.detach().float(), float("inf"))):
            raise RuntimeError(f"init method {method!r} produced non-finite weights for layer {name!r}")
    for name, new in plan.weights.items():
        modules[name].weight.copy_(new)
    if fix:
        fix_spatial(model)

    kernels = sum(kernel_count(m.weight)[0] for _, m in layers)
    return InitReport(
        method=method,
        seed=seed,
        layers=tuple(name for name, _ in layers),
        kernels=kernels,
        parameters=sum(m.weight.numel() for _, m in layers),
        fixed=bool(fix),
        seconds=time.perf_counter() - start,
        details=plan.details,
    )
