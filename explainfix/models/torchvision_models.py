"""torchvision classification networks with an ``in_chans`` stem and a ``num_classes`` head.

Registered names: resnet18/34/50/101, densenet121/169, efficientnet_b0 ... b5,
mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large. Layer names are torchvision's:
only the stem convolution's ``in_channels`` and the classifier's ``out_features``
change, so a torchvision ``state_dict`` maps onto the model key by key.

Pretrained weights (``pretrained=``):

* ``None``: torchvision's random initialization.
* a path to a local file holding a ``state_dict`` (optionally nested under
  ``"state_dict"`` or ``"model"``; a ``"module."`` prefix is removed), either for the
  torchvision architecture with its original 3-channel stem and 1000-class head, or one
  that already matches ``in_chans`` / ``num_classes``.
* ``"torchvision"`` or ``"DEFAULT"``: torchvision's default ImageNet weights, downloaded
  (cached by ``torch.hub``). Where the download fails, a ``RuntimeError`` explains how
  to pass a local file instead. (The paper's pretrained EfficientNets used AdvProp
  weights, which torchvision does not publish; pass such a file by path.)

Adapting pretrained weights:

* stem: a 3-channel stem becomes 1-channel by summing over RGB, which gives exactly the
  response of the RGB network to a gray image replicated on the three channels. Any
  other change of channel count *repeat-averages*: new channel ``j`` takes old channel
  ``j mod c_old``, scaled by ``c_old / in_chans`` so that a constant input keeps its
  response.
* head: when ``num_classes`` differs from the file's, the classifier keeps its fresh
  torchvision initialization (it is re-initialised); every other tensor must load.

Example:
    >>> from explainfix.models import create_model
    >>> m = create_model("densenet121", in_chans=1, num_classes=5)
    >>> m.features.conv0.in_channels, m.classifier.out_features
    (1, 5)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torchvision
from torch import nn

from ..fileio import load_tensors
from .registry import register_model

__all__ = ["TORCHVISION_MODELS", "adapt_stem_weight", "load_pretrained"]

DEFAULT_IN_CHANS = 1
DEFAULT_NUM_CLASSES = 5
_DOWNLOAD_NAMES = ("torchvision", "DEFAULT")


def _kaiming_fan_out(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


def _kaiming_fan_in(weight: torch.Tensor) -> None:
    nn.init.kaiming_normal_(weight)


@dataclass(frozen=True)
class _Family:
    stem: str  # dotted module name of the first convolution
    head: str  # dotted module name of the final nn.Linear
    stem_init: Callable[[torch.Tensor], None]  # torchvision's init for that conv


_RESNET = _Family("conv1", "fc", _kaiming_fan_out)
_DENSENET = _Family("features.conv0", "classifier", _kaiming_fan_in)
_EFFICIENTNET = _Family("features.0.0", "classifier.1", _kaiming_fan_out)
_MOBILENET_V2 = _Family("features.0.0", "classifier.1", _kaiming_fan_out)
_MOBILENET_V3 = _Family("features.0.0", "classifier.3", _kaiming_fan_out)

TORCHVISION_MODELS: dict[str, _Family] = {
    **{f"resnet{d}": _RESNET for d in (18, 34, 50, 101)},
    **{f"densenet{d}": _DENSENET for d in (121, 169)},
    **{f"efficientnet_b{i}": _EFFICIENTNET for i in range(6)},
    "mobilenet_v2": _MOBILENET_V2,
    "mobilenet_v3_small": _MOBILENET_V3,
    "mobilenet_v3_large": _MOBILENET_V3,
}


def _parent_and_attr(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = dotted.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def _replace_stem(model: nn.Module, family: _Family, in_chans: int) -> None:
    parent, attr = _parent_and_attr(model, family.stem)
    old = getattr(parent, attr)
    if old.in_channels == in_chans:
        return
    new = nn.Conv2d(
        in_chans,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    with torch.no_grad():
        family.stem_init(new.weight)
        if new.bias is not None:
            new.bias.zero_()
    setattr(parent, attr, new)


def adapt_stem_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a stem convolution weight ``(out, c_old, *k)`` to ``in_chans`` input channels.

    Args:
        weight: the pretrained stem weight.
        in_chans: the wanted number of input channels.

    Returns:
        A new tensor ``(out, in_chans, *k)``: the sum over input channels when
        ``in_chans == 1``; otherwise channel ``j`` is old channel ``j mod c_old`` times
        ``c_old / in_chans`` (repeat-average). The input weight is returned unchanged
        when it already has ``in_chans`` channels.

    Example:
        >>> w = torch.ones(4, 3, 7, 7)
        >>> adapt_stem_weight(w, 1).shape, float(adapt_stem_weight(w, 1)[0, 0, 0, 0])
        (torch.Size([4, 1, 7, 7]), 3.0)
    """
    c_old = weight.shape[1]
    if c_old == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / c_old)
    tiled = weight.repeat(1, repeats, *([1] * (weight.dim() - 2)))[:, :in_chans]
    return tiled * (c_old / in_chans)


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained weights file not found: {path!r} (pass None, 'torchvision' or a path to a state_dict file)"
        )
    obj = load_tensors(path, what="state_dict file")
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path!r} does not hold a state_dict (a mapping of names to tensors)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _download_state_dict(name: str) -> dict[str, torch.Tensor]:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # network errors come in many types
        raise RuntimeError(
            f"could not download torchvision's {weights} weights for {name!r} ({type(err).__name__}: {err}). "
            f"Without network access, download {weights.url} elsewhere and pass its local path: "
            f"create_model({name!r}, pretrained='/path/to/{os.path.basename(weights.url)}')"
        ) from err


