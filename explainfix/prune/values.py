"""Which channels of a zeroed model are input-independent constants, and their values (torch only).

Per-channel values are propagated through the autograd graph of one forward pass
(abstract interpretation, float64, no data involved): a channel is either a known
constant map ``c`` (the same value at every position and for every input) or unknown
(NaN). Zero is the constant that matters most: it passes every zero-preserving op.

Rules (eval mode):

* conv: output ``o`` is ``bias[o] + sum_i c_i * sum(w[o, i])`` when every input with a
  non-zero kernel is a constant - exact only if the conv cannot see a border (no zero
  padding, not transposed), unless all those constants are 0;
* linear: ``bias + W @ c``; BatchNorm (also fused, e.g. timm's ``BatchNormAct2d``, read
  from the batch-norm autograd node): ``(c - mean) / sqrt(var + eps) * gamma + beta``;
  InstanceNorm and batch statistics map a constant to ``beta``; PReLU;
* element-wise functions are evaluated on ``c`` (ReLU, ReLU6 / hardtanh, leaky ReLU,
  ELU / SELU / CELU, GELU, SiLU, hardswish, Mish, tanh, sigmoid, hardsigmoid,
  softplus, exp, pow, clamp, abs, neg, ...);
* max / adaptive pooling, reflection / replication padding and upsampling keep ``c``;
  zero padding and average pooling that counts padding keep only ``c == 0``;
* ``add`` / ``sub`` / ``mul`` / ``div`` combine constants (per-channel parameters and
  saved scalars included); ``mul`` gives 0 where one factor is 0, ``div`` where the
  numerator is; ``cat`` concatenates; flatten / channel-keeping views and spatial
  reductions keep channels.

Anything else is unknown (conservative). In ``mode="paper"`` a channel whose input is
identically 0 stays 0 after a BatchNorm shift or conv bias (the paper's "ghost bias",
recorded in :attr:`ValueAnalysis.ghosts`, to be set to 0); layers producing a model
output keep their biases in either mode.

A consumer can absorb a removed constant input channel exactly (see
:meth:`ValueAnalysis.removable_inputs` and :meth:`ValueAnalysis.fold`): a linear layer
always (``bias += W[:, i] * c``), a conv when it sees no border (``bias += c *
sum(w[:, i])``, exact at every output position because every window lies inside the
input); a conv with zero padding only when ``c == 0``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .trace import BN, CONV, IN, LEAF, Trace, base, is_acc, shape, topo, wrap_dim

__all__ = ["ValueAnalysis", "MODES"]

MODES = ("paper", "exact")

NAN = float("nan")
_KEEP = {"Clone", "ToCopy", "Alias", "NativeDropout", "Contiguous", "Identity"}
_UNARY = {
    "Relu": lambda f, v: v.clamp_min(0),
    "LeakyRelu": lambda f, v: F.leaky_relu(v, float(f._saved_negative_slope)),
    "Elu": lambda f, v: float(f._saved_scale) * torch.where(
        v > 0, v, float(f._saved_alpha) * torch.expm1(v * float(f._saved_input_scale))),
    "Celu": lambda f, v: F.celu(v, float(f._saved_alpha)),
    "Gelu": lambda f, v: F.gelu(v, approximate=str(f._saved_approximate)),
    "Silu": lambda f, v: F.silu(v),
    "Hardswish": lambda f, v: F.hardswish(v),
    "Mish": lambda f, v: F.mish(v),
    "Tanh": lambda f, v: torch.tanh(v),
    "Sigmoid": lambda f, v: torch.sigmoid(v),
    "Hardsigmoid": lambda f, v: F.hardsigmoid(v),
    "LogSigmoid": lambda f, v: F.logsigmoid(v),
    "Softplus": lambda f, v: F.softplus(v, float(f._saved_beta), float(f._saved_threshold)),
    "Hardtanh": lambda f, v: v.clamp(float(f._saved_min_val), float(f._saved_max_val)),
    "Clamp": lambda f, v: v.clamp(_num(f._saved_min), _num(f._saved_max)),
    "ClampMin": lambda f, v: v.clamp_min(_num(f._saved_min)),
    "ClampMax": lambda f, v: v.clamp_max(_num(f._saved_max)),
    "Pow": lambda f, v: v ** _num(f._saved_exponent),
    "Neg": lambda f, v: -v,
    "Abs": lambda f, v: v.abs(),
    "Exp": lambda f, v: v.exp(),
    "Sqrt": lambda f, v: v.sqrt(),
    "Rsqrt": lambda f, v: v.rsqrt(),
    "Reciprocal": lambda f, v: v.reciprocal(),
    "Sgn": lambda f, v: v.sign(),
    "Sign": lambda f, v: v.sign(),
}
_SPATIAL_KEEP = ("MaxPool", "AdaptiveAvgPool", "AdaptiveMaxPool", "ReflectionPad", "ReplicationPad", "Upsample")
_BINARY = {"Add", "Sub", "Mul", "Div"}
_REDUCE = {"Mean", "Sum", "Amax", "Amin"}
_VIEW = {"View", "UnsafeView", "Reshape", "ReshapeAlias", "Squeeze", "Unsqueeze"}


def _num(x):
    if x is None:
        return None
    return float(x.item()) if isinstance(x, torch.Tensor) else float(x)


def _nan(n: int) -> torch.Tensor:
    return torch.full((n,), NAN, dtype=torch.float64)


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


class ValueAnalysis:
    """Per-channel constant values (NaN = unknown) of every autograd node output of one trace."""

    def __init__(self, trace: Trace, mode: str, modules: list[nn.Module]):
        self.trace = trace
        self.mode = mode
        self.values: dict[Any, torch.Tensor | None] = {}
        self.dep: dict[Any, bool] = {}  # does this node depend on the model input
        self.ghosts: dict[tuple[nn.Module, int], None] = {}
        self._bn_by_ptr = {}
        for m in modules:
            if isinstance(m, BN):
                for t in (m.running_mean, m.weight):
                    if isinstance(t, torch.Tensor):
                        self._bn_by_ptr[t.data_ptr()] = m
        self._cache: dict[nn.Module, tuple] = {}
        input_ids = {id(t) for t in trace.inputs}
        self.order = topo(t.grad_fn for t in trace.outputs)
        for f in self.order:
            if is_acc(f):
                self.dep[f] = id(f.variable) in input_ids
                continue
            self.dep[f] = any(self.dep.get(g, False) for g, _ in f.next_functions if g is not None)
            v = self._rule(f) if self.dep[f] else None
            self.values[(f, 0)] = v if v is None or not torch.isnan(v).all() else None

    # -- helpers
    def value(self, key) -> torch.Tensor | None:
        """Per-channel values of a traced tensor (``(grad_fn, output_nr)``), None if unknown."""
        if key is None or key == LEAF:
            return None
        return self.values.get(key)

    def zero(self, key) -> torch.Tensor | None:
        """Per-channel "identically zero" mask of a traced tensor, None if unknown."""
        v = self.value(key)
        return None if v is None else v.eq(0)

    def out_channels(self, f) -> int | None:
        s = shape(f, 0)
        return s[1] if s is not None and len(s) >= 2 else None

    def _input(self, f, c: int | None = None):
        g, nr = f.next_functions[0]
        if g is None or is_acc(g):
            return None
        v = self.value((g, nr))
        return v if v is None or c is None or v.numel() == c else None

    def _operand(self, f, k, g, nr, out, c) -> torch.Tensor | None:
        if g is None:
            saved = getattr(f, "_saved_self" if k == 0 else "_saved_other", None) if base(f) in ("Mul", "Div") else None
            return _tensor_values(saved, out, c) if isinstance(saved, torch.Tensor) else None
        if is_acc(g):
            return _tensor_values(g.variable, out, c)
        if not self.dep.get(g, False):
            return None
        v = self.value((g, nr))
        role = role_of(shape(g, nr), out)
        if v is None:
            return None
        if role == "channel" and v.numel() == c:
            return v
        if role == "broadcast" and v.numel() == 1:
            return v.expand(c)
        return None

    # -- rules
    def _rule(self, f) -> torch.Tensor | None:
        mod = self.trace.module_of.get(f)
        b = base(f)
        if mod is not None and not isinstance(mod[0], BN):
            done, v = self._module_rule(f, b, mod[0], mod[1])
            if done:
                return v
        c = self.out_channels(f)
        if c is None:
            return None
        if b in _KEEP:
            return self._input(f, c)
        if b in _UNARY:
            v = self._input(f, c)
            if v is None:
                return None
            try:
                return _UNARY[b](f, v)
            except (AttributeError, RuntimeError, TypeError, ValueError):
                return torch.where(v == 0, v, NAN) if b in ("Relu", "Neg", "Abs", "Silu", "Tanh") else None
        if b.startswith(_SPATIAL_KEEP):
            return self._input(f, c)
        if b.startswith("AvgPool"):
            v = self._input(f, c)
            if v is None:
                return None
            pad = getattr(f, "_saved_padding", (1,))
            if any(int(p) for p in pad) and bool(getattr(f, "_saved_count_include_pad", True)):
                return torch.where(v == 0, v, NAN)
            return v
        if b == "ConstantPadNd":  # assumed to pad with 0 (checked by the caller's verification)
            v = self._input(f, c)
            return None if v is None else torch.where(v == 0, v, NAN)
        if "BatchNorm" in b:
            return self._batchnorm(f, c)
        if b in _BINARY:
            return self._binary(f, b, c)
        if b == "Cat":
            return self._cat(f, c)
        if b in _VIEW:
            g, nr = f.next_functions[0]
            return view_values(self.value((g, nr)) if g is not None else None, shape(g, nr), shape(f, 0))
        if b in _REDUCE:
            n = spatial_reduction(f)
            if n is None:
                return None
            v = self._input(f, c)
            return None if v is None else (v * n if b == "Sum" else v)
        return None

    def _binary(self, f, b, c) -> torch.Tensor | None:
        out = shape(f, 0)
        if len(f.next_functions) != 2:
            return None
        ops = []
        for k, (g, nr) in enumerate(f.next_functions):
            v = self._operand(f, k, g, nr, out, c)
            ops.append(_nan(c) if v is None else v)
        x, y = ops
        if b in ("Add", "Sub"):
            alpha = _num(getattr(f, "_saved_alpha", 1.0))
            return x + alpha * y if b == "Add" else x - alpha * y
        if b == "Mul":
            return torch.where((x == 0) | (y == 0), torch.zeros(()), x * y)
        return torch.where(x == 0, torch.zeros(()), x / y)

    def _cat(self, f, c) -> torch.Tensor | None:
        s = shape(f, 0)
        dim = wrap_dim(int(getattr(f, "_saved_dim", 1)))
        dim = dim + len(s) if dim < 0 else dim
        parts = []
        for g, nr in f.next_functions:
            si = shape(g, nr)
            if si is None or len(si) < 2:
                return None
            v = self.value((g, nr)) if g is not None and not is_acc(g) else None
            parts.append(v if v is not None and v.numel() == si[1] else _nan(si[1]))
        if dim == 1:
            out = torch.cat(parts)
            return out if out.numel() == c else None
        if all(p.numel() == c for p in parts):
            out = parts[0].clone()
            for p in parts[1:]:
                out = torch.where(out == p, out, NAN)
            return out
        return None

    def _batchnorm(self, f, c) -> torch.Tensor | None:
        v = self._input(f, c)
        if v is None:
            return None
        w = f.next_functions[1][0] if len(f.next_functions) > 1 else None
        bb = f.next_functions[2][0] if len(f.next_functions) > 2 else None
        w = _f64(w.variable) if is_acc(w) else torch.ones(c, dtype=torch.float64)
        bb = _f64(bb.variable) if is_acc(bb) else torch.zeros(c, dtype=torch.float64)
        if w.numel() != c or bb.numel() != c:
            return None
        mean, var = getattr(f, "_saved_running_mean", None), getattr(f, "_saved_running_var", None)
        if bool(getattr(f, "_saved_training", False)) or mean is None or var is None:
            out = torch.where(torch.isnan(v), NAN, bb)  # batch statistics: a constant channel normalises to 0
        else:
            eps = float(getattr(f, "_saved_eps", 1e-5))
            out = (v - _f64(mean)) / torch.sqrt(_f64(var) + eps) * w + bb
        if self.mode == "paper" and f not in self.trace.output_fns:
            ghost = (v == 0) & (out != 0)
            if ghost.any():
                module = self._bn_by_ptr.get(mean.data_ptr() if mean is not None else None)
                if module is None:  # cannot name the layer whose shift to drop: stay exact
                    return out
                for ch in torch.nonzero(ghost).flatten().tolist():
                    self.ghosts[(module, ch)] = None
                out = torch.where(ghost, torch.zeros(()), out)
        return out

    def _module_rule(self, f, b, module, in_key) -> tuple[bool, torch.Tensor | None]:
        """(handled, values) for the output node of a tracked module."""
        if isinstance(module, CONV):
            if b != "Convolution" or not self.conv_weight_is_direct(f, module):
                return True, None
            return True, self._conv(f, module)
        if isinstance(module, nn.Linear):
            s = shape(*in_key) if isinstance(in_key, tuple) else None
            v = self.value(in_key)
            if s is None or len(s) != 2 or v is None or v.numel() != module.in_features:
                return True, None
            w = _f64(module.weight)
            out = _combine(w.ne(0), v.view(1, -1), w)
            if module.bias is not None:
                out = out + _f64(module.bias)
            return True, out
        if isinstance(module, IN):
            v = self.value(in_key)
            if v is None or v.numel() != module.num_features:
                return True, None
            n = module.num_features
            w = _f64(module.weight) if module.weight is not None else torch.ones(n, dtype=torch.float64)
            bb = _f64(module.bias) if module.bias is not None else torch.zeros(n, dtype=torch.float64)
            if module.track_running_stats and module.running_mean is not None and not module.training:
                out = (v - _f64(module.running_mean)) / torch.sqrt(_f64(module.running_var) + module.eps) * w + bb
            else:
                out = torch.where(torch.isnan(v), NAN, bb)
            if self.mode == "paper" and f not in self.trace.output_fns:
                ghost = (v == 0) & (out != 0)
                for ch in torch.nonzero(ghost).flatten().tolist():
                    self.ghosts[(module, ch)] = None
                out = torch.where(ghost, torch.zeros(()), out)
            return True, out
        if isinstance(module, nn.PReLU):
            v = self.value(in_key)
            if v is None:
                return True, None
            w = _f64(module.weight)
            if w.numel() not in (1, v.numel()):
                return True, None
            return True, torch.where(v >= 0, v, w * v)
        return False, None

    @staticmethod
    def conv_weight_is_direct(f, conv) -> bool:
        g = f.next_functions[1][0] if len(f.next_functions) > 1 else None
        if is_acc(g):
            return g.variable is conv.weight
        if g is not None:
            return False  # computed in forward (weight standardisation, ...)
        try:  # a frozen weight leaves no autograd node: compare the saved tensor
            w = f._saved_weight
        except (AttributeError, RuntimeError):
            return False
        return w.shape == conv.weight.shape and w.data_ptr() == conv.weight.data_ptr()

    def _conv(self, f, conv) -> torch.Tensor:
        _, live, wsum, vin, preserving = self.conv_info(conv, f)
        n_out = conv.out_channels
        groups = conv.groups
        if conv.transposed:  # weight (in, out/g): contributions summed over the "in" axis
            in_per, out_per = live.shape[0] // groups, live.shape[1]
            lv = live.view(groups, in_per, out_per).transpose(1, 2)
            ws = wsum.view(groups, in_per, out_per).transpose(1, 2)
        else:
            out_per, in_per = live.shape[0] // groups, live.shape[1]
            lv, ws = live.view(groups, out_per, in_per), wsum.view(groups, out_per, in_per)
        vg = vin.view(groups, 1, in_per)
        unknown = (lv & torch.isnan(vg)).any(-1).reshape(-1)
        nonzero = (lv & (vg != 0) & ~torch.isnan(vg)).any(-1).reshape(-1)
        s = torch.where(lv & ~torch.isnan(vg), vg * ws, torch.zeros(())).sum(-1).reshape(-1)
        out = torch.where(unknown | (nonzero & (not preserving)), NAN, s)
        if conv.bias is None:
            return out
        bias = _f64(conv.bias)
        if self.mode == "paper" and f not in self.trace.output_fns:
            ghost = ~unknown & ~nonzero & bias.ne(0)
            for ch in torch.nonzero(ghost).flatten().tolist():
                self.ghosts[(conv, ch)] = None
            return torch.where(ghost, out, out + bias)
        assert out.numel() == n_out
        return out + bias

    def conv_info(self, conv, f=None):
        """(node, live kernels, kernel sums, input values, sees no border) of a conv, cached."""
        hit = self._cache.get(conv)
        if hit is not None:
            return hit
        f = f if f is not None else self.trace.module_out.get(conv)
        w = _f64(conv.weight)
        live = w.flatten(2).ne(0).any(-1)
        wsum = w.flatten(2).sum(-1)
        vin = None
        preserving = False
        if f is not None and base(f) == "Convolution":
            g, nr = f.next_functions[0]
            vin = self.value((g, nr)) if g is not None and not is_acc(g) else None
            pad = [int(p) for p in getattr(f, "_saved_padding", (1,))]
            if bool(getattr(f, "_saved_transposed", conv.transposed)):
                stride = [int(s) for s in getattr(f, "_saved_stride", (2,))]
                opad = [int(p) for p in getattr(f, "_saved_output_padding", (1,))]
                preserving = all(k == 1 for k in conv.kernel_size) and not any(pad + opad) and all(
                    s == 1 for s in stride)
            else:
                preserving = not any(pad)
        in_c = conv.in_channels
        if vin is None or vin.numel() != in_c:
            vin = _nan(in_c)
        hit = self._cache[conv] = (f, live, wsum, vin, preserving)
        return hit

    # -- consumers
    def removable_inputs(self, module: nn.Module) -> torch.Tensor:
        """(in channels,) bool: the consumer's weights for it are all 0, or it can absorb its constant exactly."""
        if isinstance(module, CONV):
            _, live, _, vin, preserving = self.conv_info(module)
            dead = ~(live.any(1) if module.transposed else live.any(0))
            if module.groups != 1:
                return torch.zeros(module.in_channels, dtype=torch.bool)
            ok = ~torch.isnan(vin) & ((vin == 0) | preserving)
            return dead | ok
        w = _f64(module.weight)
        dead = ~w.ne(0).any(0)
        key = self.trace.module_in.get(module)
        s = shape(*key) if isinstance(key, tuple) else None
        v = self.value(key)
        if s is None or len(s) != 2 or v is None or v.numel() != dead.numel():
            return dead
        return dead | ~torch.isnan(v)

    def fold(self, module: nn.Module, idxs: list[int]) -> torch.Tensor | None:
        """Bias change (out channels,) that makes removing input channels ``idxs`` exact; None if 0."""
        idx = torch.tensor(idxs, dtype=torch.long)
        if isinstance(module, CONV):
            _, live, wsum, vin, _ = self.conv_info(module)
            v = vin[idx]
            ws = wsum[idx].t() if module.transposed else wsum[:, idx]
        else:
            key = self.trace.module_in.get(module)
            v = self.value(key)
            if v is None or v.numel() != module.in_features:
                return None
            v = v[idx]
            ws = _f64(module.weight)[:, idx]
        v = torch.where(torch.isnan(v), torch.zeros(()), v)  # unknown only where the weights are all 0
        if not v.ne(0).any():
            return None
        delta = ws @ v
        return delta if delta.ne(0).any() else None

    # -- admissibility of a node inside a dependency group
    def aligned(self, f, allowed_params: dict) -> bool:
        """True if this op keeps channels apart and all its channel operands get cut too."""
        if not self.dep.get(f, False):
            return True  # weight-side computation (e.g. ``weight.t()``, scalars of learned fusions)
        b = base(f)
        c = self.out_channels(f)
        if c is None:
            return False
        if b in _KEEP or b in _UNARY or b.startswith(_SPATIAL_KEEP) or b.startswith("AvgPool") or b in (
            "ConstantPadNd",
        ) or "BatchNorm" in b:
            s = shape(*f.next_functions[0])
            return s is not None and len(s) >= 2 and s[1] == c and not is_acc(f.next_functions[0][0])
        if b in _BINARY or b == "Cat":
            if b == "Cat":
                d = wrap_dim(int(getattr(f, "_saved_dim", 1)))
                if d not in (1, 1 - len(shape(f, 0))):
                    return False
                return all(g is not None and not is_acc(g) and self.dep.get(g, False) for g, _ in f.next_functions)
            for g, nr in f.next_functions:
                role = role_of(shape(g, nr), shape(f, 0))
                if g is None or role == "broadcast":
                    continue
                if role != "channel":
                    return False
                if self.dep.get(g, False) and not is_acc(g):
                    continue
                if is_acc(g) and g.variable in allowed_params:
                    continue
                return False
            return True
        if b in _VIEW:
            g, nr = f.next_functions[0]
            si, so = shape(g, nr), shape(f, 0)
            return si is not None and so is not None and view_kind(si, so) is not None
        if b in _REDUCE:
            return spatial_reduction(f) is not None
        return False

    def channel_params(self) -> dict:
        """Parameters used directly as per-channel operands of a binary op -> their channel dim."""
        params = {}
        for f in self.order:
            if is_acc(f) or not self.dep.get(f, False) or base(f) not in _BINARY:
                continue
            out = shape(f, 0)
            for g, nr in f.next_functions:
                if is_acc(g) and isinstance(g.variable, nn.Parameter):
                    s = tuple(g.variable.shape)
                    if role_of(s, out) == "channel":
                        params[g.variable] = 1 - (len(out) - len(s))
        return params


