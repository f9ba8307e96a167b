"""Which channels ChannelPrune may remove, and removing them (steps 3 and 4).

This is the only module that uses Torch-Pruning (``torch_pruning==1.6.1``). Its
``DependencyGraph`` says which layers are *coupled* (pruning channel ``c`` of one
tensor forces the same cut in every layer that produces or reads it); it does not
say whether a channel may go. That is decided here, on the zeroed, unpruned model:

    A channel of a dependency group is removable only if every layer that reads it
    (every conv / linear consumer in the group) either has all-zero weights for it,
    or receives an identically zero value for it.

"Identically zero" is proven by propagating per-channel zero masks through the
autograd graph of one forward pass (abstract interpretation, no data involved):
convolutions and linear layers from their weights and biases, and a whitelist of
zero-preserving ops (ReLU-like activations incl. ReLU6, SiLU, GELU, ELU/CELU,
hardswish, Mish, tanh; max / average / adaptive pooling; padding; upsampling;
dropout; copies; spatial means). ``add`` / ``sub`` give zero only where all inputs
are zero, ``mul`` where one factor is, ``div`` where the numerator is, ``cat`` keeps
each channel's mask. Unknown ops, sigmoid-like ops and channel-mixing ops give "not
zero" (conservative).

Eval-mode BatchNorm maps a zero channel to the constant ``beta - mean * gamma /
sqrt(var + eps)``. In ``"exact"`` mode the channel counts as zero only if that
constant and ``beta`` are exactly 0 (true for freshly initialised BatchNorm). In
``"paper"`` mode it counts as zero anyway and its "ghost bias" (the BatchNorm shift,
or a conv bias whose whole input is zero) is dropped, as the paper does; the
dropped biases are listed in :attr:`ChannelPlan.ghosts` and set to zero by
:func:`apply_plan` - also in the few dead channels that must stay (e.g. to keep one
channel per layer), so that the pruned model equals the zeroed model *with ghost
biases dropped* exactly. Layers that produce a model output keep their biases.

Structures that are left whole: the model's input and output channels, grouped
convolutions that are not depthwise, LayerNorm / GroupNorm, split / slice / unbind
/ expand, channel-mixing ops (transpose, permute, reductions over channels), modules
called more than once, ``x + constant`` with an unknown constant, and anything the
whitelist does not know. Every layer keeps at least one channel.

One assumption cannot be read from autograd: ``F.pad(..., mode="constant")`` is taken
to pad with 0. :func:`explainfix.channelprune` therefore checks that the pruned model
equals the zeroed one on the example input, and raises (leaving the model as it was)
if it does not.

Groups are planned once on the unpruned model and applied once: each layer is cut
once per dimension with indices of the original model, so nothing goes stale.
"""
from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops as tp_ops
from torch_pruning.dependency import index_mapping as tp_index_mapping
from torch_pruning.pruner import function as tp_fn

__all__ = [
    "ChannelPlan",
    "Removal",
    "plan_channel_removal",
    "apply_plan",
    "drop_ghost_biases",
    "count_macs_and_params",
    "MODES",
]

MODES = ("paper", "exact")

_BN = nn.modules.batchnorm._BatchNorm
_IN = nn.modules.instancenorm._InstanceNorm
_CONV = nn.modules.conv._ConvNd
_TRACKED = (_CONV, nn.Linear, _BN, _IN, nn.PReLU, nn.LayerNorm, nn.GroupNorm)

# ---------------------------------------------------------------------------------------
# op vocabulary (autograd node names without the "Backward<k>" suffix)
_ZERO_UNARY = {
    "Relu", "LeakyRelu", "Elu", "Celu", "Gelu", "Silu", "Hardswish", "Mish", "Tanh", "Neg",
    "Clone", "ToCopy", "Alias", "NativeDropout", "ConstantPadNd", "Abs", "Sqrt", "Sgn", "Sign",
}
_ZERO_UNARY_RE = re.compile(
    r"^(MaxPool\dD(WithIndices)?|AvgPool\dD|AdaptiveAvgPool\dD|AdaptiveMaxPool\dD|"
    r"(Reflection|Replication)Pad\dD|Upsample(Nearest|NearestExact|Linear|Bilinear|Bicubic|Trilinear)\dD(Aa)?)$"
)
_ALIGNED_UNARY = {"Sigmoid", "Hardsigmoid", "Exp", "Softplus", "LogSigmoid", "Reciprocal", "Pow", "Rsqrt"}
_BINARY = {"Add", "Sub", "Mul", "Div"}
_REDUCE = {"Mean", "Sum", "Amax", "Amin"}
_VIEW = {"View", "UnsafeView", "Reshape", "ReshapeAlias", "Squeeze", "Unsqueeze"}


