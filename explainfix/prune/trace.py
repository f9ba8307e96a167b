"""One traced forward pass and the autograd-graph helpers the pruning analysis reads (torch only)."""
from __future__ import annotations

import re
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["Trace", "run_model", "flatten", "grad_inputs"]

BN = nn.modules.batchnorm._BatchNorm
IN = nn.modules.instancenorm._InstanceNorm
CONV = nn.modules.conv._ConvNd
TRACKED = (CONV, nn.Linear, BN, IN, nn.PReLU, nn.LayerNorm, nn.GroupNorm)
LEAF = "leaf"


def run_model(model: nn.Module, example_inputs: Any):
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple / list, else ``model(inputs)``."""
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def flatten(obj) -> list:
    """The tensors of a nested tuple / list / dict, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in flatten(v)]
    if isinstance(obj, (tuple, list)):
        return [x for v in obj for x in flatten(v)]
    return []


def grad_inputs(example_inputs):
    """A copy of the example inputs whose floating tensors require grad (see DESIGN: frozen models)."""
    if isinstance(example_inputs, torch.Tensor):
        t = example_inputs.detach().clone()
        return t.requires_grad_(True) if t.is_floating_point() else t
    if isinstance(example_inputs, dict):
        return {k: grad_inputs(v) for k, v in example_inputs.items()}
    if isinstance(example_inputs, (tuple, list)):
        return type(example_inputs)(grad_inputs(v) for v in example_inputs)
    return example_inputs


class Trace:
    """One forward pass: output grad_fns, module calls, and which tensors hang off the input."""

    def __init__(self, example_inputs: Any):
        self.calls: dict[nn.Module, int] = {}
        self.module_of: dict[Any, tuple[nn.Module, Any]] = {}  # out grad_fn -> (module, input key)
        self.module_in: dict[nn.Module, Any] = {}
        self.module_out: dict[nn.Module, Any] = {}  # module -> its output grad_fn
        self.inputs = [t for t in flatten(example_inputs) if isinstance(t, torch.Tensor)]
        self.outputs: list[torch.Tensor] = []
        self.output_fns: set = set()

    def hook(self, module, args, output):
        self.calls[module] = self.calls.get(module, 0) + 1
        inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
        key = key_of(inp)
        self.module_in[module] = key
        out = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            self.module_of[out.grad_fn] = (module, key)
            self.module_out[module] = out.grad_fn

    def forward(self, model, example_inputs):
        handles = [m.register_forward_hook(self.hook) for m in model.modules() if isinstance(m, TRACKED)]
        try:
            out = run_model(model, example_inputs)
        finally:
            for h in handles:
                h.remove()
        self.outputs = [t for t in flatten(out) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        self.output_fns = {t.grad_fn for t in self.outputs}
        return out


def base(fn) -> str:
    """Autograd node name without namespace and ``Backward<k>`` suffix (``"Relu"``, ``"Convolution"``)."""
    return re.sub(r"Backward\d*$", "", fn.name().split("::")[-1])


def key_of(t):
    if t is None:
        return None
    if t.grad_fn is None:
        return LEAF
    return (t.grad_fn, t.output_nr)


def topo(roots: Iterable) -> list:
    """Autograd nodes reachable from ``roots``, inputs before users."""
    order, seen = [], set()
    stack = [(r, False) for r in roots]
    while stack:
        f, done = stack.pop()
        if done:
            order.append(f)
            continue
        if f in seen:
            continue
        seen.add(f)
        stack.append((f, True))
        for g, _ in f.next_functions:
            if g is not None and g not in seen:
                stack.append((g, False))
    return order


def is_acc(fn) -> bool:
    return fn is not None and "AccumulateGrad" in fn.name()


def shape(fn, nr) -> tuple | None:
    if fn is None:
        return None
    if is_acc(fn):
        return tuple(fn.variable.shape)
    try:
        return tuple(fn._input_metadata[nr].shape)
    except (AttributeError, IndexError, RuntimeError):
        return None


def wrap_dim(d: int) -> int:
    return d - (1 << 64) if d >= (1 << 63) else d