def load_pretrained(model: nn.Module, name: str, pretrained: str | os.PathLike) -> None:
    """Load pretrained weights into a freshly built torchvision ``model`` (in place).

    The state_dict is fully adapted and checked before anything is copied, so a failed
    load leaves ``model`` unchanged.

    Args:
        model: a model built by :func:`create_model` for architecture ``name``.
        name: a key of :data:`TORCHVISION_MODELS`.
        pretrained: ``"torchvision"`` / ``"DEFAULT"`` or a path to a state_dict file.

    Raises:
        FileNotFoundError: the file does not exist.
        RuntimeError: the download failed (the message says how to use a local file).
        ValueError: the file is unreadable (empty, corrupt, pickled code) or does not fit the
            architecture (names the offending keys).
    """
    family = TORCHVISION_MODELS[name]
    if isinstance(pretrained, str) and pretrained in _DOWNLOAD_NAMES:
        state = _download_state_dict(name)
    else:
        state = _read_state_dict(pretrained)
    target = model.state_dict()
    stem_key = f"{family.stem}.weight"
    head_keys = {f"{family.head}.weight", f"{family.head}.bias"}
    adapted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            continue  # reported below as unexpected
        if key == stem_key and value.dim() == target[key].dim():
            value = adapt_stem_weight(value, target[key].shape[1])
        if key in head_keys and value.shape != target[key].shape:
            continue  # different number of classes: keep the fresh head
        adapted[key] = value
    unexpected = sorted(set(state) - set(target))
    missing = sorted(set(target) - set(adapted) - head_keys)
    mismatched = sorted(k for k, v in adapted.items() if v.shape != target[k].shape)
    problems = []
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}")
    if missing:
        problems.append(f"missing keys {missing[:5]}")
    if mismatched:
        problems.append(
            "shape mismatch "
            + ", ".join(f"{k}: {tuple(adapted[k].shape)} vs {tuple(target[k].shape)}" for k in mismatched[:5])
        )
    if problems:
        raise ValueError(f"pretrained weights do not fit {name!r}: " + "; ".join(problems))
    model.load_state_dict(adapted, strict=False)


def _make_factory(name: str) -> Callable[..., nn.Module]:
    family = TORCHVISION_MODELS[name]

    def factory(
        *,
        in_chans: int | None = None,
        num_classes: int | None = None,
        pretrained: str | os.PathLike | None = None,
        **kwargs,
    ) -> nn.Module:
        in_chans = DEFAULT_IN_CHANS if in_chans is None else in_chans
        num_classes = DEFAULT_NUM_CLASSES if num_classes is None else num_classes
        if "weights" in kwargs:
            raise ValueError("pass pretrained= instead of torchvision's weights=")
        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kwargs)
        _replace_stem(model, family, in_chans)
        if pretrained is not None:
            load_pretrained(model, name, pretrained)
        return model

    factory.__name__ = name
    factory.__qualname__ = name
    factory.__doc__ = (
        f"torchvision ``{name}`` with an ``in_chans`` stem (``{family.stem}``) and a "
        f"``num_classes`` head (``{family.head}``); defaults in_chans=1, num_classes=5."
    )
    return factory


for _name in TORCHVISION_MODELS:
    register_model(_name)(_make_factory(_name))
