"""One optimisation step, the same for the training loop and the speed benchmarks.

:class:`TrainStep` holds what a step needs (model, optimizer, loss, precision, memory format)
and nothing else, so ``benchmarks/bench_train_step.py`` times exactly what ``explainfix
train`` runs. Only trainable parameters reach the optimizer (:func:`trainable_parameters`):
fixed spatial weights get no gradient buffer, no optimizer state and no weight-gradient
kernel (autograd skips ``grad_weight`` of a conv whose weight does not require grad).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch
from torch import nn

from explainfix.batches import output_tensor

__all__ = ["TrainStep", "trainable_parameters", "build_optimizer", "autocast_dtype", "AMP_DTYPES"]

#: ``runtime.amp`` -> autocast dtype
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` setting (``"none"`` -> None)."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
    return AMP_DTYPES[amp]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that require grad, each once (tied parameters are not repeated)."""
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def build_optimizer(
    params: Iterable[nn.Parameter],
    name: str = "adam",
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """Adam (the paper's default), AdamW or SGD over ``params``.

    Raises:
        ValueError: no parameter to train (e.g. a fully fixed model) or an unknown name.
    """
    params = list(params)
    if not params:
        raise ValueError("the model has no trainable parameter: nothing to optimise")
    device_type = params[0].device.type
    if fused is None:
        fused = device_type == "cuda"
    extra = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **extra)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")


class TrainStep:
    """``step(x, y, mask) -> loss``: forward, loss, backward and optimizer update.

    Args:
        model: the network, already on its device (wrapped in DDP or compiled, if wanted).
        optimizer: over the trainable parameters only.
        loss_fn: ``loss_fn(logits, target, mask) -> scalar``.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` autocast (fp16 uses a ``GradScaler``).
        channels_last: feed 4-d inputs in ``channels_last`` memory format (convert the model too).
        compile: ``torch.compile`` the model's forward (``True``, or a ``torch.compile`` mode name
            such as ``"reduce-overhead"``, which captures CUDA graphs on a GPU).
        device: where inputs go (default: the model's parameters' device).

    The loss is returned detached (no host synchronisation happens here), so a caller can
    log it lazily.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
        *,
        amp: str = "none",
        channels_last: bool = False,
        compile: bool | str = False,
        device: torch.device | str | None = None,
    ):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        if compile:
            self.model = torch.compile(model, **({"mode": compile} if isinstance(compile, str) else {}))
        self.amp_dtype = autocast_dtype(amp)
        self.channels_last = channels_last
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

    def autocast(self):
        """The autocast context of this step's precision (a no-op without AMP)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the step's device, in its memory format."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.prepare(x)
        y = y.to(self.device, non_blocking=True)
        mask = None if mask is None else mask.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.model(x)
            logits = output_tensor(logits)
            loss = self.loss_fn(logits.float(), y, mask)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()
