"""Which channels ChannelPrune removes, and removing them (steps 3 and 4) - the Torch-Pruning side.

This is the only module that uses Torch-Pruning (``torch_pruning==1.6.1``). Its
``DependencyGraph`` says which layers are *coupled* (pruning channel ``c`` of one
tensor forces the same cut in every layer that produces or reads it); whether a channel
may go is decided here, on the zeroed, unpruned model, with the constant analysis of
:mod:`explainfix.prune.values`:

    A channel of a dependency group is removable only if every layer that reads it
    (every conv / linear consumer in the group) has all-zero weights for it, or
    receives an input-independent constant it can absorb exactly into its bias.

The absorbed constants are the plan's :attr:`ChannelPlan.folds`; :func:`apply_plan`
adds them to the consumers' biases (creating a bias where there is none) before it cuts.

Left whole (and named in :attr:`ChannelPlan.refused`): the model's input and output
channels, grouped convolutions that are not depthwise, LayerNorm / GroupNorm,
split / slice / unbind / expand, channel-mixing ops, modules called more than once,
and anything the analysis does not know; where Torch-Pruning cannot build a group (or
the graph), that structure (or the model) is left whole. Every layer keeps at least
one channel. Groups are planned once on the unpruned model and applied once, with
indices of the original model, so nothing goes stale; index mappings are computed
once for all groups (linear in the number of layers).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops as tp_ops
from torch_pruning.dependency import index_mapping as tp_index_mapping
from torch_pruning.pruner import function as tp_fn

from .trace import BN, CONV, IN, LEAF, Trace, base, grad_inputs, shape
from .values import MODES, ValueAnalysis, view_kind

__all__ = ["ChannelPlan", "Removal", "plan_channel_removal", "apply_plan", "drop_ghost_biases",
           "count_macs_and_params", "MODES"]


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
    """What :func:`apply_plan` will do; computed on the zeroed, unpruned model.

    ``folds``: ``(layer name, bias change)`` - constants of removed input channels that
    the layer absorbs. ``ghosts``: ``(layer name, channel)`` biases to set to 0 first
    (``mode="paper"``; see :func:`drop_ghost_biases`).
    """

    removals: tuple[Removal, ...]
    ghosts: tuple[tuple[str, int], ...] = ()
    groups: int = 0
    groups_pruned: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    folds: tuple[tuple[str, torch.Tensor], ...] = ()

    @property
    def channels_removed(self) -> int:
        """Output channels removed from conv / linear layers."""
        return sum(len(r.indices) for r in self.removals if r.kind in ("out", "channels"))


def plan_channel_removal(model: nn.Module, example_inputs: Any, *, mode: str = "paper",
                         round_to: int | None = None) -> ChannelPlan:
    """Decide which channels of a (zeroed) model can be removed.

    Args:
        model: The zeroed, unpruned model, traced once in eval mode; its parameters
            are not changed and every module's ``training`` flag is restored.
        example_inputs: A tensor (or tuple / dict of tensors) the model accepts; a copy
            that requires grad is traced.
        mode: ``"paper"`` or ``"exact"`` (see :mod:`explainfix.prune.values`); validated
            by :func:`explainfix.channelprune`.
        round_to: Keep channel counts of every group a multiple of ``round_to``.
    """
    names = {m: n for n, m in model.named_modules()}
    param_names = {p: n for n, p in model.named_parameters()}
    flags = {m: m.training for m in model.modules()}
    inputs = grad_inputs(example_inputs)
    trace = Trace(inputs)
    graph = tp.DependencyGraph()
    try:
        model.eval()
        with _tolerant_reshapes(), torch.enable_grad():
            try:
                graph.build_dependency(model, example_inputs=inputs, forward_fn=trace.forward, verbose=False)
            except Exception as err:  # noqa: BLE001 - Torch-Pruning cannot follow this model: keep it whole
                return ChannelPlan((), refused={f"no dependency graph ({type(err).__name__})": 1})
            if not trace.outputs:
                raise RuntimeError(
                    "the model's output does not depend on its input through autograd; cannot trace it for pruning")
            _check_functional_weights(model, trace, names)
            analysis = ValueAnalysis(trace, mode, list(model.modules()))
            return _plan(graph, analysis, trace, names, param_names, round_to)
    finally:
        for m, flag in flags.items():
            m.training = flag


def _check_functional_weights(model, trace, names) -> None:
    """Refuse spatial convs whose weight is used outside their own forward (``F.conv2d(x, conv.weight)``)."""
    from ..spatial import spatial_convs

    used = set()
    for t in trace.outputs:
        stack, seen = [t.grad_fn], set()
        while stack:
            f = stack.pop()
            if f is None or f in seen:
                continue
            seen.add(f)
            if hasattr(f, "variable"):
                used.add(id(f.variable))
            stack.extend(g for g, _ in f.next_functions)
    for name, conv in spatial_convs(model):
        if trace.calls.get(conv, 0) == 0 and id(conv.weight) in used:
            raise ValueError(
                f"spatial conv {name!r} is never called as a module but its weight is used in forward (e.g. "
                f"F.conv2d(x, self.{name}.weight)); ChannelPrune cannot prune such a model - call the module instead")


@contextlib.contextmanager
def _tolerant_reshapes():
    """Torch-Pruning 1.6.1 crashes on (or explodes the index lists of) some reshapes,
    e.g. ShuffleNet's channel shuffle; groups through them are refused anyway, so their
    index mapping is skipped, and a failing one too."""
    original = tp_index_mapping.update_reshape_index_mapping

    def tolerant(graph, node):
        f = node.grad_fn
        if f is not None and f.next_functions:
            si, so = shape(*f.next_functions[0]), shape(f, 0)
            if si is None or so is None or view_kind(si, so) is None:
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


@contextlib.contextmanager
def _index_mapping_once(graph):
    """Compute Torch-Pruning's index mappings once; its ``get_pruning_group`` redoes them per group
    (quadratic in the number of concatenations, e.g. 200 s on DenseNet201)."""
    original = tp_index_mapping.update_index_mapping
    original(graph)
    tp_index_mapping.update_index_mapping = lambda g: None
    try:
        yield
    finally:
        tp_index_mapping.update_index_mapping = original


_PASS_TYPES = (tp_ops.OPTYPE.BN, tp_ops.OPTYPE.PRELU, tp_ops.OPTYPE.IN, tp_ops.OPTYPE.DEPTHWISE_CONV)
_SKIP_TYPES = (tp_ops.OPTYPE.ELEMENTWISE, tp_ops.OPTYPE.CONCAT, tp_ops.OPTYPE.RESHAPE, tp_ops.OPTYPE.OUTPUT,
               tp_ops.OPTYPE.SPLIT, tp_ops.OPTYPE.SLICE, tp_ops.OPTYPE.UNBIND, tp_ops.OPTYPE.EXPAND)


def _plan(graph, analysis, trace, names, param_names, round_to) -> ChannelPlan:
    allowed_params = analysis.channel_params()
    cuts: dict[tuple[str, str, int], set[int]] = {}
    refused: dict[str, int] = {}
    visited: set = set()
    n_groups = n_pruned = 0

    def refuse(why):
        refused[why] = refused.get(why, 0) + 1

    with _index_mapping_once(graph):
        for module in list(graph.module2node):
            if not isinstance(module, (CONV, nn.Linear)) or module in visited:
                continue
            n_groups += 1
            try:
                pruner = graph.get_pruner_of_module(module)
                n = pruner.get_out_channels(module)
                group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(n)))
                keep, items = _decide(graph, analysis, trace, group, n, allowed_params, visited, refuse)
            except Exception as err:  # noqa: BLE001 - Torch-Pruning cannot follow this structure: leave it whole
                refuse(f"no dependency group ({type(err).__name__})")
                visited.add(module)
                continue
            if round_to is not None:
                _round(keep, round_to)
            if keep.all():
                continue
            n_pruned += 1
            removed = ~keep
            for node, handler, idxs, roots in items:
                r = torch.as_tensor(roots, dtype=torch.long)
                sel = [i for i, m in zip(idxs, removed[r].tolist()) if m]
                if not sel:
                    continue
                key = _removal_key(graph, node, handler, names, param_names, allowed_params)
                if key is not None:
                    cuts.setdefault(key, set()).update(sel)
    removals = tuple(
        Removal(name=name, kind=kind, indices=tuple(sorted(idx)), dim=dim)
        for (name, kind, dim), idx in sorted(cuts.items(), key=lambda kv: kv[0])
    )
    modules = {n: m for m, n in names.items()}
    folds = []
    for r in removals:
        if r.kind == "in":
            delta = analysis.fold(modules[r.name], list(r.indices))
            if delta is not None:
                folds.append((r.name, delta))
    ghosts = tuple(sorted((names[m], c) for (m, c) in analysis.ghosts))
    return ChannelPlan(removals, ghosts, n_groups, n_pruned, refused, tuple(folds))


def _decide(graph, analysis, trace, group, n, allowed_params, visited, refuse):
    keep = torch.zeros(n, dtype=torch.bool)  # True = must stay
    items = []
    for item in group:
        dep, idxs, roots = item.dep, list(item.idxs), list(item.root_idxs)
        node, handler = dep.target, dep.handler
        if graph.is_out_channel_pruning_fn(handler) and isinstance(node.module, nn.Module):
            visited.add(node.module)
        ok, why = _item_ok(graph, analysis, trace, node, handler, idxs, allowed_params)
        if why:
            refuse(why)
        roots_t = torch.as_tensor(roots, dtype=torch.long)
        if isinstance(ok, bool):
            if not ok:
                keep[roots_t] = True
        else:
            keep[roots_t[~ok]] = True
        items.append((node, handler, idxs, roots))
    _keep_one_channel(graph, items, keep)
    return keep, items


def _item_ok(graph, analysis, trace, node, handler, idxs, allowed_params):
    """(True | False | bool tensor over idxs, reason when refused)."""
    t = node.type
    module = node.module
    if t == tp_ops.OPTYPE.OUTPUT:
        return False, "model output"
    if node.grad_fn is not None and node.grad_fn in trace.output_fns:
        if not isinstance(module, nn.Module) or graph.is_out_channel_pruning_fn(handler):
            return False, "model output"
    if t in (tp_ops.OPTYPE.ELEMENTWISE, tp_ops.OPTYPE.CONCAT, tp_ops.OPTYPE.RESHAPE):
        f = node.grad_fn
        if f is None or analysis.aligned(f, allowed_params):
            return True, None
        return False, f"op {base(f)}"
    if t == tp_ops.OPTYPE.PARAMETER:
        return True, None  # cut only if it is a per-channel operand (see _removal_key)
    if t not in (tp_ops.OPTYPE.CONV, tp_ops.OPTYPE.LINEAR) + _PASS_TYPES:
        return False, f"layer {type(module).__name__}"
    if trace.calls.get(module, 0) != 1:
        return False, "module called more than once"
    in_side = graph.is_in_channel_pruning_fn(handler)
    if in_side and trace.module_in.get(module) in (LEAF, None):
        return False, "model input"
    if isinstance(module, CONV):
        f = trace.module_out.get(module)
        if f is None or base(f) != "Convolution" or not ValueAnalysis.conv_weight_is_direct(f, module):
            return False, f"layer {type(module).__name__} (weight computed in forward)"
        if module.groups > 1 and t != tp_ops.OPTYPE.DEPTHWISE_CONV:
            return False, "grouped conv"
    if t in _PASS_TYPES or not in_side:
        return True, None
    return analysis.removable_inputs(module)[torch.as_tensor(idxs, dtype=torch.long)], None


def _keep_one_channel(graph, items, keep: torch.Tensor) -> None:
    """Un-remove channels until every layer in the group keeps at least one."""
    sizes = []
    for node, handler, idxs, roots in items:
        module = node.module
        if not isinstance(module, nn.Module) or node.type in _SKIP_TYPES:
            continue
        pruner = graph.get_pruner_of_module(module)
        if pruner is None:
            continue
        total = pruner.get_out_channels(module) if graph.is_out_channel_pruning_fn(handler) else \
            pruner.get_in_channels(module)
        if total is not None:
            sizes.append((torch.as_tensor(roots, dtype=torch.long), total))
    changed = True
    while changed:
        changed = False
        for roots, total in sizes:
            removed = roots[~keep[roots]]
            if removed.numel() and removed.numel() >= total:
                keep[removed.min()] = True
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


@torch.no_grad()
def drop_ghost_biases(model: nn.Module, plan: ChannelPlan) -> int:
    """Set the ghost biases listed in ``plan`` to zero (paper mode). Returns how many."""
    for name, c in plan.ghosts:
        module = model.get_submodule(name)
        if isinstance(module, (BN, IN)):
            if module.bias is not None:
                module.bias[c] = 0
            if getattr(module, "running_mean", None) is not None:
                module.running_mean[c] = 0
        elif getattr(module, "bias", None) is not None:
            module.bias[c] = 0
    return len(plan.ghosts)


@torch.no_grad()
def apply_plan(model: nn.Module, plan: ChannelPlan) -> None:
    """Fold the planned constants into their consumers' biases, then cut the planned channels.

    Ghost biases are not touched here: drop them first with :func:`drop_ghost_biases`.
    Each layer is cut once per dimension with indices of the unpruned model. Every
    parameter keeps its ``requires_grad`` flag; a bias created for a fold takes the flag
    of its layer's weight.
    """
    for name, delta in plan.folds:
        module = model.get_submodule(name)
        if module.bias is None:
            w = module.weight
            module.bias = nn.Parameter(torch.zeros(delta.numel(), dtype=w.dtype, device=w.device),
                                       requires_grad=w.requires_grad)
        module.bias.add_(delta.to(module.bias.dtype).to(module.bias.device))
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for r in plan.removals:
        idxs = list(r.indices)
        if r.kind == "param":
            parent_name, _, attr = r.name.rpartition(".")
            parent = model.get_submodule(parent_name)
            old = getattr(parent, attr)
            gone = set(idxs)
            keep = [i for i in range(old.shape[r.dim]) if i not in gone]
            new = nn.Parameter(old.detach().index_select(r.dim, torch.tensor(keep, device=old.device)))
            setattr(parent, attr, new)
            continue
        module = model.get_submodule(r.name)
        pruner = tp_fn.PrunerBox[tp_ops.module2type(module)]
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