def _combine(live: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_i v_i * w[o, i] over live weights; NaN where a live weight meets an unknown value."""
    unknown = (live & torch.isnan(v)).any(-1)
    s = torch.where(live & ~torch.isnan(v), v * w, torch.zeros(())).sum(-1)
    return torch.where(unknown, NAN, s)


def _tensor_values(t: torch.Tensor, out, c) -> torch.Tensor | None:
    """Per-channel values of a tensor broadcast against ``out`` (NaN where not constant in a channel)."""
    if out is None or len(out) < 2 or t.dim() > len(out) or t.numel() > 1 << 20:
        return None
    tt = _f64(t).reshape((1,) * (len(out) - t.dim()) + tuple(t.shape))
    if tt.shape[1] not in (1, c):
        return None
    rows = tt.movedim(1, 0).reshape(tt.shape[1], -1)
    v = torch.where((rows == rows[:, :1]).all(1), rows[:, 0], NAN)
    return v.expand(c) if v.numel() == 1 else v


def role_of(s, out) -> str:
    if s is None or out is None or len(out) < 2:
        return "unknown"
    axis = 1 - (len(out) - len(s))
    if axis < 0 or (s[axis] == 1 and out[1] != 1):
        return "broadcast"
    if s[axis] == out[1] and len(s) <= len(out):
        return "channel"
    return "unknown"


def view_kind(si, so) -> str | None:
    if len(si) >= 2 and len(so) >= 2 and si[:2] == so[:2]:
        return "same"
    if len(so) == 2 and len(si) > 2 and si[0] == so[0] and math.prod(si[1:]) == so[1]:
        return "flatten"
    return None


def view_values(v, si, so):
    if v is None or si is None or so is None or len(si) < 2 or v.numel() != si[1]:
        return None
    kind = view_kind(si, so)
    if kind == "same":
        return v
    if kind == "flatten":
        return v.repeat_interleave(math.prod(si[2:]))
    return None


def spatial_reduction(f) -> int | None:
    """Number of reduced elements per channel of a reduction over spatial dims only, else None."""
    sizes = getattr(f, "_saved_self_sym_sizes", None)
    if sizes is None:
        saved = getattr(f, "_saved_self", None)
        sizes = tuple(saved.shape) if isinstance(saved, torch.Tensor) else None
    dims = getattr(f, "_saved_dim", None)
    if sizes is None or dims is None:
        return None
    n = len(sizes)
    dims = [wrap_dim(int(d)) for d in dims]
    dims = [d + n if d < 0 else d for d in dims]
    if n >= 3 and len(dims) > 0 and all(d >= 2 for d in dims):
        return math.prod(int(sizes[d]) for d in dims)
    return None
