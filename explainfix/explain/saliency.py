"""Gradient saliency of every spatial kernel (paper Eq. 4).

:func:`spatial_saliency` gives one nonnegative score per spatial kernel, summed
over minibatches of a loader, for ExplainSteer (saliency-weighted spectra) and
ChannelPrune (which kernels to zero).
"""
from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable
from typing import Any, Callable

import torch
from torch import nn

from explainfix.batches import INPUT_KEYS, TARGET_KEYS, output_tensor, preserved_modes, preserved_requires_grad, split_batch, to_device
from explainfix.spatial import _require_parameter_weights, _require_spatial

__all__ = ["spatial_saliency", "as_target", "SALIENCY_METHODS", "INPUT_KEYS", "TARGET_KEYS"]

Target = Callable[[torch.Tensor, Any], torch.Tensor]

# method name -> the tensor whose absolute values are summed per kernel, from (the
# gradient summed over a minibatch - a fresh tensor this module owns, so it may be
# overwritten - and the weight)
SALIENCY_METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "grad_x_weight": lambda grad, weight: grad.mul_(weight),
    "grad": lambda grad, weight: grad,
}

def as_target(y: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Turn labels into a target ``y`` of the output's shape, values in ``[0, 1]``.

    Accepted labels (``C`` = ``output.shape[1]``):
        * exactly the output's shape: multi-hot / soft labels (classification
          ``(N, C)``), masks (segmentation ``(N, C, H, W)``);
        * class indices, an integer tensor of the output's shape without the class
          dimension (``(N,)`` for ``(N, C)`` outputs, ``(N, H, W)`` for
          ``(N, C, H, W)``): one-hot over the ``C`` classes;
        * for a single-channel output (``C == 1``), labels without that dimension
          (``(N,)`` or a ``(N, H, W)`` mask): a channel dimension is added.

    Uncertain or missing labels written as ``NaN`` or negative values (e.g.
    CheXpert's ``-1``) count as 0 (negative). A bool target becomes 0/1.

    Raises:
        ValueError: naming both shapes when the labels fit none of the above, or
            class indices outside ``[0, C)``.
    """
    if not torch.is_tensor(y):
        y = torch.as_tensor(y)
    y = y.to(output.device)
    out_shape, y_shape = tuple(output.shape), tuple(y.shape)
    no_class = out_shape[:1] + out_shape[2:] if output.ndim >= 2 else None
    if y_shape == out_shape:
        pass
    elif no_class is not None and y_shape == no_class and out_shape[1] == 1:
        y = y.unsqueeze(1)
    elif no_class is not None and y_shape == no_class and not (y.is_floating_point() or y.is_complex()) and y.dtype != torch.bool:
        n_classes = out_shape[1]
        y = y.long()
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ValueError(
                f"class indices must lie in [0, {n_classes}) for an output of shape {out_shape}; "
                f"got values in [{int(y.min())}, {int(y.max())}]"
            )
        y = nn.functional.one_hot(y, n_classes).movedim(-1, 1)
    else:
        raise ValueError(
            f"target of shape {y_shape} does not match the model output of shape {out_shape}: give labels of the "
            "output's shape, integer class indices of shape "
            f"{no_class if no_class is not None else '(N,)'}, or target=callable(output, batch)"
        )
    y = y.to(output.dtype) if output.is_floating_point() else y.float()
    return torch.where(torch.isnan(y) | (y < 0), torch.zeros_like(y), y)


def _kernel_scores(grad: torch.Tensor | None, weight: torch.Tensor, method: str) -> torch.Tensor:
    if grad is None:  # the layer does not influence the output
        return torch.zeros(weight.shape[:2], dtype=weight.dtype, device=weight.device)
    values = SALIENCY_METHODS[method](grad, weight.detach()).abs_()
    # sum over the kernel's positions as a product with ones: many times faster on the
    # CPU than a reduction over small trailing dimensions
    kernels = values.reshape(weight.shape[0] * weight.shape[1], -1)
    ones = torch.ones(kernels.shape[1], 1, dtype=kernels.dtype, device=kernels.device)
    return (kernels @ ones).reshape(weight.shape[:2])


def check_max_batches(max_batches: Any) -> int | None:
    """``max_batches`` as an int >= 1 or None; anything else (``1.5``, ``"2"``, ``True``) is a ValueError."""
    if max_batches is None:
        return None
    if isinstance(max_batches, bool) or not isinstance(max_batches, numbers.Integral) or max_batches < 1:
        raise ValueError(f"max_batches must be an integer >= 1 or None, got {max_batches!r}")
    return int(max_batches)


def _normal_tensors(value):
    """``value`` with every inference tensor (made under ``torch.inference_mode()``) cloned into a normal one."""
    if torch.is_tensor(value):
        return value.clone() if value.is_inference() else value
    if isinstance(value, dict):
        return {k: _normal_tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_normal_tensors(v) for v in value)
    return value


def _require_normal_model(model: nn.Module) -> None:
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in items:
            if tensor.is_inference():
                raise ValueError(
                    f"{kind} {name!r} of the model is an inference tensor (the model was created or loaded under "
                    "torch.inference_mode()), so no gradient can be taken for saliency; build or load the model "
                    "outside torch.inference_mode() (torch.no_grad() is fine)"
                )


def _progress(iterable, total, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="saliency", unit="batch", leave=False)


def spatial_saliency(
    model: nn.Module,
    loader: Iterable,
    *,
    method: str = "grad_x_weight",
    target: Target | None = None,
    max_batches: int | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Saliency of every spatial kernel, summed over minibatches (Eq. 4).

    For each minibatch ``M_m`` the gradient ``g`` of ``sum_i y_i^T (yhat_i /
    yhat'_i)`` with respect to each spatial weight ``f`` is taken, where ``yhat'``
    is ``yhat`` held constant, so every output contributes evenly. A kernel's score
    is ``1^T |g o f|`` (``method="grad_x_weight"``, Eq. 4) or ``1^T |g|``
    (``method="grad"``), summed over the kernel's spatial positions and then over
    minibatches.

    Args:
        model: Any module with at least one spatial convolution
            (:func:`explainfix.spatial.spatial_convs`). Its spatial weights may be
            fixed (``requires_grad=False``).
        loader: Iterable of batches (e.g. a ``DataLoader``). A batch is a tensor
            ``x`` (then ``target`` must be a callable), an ``(x, y, ...)`` tuple or
            list, or a dict holding ``x`` under one of :data:`INPUT_KEYS` and ``y``
            under one of :data:`TARGET_KEYS`. Tensors are moved to the device of
            the model's parameters.
        method: ``"grad_x_weight"`` (Eq. 4) or ``"grad"`` (absolute gradient only,
            which the paper finds sufficient for pruning).
        target: ``None`` to use the loader's ``y`` (see :func:`as_target`: class
            indices, multi-hot / soft labels, masks of the output's shape; NaN or
            negative = uncertain -> 0), or ``callable(output, batch) -> y`` giving a
            tensor of the output's shape (``batch`` as the loader yielded it, its
            tensors moved to the model's device).
        max_batches: Use at most this many minibatches (``M`` in Eq. 4); an int >= 1.
        progress: Show a tqdm progress bar.

    Returns:
        ``{layer name: scores}`` for every spatial conv, in model order. Scores are
        nonnegative, detached, on the layer's device, of shape
        ``weight.shape[:2]``: ``(out, in / groups)`` for ``Conv*d`` and
        ``(in, out / groups)`` for ``ConvTranspose*d`` (the layout of their weights),
        in the weight's dtype. A layer that does not influence the output scores 0.

    Raises:
        NoSpatialConvError: if the model has no spatial convolution.
        ValueError: on a spatial conv whose weight is computed by a
            parametrization (e.g. ``weight_norm``), an unknown method, a ``max_batches`` that is not an
            int >= 1 (``1.5``, ``"2"`` and ``True`` are refused), a model whose parameters or buffers are
            inference tensors (made under ``torch.inference_mode()``), an empty loader, a
            batch without a target when ``target`` is ``None``, a target whose
            shape does not fit the output, or scores that are not finite (the
            model overflows; see :func:`explainfix.calibrate_batchnorm`).

    Notes:
        The gradient of ``sum y * yhat / stopgrad(yhat)`` is that of ``yhat``
        weighted by ``y / yhat``; it is computed as one vector-Jacobian product
        with ``torch.autograd.grad(yhat, weights, grad_outputs=y / yhat')``: the
        rescaling touches neither ``yhat`` nor the graph (no in-place op) and
        nothing is written to any ``.grad``. Where an output is exactly
        0 the denominator is replaced by 1 (the unscaled gradient), so no NaN or
        inf arises.

        Gradients are enabled for the computation even under ``torch.no_grad()`` or
        ``torch.inference_mode()``; batch tensors made under inference mode are cloned first.

        Side effects, all undone before returning (also on error): the model runs
        in eval mode (BatchNorm uses its running statistics, dropout is off; every
        module's own ``training`` flag is restored); spatial weights get
        ``requires_grad=True`` and all other parameters ``requires_grad=False``
        (so no gradient is computed for them); each parameter's flag is restored.
        Parameters and their ``.grad`` fields are never changed, and no hook is
        registered. Only one minibatch's graph lives at a time, so peak memory is
        that of one forward + backward pass.

    Example:
        >>> import torch, torchvision
        >>> model = torchvision.models.resnet18(num_classes=3)
        >>> batches = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))]
        >>> scores = spatial_saliency(model, batches, progress=False)
        >>> scores["conv1"].shape
        torch.Size([64, 3])
    """
    if method not in SALIENCY_METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose one of {sorted(SALIENCY_METHODS)}")
    max_batches = check_max_batches(max_batches)
    if target is not None and not callable(target):
        raise ValueError(f"target must be None or a callable(output, batch) -> y, got {type(target).__name__}")
    layers = _require_spatial(model, "no kernel to score")
    _require_parameter_weights(layers, "scored")
    _require_normal_model(model)
    weights: list[nn.Parameter] = []  # unique weights (a weight may be shared by several layers)
    for _, module in layers:
        if not any(module.weight is w for w in weights):
            weights.append(module.weight)
    device = weights[0].device

    params = list(model.parameters())
    totals: list[torch.Tensor | None] = [None] * len(weights)
    n_batches = 0
    # inference_mode(False): a caller's torch.inference_mode() would otherwise silently give no gradient
    with torch.inference_mode(False), torch.enable_grad(), preserved_modes(model), preserved_requires_grad(model):
        model.eval()
        for p in params:
            p.requires_grad_(False)
        for w in weights:
            w.requires_grad_(True)
        batches = loader if max_batches is None else itertools.islice(loader, max_batches)
        try:
            total = len(loader) if max_batches is None else min(len(loader), max_batches)
        except TypeError:
            total = max_batches
        for batch in _progress(batches, total, progress):
            batch = _normal_tensors(to_device(batch, device))
            x, y = split_batch(batch)
            output = output_tensor(model(x))
            if target is not None:
                y = target(output, batch)
            elif y is None:
                raise ValueError(
                    "the loader yields inputs without targets; yield (x, y) pairs or pass "
                    "target=callable(output, batch)"
                )
            y = as_target(y, output)
            scale = output.detach()
            scale = torch.where(scale == 0, torch.ones_like(scale), scale)
            if output.requires_grad:
                grads = torch.autograd.grad(output, weights, grad_outputs=y / scale, allow_unused=True)
            else:  # no spatial weight influences the output
                grads = (None,) * len(weights)
            del output, y, scale
            with torch.no_grad():
                for k, (g, w) in enumerate(zip(grads, weights)):
                    score = _kernel_scores(g, w, method)
                    totals[k] = score if totals[k] is None else totals[k] + score
            del grads
            n_batches += 1
    if n_batches == 0:
        raise ValueError("the loader yielded no batch; saliency needs at least one minibatch")
    by_weight = {id(w): t for w, t in zip(weights, totals)}
    scores = {name: by_weight[id(module.weight)].clone() for name, module in layers}
    for name, score in scores.items():
        if not torch.isfinite(score).all():
            raise ValueError(
                f"the saliency of layer {name!r} is not finite: the model's activations or gradients overflow. "
                "After re-initializing the spatial filters of a model with BatchNorm, re-estimate its statistics "
                "first (explainfix.calibrate_batchnorm(model, loader)), or run in float64"
            )
    return scores