def _base(fn) -> str:
    return re.sub(r"Backward\d*$", "", fn.name().split("::")[-1])


@dataclass(frozen=True)
class Removal:
    """Channels to cut from one layer (indices of the unpruned layer).

    ``kind`` is ``"out"`` (output channels of a conv / linear), ``"in"`` (input
    channels), ``"channels"`` (BatchNorm, InstanceNorm, PReLU, depthwise conv: in and
    out together) or ``"param"`` (a bare parameter along ``dim``).
    """

    name: str
    kind: str
    indices: tuple[int, ...]
    dim: int = 0


@dataclass(frozen=True)
class ChannelPlan:
    """What :func:`apply_plan` will do; computed on the zeroed, unpruned model."""

    removals: tuple[Removal, ...]
    ghosts: tuple[tuple[str, int], ...] = ()
    groups: int = 0
    groups_pruned: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    @property
    def channels_removed(self) -> int:
        """Output channels removed from conv / linear layers."""
        return sum(len(r.indices) for r in self.removals if r.kind == "out" or r.kind == "channels")


# ---------------------------------------------------------------------------------------
# tracing
class _Trace:
    """One forward pass: output grad_fns, module calls, and which tensors hang off the input."""

    def __init__(self, example_inputs: Any):
        self.calls: dict[nn.Module, int] = {}
        self.module_of: dict[Any, tuple[nn.Module, Any]] = {}  # out grad_fn -> (module, input key)
        self.module_in: dict[nn.Module, Any] = {}
        self.inputs = [t for t in _flatten(example_inputs) if isinstance(t, torch.Tensor)]
        self.outputs: list[torch.Tensor] = []
        self.output_fns: set = set()

    def hook(self, module, args, output):
        self.calls[module] = self.calls.get(module, 0) + 1
        inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
        key = _key_of(inp)
        self.module_in[module] = key
        out = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            self.module_of[out.grad_fn] = (module, key)

    def forward(self, model, example_inputs):
        handles = [m.register_forward_hook(self.hook) for m in model.modules() if isinstance(m, _TRACKED)]
        try:
            out = run_model(model, example_inputs)
        finally:
            for h in handles:
                h.remove()
        self.outputs = [t for t in _flatten(out) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        self.output_fns = {t.grad_fn for t in self.outputs}
        return out


def run_model(model: nn.Module, example_inputs: Any):
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple / list, else ``model(inputs)``."""
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def _flatten(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _flatten(v)]
    if isinstance(obj, (tuple, list)):
        return [x for v in obj for x in _flatten(v)]
    return []


_LEAF = "leaf"


def _key_of(t):
    if t is None:
        return None
    if t.grad_fn is None:
        return _LEAF
    return (t.grad_fn, t.output_nr)


def _topo(roots: Iterable) -> list:
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


def _is_acc(fn) -> bool:
    return fn is not None and "AccumulateGrad" in fn.name()


def _shape(fn, nr) -> tuple | None:
    if fn is None:
        return None
    if _is_acc(fn):
        return tuple(fn.variable.shape)
    try:
        return tuple(fn._input_metadata[nr].shape)
    except (AttributeError, IndexError, RuntimeError):
        return None


def _wrap_dim(d: int) -> int:
    return d - (1 << 64) if d >= (1 << 63) else d


# ---------------------------------------------------------------------------------------
# zero-mask propagation
class _Analysis:
    """Per-channel "identically zero" masks of every autograd node output."""

    def __init__(self, trace: _Trace, mode: str):
        self.trace = trace
        self.mode = mode
        self.masks: dict[Any, torch.Tensor | None] = {}
        self.dep: dict[Any, bool] = {}  # does this node depend on the model input
        self.ghosts: dict[tuple[nn.Module, int], None] = {}
        self._removable: dict[nn.Module, torch.Tensor] = {}
        self._nz: dict[nn.Module, torch.Tensor] = {}
        input_ids = {id(t) for t in trace.inputs}
        order = _topo(t.grad_fn for t in trace.outputs)
        self.order = order
        for f in order:
            if _is_acc(f):
                self.dep[f] = id(f.variable) in input_ids
                continue
            self.dep[f] = any(self.dep.get(g, False) for g, _ in f.next_functions if g is not None)
            self.masks[(f, 0)] = self._rule(f) if self.dep[f] else None

    # -- helpers
    def mask(self, key) -> torch.Tensor | None:
        if key is None or key == _LEAF:
            return None
        return self.masks.get(key)

    def out_channels(self, f) -> int | None:
        s = _shape(f, 0)
        return s[1] if s is not None and len(s) >= 2 else None

    def operands(self, f):
        """(key, shape, role, mask, depends on input, grad_fn) of every operand of a binary op."""
        out = _shape(f, 0)
        base = _base(f)
        res = []
        for k, (g, nr) in enumerate(f.next_functions):
            shape = _shape(g, nr)
            if g is None and base in ("Mul", "Div"):
                saved = getattr(f, "_saved_self" if k == 0 else "_saved_other", None)
                shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else None
            role = _role(shape, out)
            key = None if g is None else (_LEAF if _is_acc(g) else (g, nr))
            dep = self.dep.get(g, False) if g is not None else False
            res.append((key, shape, role, self.mask(key) if role == "channel" else None, dep, g))
        return res

    # -- rules
    def _rule(self, f) -> torch.Tensor | None:
        mod = self.trace.module_of.get(f)
        if mod is not None:
            # a model output keeps its biases, whatever the mode
            return self._module_rule(mod[0], self.mask(mod[1]), exact=f in self.trace.output_fns)
        base = _base(f)
        c = self.out_channels(f)
        if c is None:
            return None
        if base in _ZERO_UNARY or _ZERO_UNARY_RE.match(base) or base == "Hardtanh":
            if base == "Hardtanh":
                lo, hi = getattr(f, "_saved_min_val", -1.0), getattr(f, "_saved_max_val", 1.0)
                if not (float(lo) <= 0.0 <= float(hi)):
                    return None
            g, nr = f.next_functions[0]
            m = self.mask((g, nr)) if g is not None and not _is_acc(g) else None
            return m if m is not None and m.numel() == c else None
        if base in _BINARY:
            ops = self.operands(f)
            chan = [o for o in ops if o[2] == "channel" and o[3] is not None and o[3].numel() == c]
            if base in ("Add", "Sub"):
                if len(chan) != len(ops):
                    return None
                out = chan[0][3].clone()
                for o in chan[1:]:
                    out &= o[3]
                return out
            if base == "Mul":
                if not chan:
                    return None
                out = chan[0][3].clone()
                for o in chan[1:]:
                    out |= o[3]
                return out
            first = ops[0]  # Div: zero where the numerator is
            return first[3] if first in chan else None
        if base == "Cat":
            return self._cat_rule(f, c)
        if base in _VIEW:
            g, nr = f.next_functions[0]
            m = self.mask((g, nr)) if g is not None else None
            return _view_mask(m, _shape(g, nr), _shape(f, 0))
        if base in _REDUCE:
            if not _spatial_reduction(f):
                return None
            g, nr = f.next_functions[0]
            m = self.mask((g, nr)) if g is not None else None
            return m if m is not None and m.numel() == c else None
        return None

    def _cat_rule(self, f, c) -> torch.Tensor | None:
        shape = _shape(f, 0)
        dim = _wrap_dim(int(getattr(f, "_saved_dim", 1)))
        dim = dim + len(shape) if dim < 0 else dim
        parts = []
        for g, nr in f.next_functions:
            s = _shape(g, nr)
            if s is None or len(s) < 2:
                return None
            m = self.mask((g, nr)) if g is not None and not _is_acc(g) else None
            if m is None or m.numel() != s[1]:
                m = torch.zeros(s[1], dtype=torch.bool)
            parts.append(m)
        if dim == 1:
            out = torch.cat(parts)
            return out if out.numel() == c else None
        if all(p.numel() == c for p in parts):
            out = parts[0].clone()
            for p in parts[1:]:
                out &= p
            return out
        return None

    def _module_rule(self, module: nn.Module, m: torch.Tensor | None, exact: bool) -> torch.Tensor | None:
        exact = exact or self.mode == "exact"
        with torch.no_grad():
            if isinstance(module, _CONV):
                out = _conv_live(module, m, self.nonzero(module)).logical_not()
                return self._bias_rule(module, out, module.bias, exact)
            if isinstance(module, nn.Linear):
                w = module.weight.detach().ne(0)
                if m is not None and m.numel() == module.in_features:
                    w = w & ~m.to(w.device)[None, :]
                out = ~w.any(1).cpu()
                if module.bias is not None:
                    out &= module.bias.detach().eq(0).cpu()
                return out
            if isinstance(module, (_BN, _IN)):
                if m is None or m.numel() != module.num_features:
                    return None
                shift_zero = _norm_shift_zero(module)
                if exact:
                    return m & shift_zero
                for c in torch.nonzero(m & ~shift_zero).flatten().tolist():
                    self.ghosts[(module, c)] = None
                return m.clone()
            if isinstance(module, nn.PReLU):
                return m
        return None

    def _bias_rule(self, module, out: torch.Tensor, bias, exact: bool) -> torch.Tensor:
        if bias is None:
            return out
        nz = bias.detach().ne(0).cpu()
        if exact:
            return out & ~nz
        for c in torch.nonzero(out & nz).flatten().tolist():
            self.ghosts[(module, c)] = None
        return out

    def nonzero(self, conv: _CONV) -> torch.Tensor:
        nz = self._nz.get(conv)
        if nz is None:
            nz = self._nz[conv] = _nonzero_kernels(conv.weight)
        return nz

    def input_removable(self, module: nn.Module) -> torch.Tensor:
        """(in channels,) bool: the consumer's weights for it are all zero or its input is zero."""
        cached = self._removable.get(module)
        if cached is None:
            with torch.no_grad():
                if isinstance(module, _CONV):
                    dead = _conv_in_dead(module, self.nonzero(module))
                else:
                    dead = ~module.weight.detach().ne(0).any(0).cpu()
            zero_in = self.mask(self.trace.module_in.get(module))
            if zero_in is not None and zero_in.numel() == dead.numel():
                dead = dead | zero_in
            cached = self._removable[module] = dead
        return cached

    # -- admissibility of a node inside a dependency group
    def aligned(self, f, allowed_params: dict) -> bool:
        """True if this op keeps channels apart and all its channel operands get cut too."""
        if not self.dep.get(f, False):
            return True  # weight-side computation (e.g. ``weight.t()``, scalars of learned fusions)
        base = _base(f)
        c = self.out_channels(f)
        if c is None:
            return False
        if base in _ZERO_UNARY or _ZERO_UNARY_RE.match(base) or base in _ALIGNED_UNARY or base == "Hardtanh":
            s = _shape(*f.next_functions[0])
            return s is not None and len(s) >= 2 and s[1] == c and not _is_acc(f.next_functions[0][0])
        if base in _BINARY or base == "Cat":
            if base == "Cat":
                d = _wrap_dim(int(getattr(f, "_saved_dim", 1)))
                if d not in (1, 1 - len(_shape(f, 0))):
                    return False
                return all(g is not None and not _is_acc(g) and self.dep.get(g, False) for g, _ in f.next_functions)
            for key, shape, role, _, dep, g in self.operands(f):
                if role == "broadcast":
                    continue
                if role != "channel":
                    return False
                if dep and g is not None and not _is_acc(g):
                    continue
                if _is_acc(g) and g.variable in allowed_params:
                    continue
                return False
            return True
        if base in _VIEW:
            g, nr = f.next_functions[0]
            si, so = _shape(g, nr), _shape(f, 0)
            return si is not None and so is not None and _view_kind(si, so) is not None
        if base in _REDUCE:
            return _spatial_reduction(f)
        return False

    def channel_params(self) -> dict:
        """Parameters used directly as per-channel operands of a binary op -> their channel dim."""
        params = {}
        for f in self.order:
            if _is_acc(f) or not self.dep.get(f, False) or _base(f) not in _BINARY:
                continue
            out = _shape(f, 0)
            for g, nr in f.next_functions:
                if _is_acc(g) and isinstance(g.variable, nn.Parameter):
                    shape = tuple(g.variable.shape)
                    if _role(shape, out) == "channel":
                        params[g.variable] = 1 - (len(out) - len(shape))
        return params


def _role(shape, out) -> str:
    if shape is None or out is None:
        return "unknown"
    if len(out) < 2:
        return "unknown"
    axis = 1 - (len(out) - len(shape))
    if axis < 0 or (shape[axis] == 1 and out[1] != 1):
        return "broadcast"
    if shape[axis] == out[1] and len(shape) <= len(out):
        return "channel"
    return "unknown"


def _view_kind(si, so) -> str | None:
    if len(si) >= 2 and len(so) >= 2 and si[:2] == so[:2]:
        return "same"
    if len(so) == 2 and len(si) > 2 and si[0] == so[0] and math.prod(si[1:]) == so[1]:
        return "flatten"
    return None


def _view_mask(m, si, so):
    if m is None or si is None or so is None or len(si) < 2 or m.numel() != si[1]:
        return None
    kind = _view_kind(si, so)
    if kind == "same":
        return m
    if kind == "flatten":
        return m.repeat_interleave(math.prod(si[2:]))
    return None


def _spatial_reduction(f) -> bool:
    sizes = getattr(f, "_saved_self_sym_sizes", None)
    dims = getattr(f, "_saved_dim", None)
    if sizes is None or dims is None:
        return False
    n = len(sizes)
    dims = [_wrap_dim(int(d)) for d in dims]
    dims = [d + n if d < 0 else d for d in dims]
    return n >= 3 and len(dims) > 0 and all(d >= 2 for d in dims)


def _nonzero_kernels(w: torch.Tensor) -> torch.Tensor:
    """(w.shape[0], w.shape[1]) bool on the CPU: is kernel w[a, b] not all zero."""
    w = w.detach()
    a, b = w.shape[:2]
    if math.prod(w.shape[2:]) == 1:
        return w.reshape(a, b).ne(0).cpu()
    return w.reshape(a, b, -1).abs().amax(-1).ne(0).cpu()


def _conv_live(conv: _CONV, in_zero: torch.Tensor | None, nz: torch.Tensor) -> torch.Tensor:
    """(out_channels,) bool: does output channel o receive any non-zero contribution.

    ``nz`` is :func:`_nonzero_kernels` of the weight: (out, in/g) or, transposed, (in, out/g).
    """
    g = conv.groups
    if in_zero is None or in_zero.numel() != conv.in_channels:
        in_zero = torch.zeros(conv.in_channels, dtype=torch.bool)
    if conv.transposed:
        in_per, out_per = nz.shape[0] // g, nz.shape[1]
        live = (nz.view(g, in_per, out_per) & ~in_zero.view(g, in_per, 1)).any(1)
        return live.reshape(-1)
    out_per, in_per = nz.shape[0] // g, nz.shape[1]
    live = nz.view(g, out_per, in_per) & ~in_zero.view(g, 1, in_per)
    return live.any(2).reshape(-1)


def _conv_in_dead(conv: _CONV, nz: torch.Tensor) -> torch.Tensor:
    """(in_channels,) bool: all weights reading input channel i are zero (groups == 1)."""
    return ~(nz.any(1) if conv.transposed else nz.any(0))


def _norm_shift_zero(module) -> torch.Tensor:
    """Per channel: a zero input gives exactly 0 (bias == 0 and mean * gamma == 0)."""
    n = module.num_features
    bias = module.bias.detach().cpu() if getattr(module, "bias", None) is not None else torch.zeros(n)
    weight = module.weight.detach().cpu() if getattr(module, "weight", None) is not None else torch.ones(n)
    ok = bias.eq(0)
    mean = getattr(module, "running_mean", None)
    if mean is not None and getattr(module, "track_running_stats", False):
        ok &= mean.detach().cpu().eq(0) | weight.eq(0)
    return ok


# ---------------------------------------------------------------------------------------
# planning
def _node_is(node, *types) -> bool:
    return node.type in types


def plan_channel_removal(
    model: nn.Module,
    example_inputs: Any,
    *,
    mode: str = "exact",
    round_to: int | None = None,
) -> ChannelPlan:
    """Decide which channels of a (zeroed) model can be removed.

    Args:
        model: The zeroed, unpruned model. It is traced once in eval mode; its
            parameters are not changed and every module's ``training`` flag is restored.
        example_inputs: A tensor (or tuple / dict of tensors) the model accepts. Its
            values do not matter; a copy that requires grad is traced.
        mode: ``"exact"`` or ``"paper"`` (see the module docs).
        round_to: Keep channel counts of every group a multiple of ``round_to`` by
            keeping a few extra removable channels (tensor-core friendly widths).

    Returns:
        A :class:`ChannelPlan` naming layers by their ``named_modules`` names.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ValueError(f"round_to must be a positive int or None, got {round_to!r}")
    names = {m: n for n, m in model.named_modules()}
    param_names = {p: n for n, p in model.named_parameters()}
    flags = {m: m.training for m in model.modules()}
    inputs = _grad_inputs(example_inputs)
    trace = _Trace(inputs)
    with _tolerant_reshapes():
        return _plan(model, inputs, trace, flags, names, param_names, mode, round_to)


@contextlib.contextmanager
def _tolerant_reshapes():
    """Torch-Pruning 1.6.1 crashes on (or explodes the index lists of) some reshapes,
    e.g. ShuffleNet's channel shuffle.

    Reshapes other than a flatten or a channel-keeping view mix channels; groups
    through them are refused anyway (see ``_Analysis.aligned``), so their index
    mapping is skipped, and a failing one too.
    """
    original = tp_index_mapping.update_reshape_index_mapping

    def tolerant(graph, node):
        f = node.grad_fn
        if f is not None and f.next_functions:
            si, so = _shape(*f.next_functions[0]), _shape(f, 0)
            if si is None or so is None or _view_kind(si, so) is None:
                return None
        try:
            return original(graph, node)
        except (ZeroDivisionError, IndexError, TypeError, RuntimeError):
            return None

    tp_index_mapping.update_reshape_index_mapping = tolerant
    try:
        yield
    finally:
        tp_index_mapping.update_reshape_index_mapping = original


def _plan(model, inputs, trace, flags, names, param_names, mode, round_to) -> ChannelPlan:
    graph = tp.DependencyGraph()
    try:
        with torch.enable_grad():
            graph.build_dependency(model, example_inputs=inputs, forward_fn=trace.forward, verbose=False)
    finally:
        for m, flag in flags.items():
            m.training = flag
    if not trace.outputs:
        raise RuntimeError(
            "the model's output does not depend on its input through autograd; cannot trace it for pruning"
        )
    analysis = _Analysis(trace, mode)
    allowed_params = analysis.channel_params()

    cuts: dict[tuple[str, str, int], set[int]] = {}
    refused: dict[str, int] = {}
    visited: set = set()
    n_groups = n_pruned = 0
    for module in list(graph.module2node):
        if not isinstance(module, (_CONV, nn.Linear)) or module in visited:
            continue
        pruner = graph.get_pruner_of_module(module)
        n = pruner.get_out_channels(module)
        n_groups += 1
        try:
            group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(n)))
        except Exception:  # noqa: BLE001 - Torch-Pruning cannot follow this structure: leave it whole
            refused["no dependency group"] = refused.get("no dependency group", 0) + 1
            visited.add(module)
            continue
        keep = torch.zeros(n, dtype=torch.bool)  # True = must stay
        items = []
        for item in group:
            dep, idxs, roots = item.dep, list(item.idxs), list(item.root_idxs)
            node, handler = dep.target, dep.handler
            if graph.is_out_channel_pruning_fn(handler) and isinstance(node.module, nn.Module):
                visited.add(node.module)
            ok, why = _item_ok(graph, analysis, trace, node, handler, idxs, allowed_params)
            if why:
                refused[why] = refused.get(why, 0) + 1
            roots_t = torch.tensor(roots, dtype=torch.long)
            if isinstance(ok, bool):
                if not ok:
                    keep[roots_t] = True
            else:
                keep[roots_t[~ok]] = True
            items.append((node, handler, idxs, roots))
        _keep_one_channel(graph, items, keep)
        if round_to is not None:
            _round(keep, round_to)
        remove = set(torch.nonzero(~keep).flatten().tolist())
        if not remove:
            continue
        n_pruned += 1
        for node, handler, idxs, roots in items:
            sel = [i for i, r in zip(idxs, roots) if r in remove]
            if not sel:
                continue
            key = _removal_key(graph, node, handler, names, param_names, allowed_params)
            if key is not None:
                cuts.setdefault(key, set()).update(sel)
    removals = tuple(
        Removal(name=name, kind=kind, indices=tuple(sorted(idx)), dim=dim)
        for (name, kind, dim), idx in sorted(cuts.items(), key=lambda kv: kv[0])
    )
    ghosts = tuple(sorted((names[m], c) for (m, c) in analysis.ghosts))
    return ChannelPlan(removals, ghosts, n_groups, n_pruned, refused)


def _grad_inputs(example_inputs):
    """A copy of the example inputs whose floating tensors require grad (see DESIGN: frozen models)."""
    if isinstance(example_inputs, torch.Tensor):
        t = example_inputs.detach().clone()
        return t.requires_grad_(True) if t.is_floating_point() else t
    if isinstance(example_inputs, dict):
        return {k: _grad_inputs(v) for k, v in example_inputs.items()}
    if isinstance(example_inputs, (tuple, list)):
        return type(example_inputs)(_grad_inputs(v) for v in example_inputs)
    return example_inputs


_PASS_TYPES = (tp_ops.OPTYPE.BN, tp_ops.OPTYPE.PRELU, tp_ops.OPTYPE.IN, tp_ops.OPTYPE.DEPTHWISE_CONV)


def _item_ok(graph, analysis, trace, node, handler, idxs, allowed_params):
    """(True | False | bool tensor over idxs, reason when refused)."""
    t = node.type
    module = node.module
    if t == tp_ops.OPTYPE.OUTPUT:
        return False, "model output"
    if node.grad_fn is not None and node.grad_fn in trace.output_fns:
        # a layer producing a model output keeps its output channels (its inputs may go)
        if not isinstance(module, nn.Module) or graph.is_out_channel_pruning_fn(handler):
            return False, "model output"
    if t in (tp_ops.OPTYPE.ELEMENTWISE, tp_ops.OPTYPE.CONCAT, tp_ops.OPTYPE.RESHAPE):
        f = node.grad_fn
        if f is None or analysis.aligned(f, allowed_params):
            return True, None
        return False, f"op {_base(f)}"
    if t == tp_ops.OPTYPE.PARAMETER:
        return True, None  # cut only if it is a per-channel operand (see _removal_key)
    if t not in (tp_ops.OPTYPE.CONV, tp_ops.OPTYPE.LINEAR) + _PASS_TYPES:
        return False, f"layer {type(module).__name__}"
    if trace.calls.get(module, 0) != 1:
        return False, "module called more than once"
    in_side = graph.is_in_channel_pruning_fn(handler)
    if in_side and trace.module_in.get(module) in (_LEAF, None):
        return False, "model input"
    if t == tp_ops.OPTYPE.CONV and module.groups > 1:
        return False, "grouped conv"
    if t in _PASS_TYPES or not in_side:
        return True, None
    # a consumer: all-zero weights for the channel, or an identically zero input
    return analysis.input_removable(module)[torch.tensor(idxs, dtype=torch.long)], None


def _keep_one_channel(graph, items, keep: torch.Tensor) -> None:
    """Un-remove channels until every layer in the group keeps at least one."""
    changed = True
    while changed:
        changed = False
        for node, handler, idxs, roots in items:
            module = node.module
            if not isinstance(module, nn.Module) or node.type in (
                tp_ops.OPTYPE.ELEMENTWISE, tp_ops.OPTYPE.CONCAT, tp_ops.OPTYPE.RESHAPE, tp_ops.OPTYPE.OUTPUT,
                tp_ops.OPTYPE.SPLIT, tp_ops.OPTYPE.SLICE, tp_ops.OPTYPE.UNBIND, tp_ops.OPTYPE.EXPAND,
            ):
                continue
            pruner = graph.get_pruner_of_module(module)
            if pruner is None:
                continue
            if graph.is_out_channel_pruning_fn(handler):
                total = pruner.get_out_channels(module)
            else:
                total = pruner.get_in_channels(module)
            if total is None:
                continue
            removed = [r for r in roots if not keep[r]]
            if removed and len(removed) >= total:
                keep[min(removed)] = True
                changed = True


def _round(keep: torch.Tensor, multiple: int) -> None:
    kept = int(keep.sum())
    extra = (-kept) % multiple
    removable = torch.nonzero(~keep).flatten()
    if extra >= removable.numel():
        keep[:] = True
    elif extra:
        keep[removable[:extra]] = True


def _removal_key(graph, node, handler, names, param_names, allowed_params):
    t = node.type
    module = node.module
    if t == tp_ops.OPTYPE.PARAMETER:
        if module in allowed_params and module in param_names:
            return (param_names[module], "param", allowed_params[module])
        return None  # a broadcast scalar reached through weight-side ops: nothing to cut
    if not isinstance(module, nn.Module) or module not in names:
        return None
    if t in _PASS_TYPES:
        return (names[module], "channels", 0)
    if t in (tp_ops.OPTYPE.CONV, tp_ops.OPTYPE.LINEAR):
        kind = "out" if graph.is_out_channel_pruning_fn(handler) else "in"
        return (names[module], kind, 0)
    return None


# ---------------------------------------------------------------------------------------
# applying
@torch.no_grad()
def drop_ghost_biases(model: nn.Module, plan: ChannelPlan) -> int:
    """Set the ghost biases listed in ``plan`` to zero (paper mode). Returns how many."""
    for name, c in plan.ghosts:
        module = model.get_submodule(name)
        if isinstance(module, (_BN, _IN)):
            if module.bias is not None:
                module.bias[c] = 0
            if getattr(module, "running_mean", None) is not None:
                module.running_mean[c] = 0
        elif getattr(module, "bias", None) is not None:
            module.bias[c] = 0
    return len(plan.ghosts)


def _pruner_for(module: nn.Module):
    return tp_fn.PrunerBox[tp_ops.module2type(module)]


@torch.no_grad()
def apply_plan(model: nn.Module, plan: ChannelPlan) -> None:
    """Cut the planned channels from ``model`` in place (ghost biases first, if any).

    Each layer is cut once per dimension with indices of the unpruned model. Every
    parameter keeps its ``requires_grad`` flag (fixed spatial layers stay fixed).
    """
    drop_ghost_biases(model, plan)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for r in plan.removals:
        idxs = list(r.indices)
        if r.kind == "param":
            parent_name, _, attr = r.name.rpartition(".")
            parent = model.get_submodule(parent_name)
            old = getattr(parent, attr)
            keep = [i for i in range(old.shape[r.dim]) if i not in set(idxs)]
            new = nn.Parameter(old.detach().index_select(r.dim, torch.tensor(keep, device=old.device)))
            setattr(parent, attr, new)
            continue
        module = model.get_submodule(r.name)
        pruner = _pruner_for(module)
        if r.kind == "in":
            pruner.prune_in_channels(module, idxs)
        else:
            pruner.prune_out_channels(module, idxs)
    for n, p in model.named_parameters():
        if n in flags:
            p.requires_grad_(flags[n])


def count_macs_and_params(model: nn.Module, example_inputs: Any) -> tuple[int, int]:
    """(MACs of one forward pass, parameters) with Torch-Pruning's counter (model untouched)."""
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs), int(params)
