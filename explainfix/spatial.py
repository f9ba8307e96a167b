"""Which layers are spatial convolutions, and fixing / unfixing them.

A *spatial* convolution is any ``Conv1d/2d/3d`` or ``ConvTranspose1d/2d/3d`` whose
kernel is larger than 1 in every dimension (grouped and depthwise included). 1x1
(pointwise) convolutions, BatchNorm and Linear layers are not spatial and stay
learnable when a model is fixed.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from torch import nn

__all__ = [
    "is_spatial_conv",
    "spatial_convs",
    "fix_spatial",
    "unfix_spatial",
    "NoSpatialConvError",
]


class NoSpatialConvError(ValueError):
    """Raised when a model has no spatial convolution to work on."""


def is_spatial_conv(module: nn.Module) -> bool:
    """True for a conv / transposed conv whose kernel is > 1 in every dimension."""
    if not isinstance(module, nn.modules.conv._ConvNd):
        return False
    if isinstance(module.weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"{type(module).__name__} is a lazy module whose weight is not materialised yet; "
            "run one forward pass before using ExplainFix on it"
        )
    return all(k > 1 for k in module.kernel_size)


def spatial_convs(model: nn.Module) -> Iterator[tuple[str, nn.modules.conv._ConvNd]]:
    """Yield ``(name, module)`` for every spatial convolution, in ``named_modules`` order.

    Example:
        >>> import torchvision
        >>> names = [n for n, _ in spatial_convs(torchvision.models.resnet18())]
        >>> names[:2]
        ['conv1', 'layer1.0.conv1']
    """
    for name, module in model.named_modules():
        if is_spatial_conv(module):
            yield name, module


def _require_spatial(
    model: nn.Module, there_is: str = "nothing to fix, explain or prune"
) -> list[tuple[str, nn.modules.conv._ConvNd]]:
    """``list(spatial_convs(model))``, or ``NoSpatialConvError`` ending "there is <there_is>" when empty."""
    layers = list(spatial_convs(model))
    if not layers:
        raise NoSpatialConvError(
            f"{type(model).__name__} has no spatial convolution (Conv/ConvTranspose with a kernel > 1 "
            f"in every dimension); there is {there_is}"
        )
    return layers


def _require_parameter_weights(layers: Iterable[tuple[str, nn.Module]], action: str) -> None:
    """ValueError naming the first layer whose weight is not an ``nn.Parameter``.

    A weight computed by a parametrization (``torch.nn.utils.parametrizations.weight_norm``,
    ``spectral_norm``, ``parametrize.register_parametrization``) or by the older hook-based
    ``torch.nn.utils.weight_norm`` is recomputed on every access or forward pass: writing
    to it would be lost silently and it has no ``requires_grad`` flag of its own.
    """
    for name, module in layers:
        if not isinstance(module.weight, nn.Parameter):
            raise ValueError(
                f"the weight of spatial conv {name!r} is computed (e.g. by weight_norm or a parametrization), "
                f"not an nn.Parameter, so it cannot be {action}; remove the parametrization first "
                "(torch.nn.utils.parametrize.remove_parametrizations)"
            )


def _set_requires_grad(model: nn.Module, flag: bool) -> nn.Module:
    layers = _require_spatial(model)
    _require_parameter_weights(layers, "fixed or unfixed")  # checked for all layers before any change
    for _, module in layers:
        for param in (module.weight, module.bias):
            if param is not None:
                param.requires_grad_(flag)
    return model


def fix_spatial(model: nn.Module) -> nn.Module:
    """Freeze the weight and bias of every spatial convolution (in place).

    Fixed weights get no gradient, so no optimiser can change them and no gradient
    buffers are allocated. 1x1 convs, norms and linear layers keep learning.

    Returns:
        The same model, for chaining.

    Raises:
        NoSpatialConvError: if the model has no spatial convolution.
        ValueError: naming a spatial conv whose weight is computed by a
            parametrization (e.g. ``weight_norm``); nothing is changed then.
    """
    return _set_requires_grad(model, False)


def unfix_spatial(model: nn.Module) -> nn.Module:
    """Make every spatial convolution learnable again (in place); returns the model.

    Raises the same errors as :func:`fix_spatial`.
    """
    return _set_requires_grad(model, True)

