"""ChannelPrune (Sec. 3.3): saliency -> zero least-salient kernels -> remove dead channels -> FillZero."""
from __future__ import annotations

import copy
import math
import random
import time
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from ..batches import eval_mode
from ..spatial import _require_parameter_weights, _require_spatial, spatial_convs
from . import graph
from .fillzero import FILLS, fill_zeros
from .report import PruneReport

__all__ = ["channelprune", "weight_scores", "zero_kernels", "check_scores"]


def weight_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weight-magnitude scores: the L1 norm of every spatial kernel.

    A data-free alternative to :func:`explainfix.spatial_saliency` for step (1).

    Returns:
        ``{layer name: (weight.shape[0], weight.shape[1]) tensor}`` for every spatial conv.

    Example:
        >>> import torchvision
        >>> weight_scores(torchvision.models.resnet18())["conv1"].shape
        torch.Size([64, 3])
    """
    return {n: m.weight.detach().abs().flatten(2).sum(-1) for n, m in spatial_convs(model)}


def check_scores(model: nn.Module, scores: Mapping[str, torch.Tensor]) -> list[tuple[str, nn.Module]]:
    """Validate ``scores`` against the model's spatial convs; returns the layers.

    Raises:
        NoSpatialConvError: the model has no spatial convolution.
        ValueError: a missing or unknown layer name, a wrong shape, or a non-finite score.
    """
    layers = _require_spatial(model, "nothing to prune")
    if not isinstance(scores, Mapping):
        raise ValueError(f"scores must be a dict {{layer name: tensor}}, got {type(scores).__name__}")
    names = {n for n, _ in layers}
    unknown = sorted(set(scores) - names)
    if unknown:
        raise ValueError(f"scores name a layer that is not a spatial conv of the model: {unknown[0]!r}")
    for name, module in layers:
        if name not in scores:
            raise ValueError(f"scores lack spatial conv layer {name!r}")
        s = scores[name]
        want = tuple(module.weight.shape[:2])
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != want:
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"scores[{name!r}] must have shape {want} (weight.shape[:2]), got {got}")
        if not torch.isfinite(s).all():
            raise ValueError(f"scores[{name!r}] holds NaN or inf")
    return layers


@torch.no_grad()
def zero_kernels(model: nn.Module, scores: Mapping[str, torch.Tensor], ratio: float) -> tuple[int, int]:
    """Zero the globally least-salient ``ratio`` of spatial kernels in place (step 2).

    One global ranking over all kernels of all spatial convs; ties are broken by
    position (layer order of ``named_modules``, then row-major kernel index), so the
    result is deterministic. ``floor(ratio * total)`` kernels are zeroed.

    Returns:
        ``(kernels zeroed, kernels total)``.
    """
    _check_ratio(ratio)
    layers = check_scores(model, scores)
    flat = torch.cat([scores[n].detach().reshape(-1).to("cpu", torch.float64) for n, _ in layers])
    total = flat.numel()
    k = min(total, math.floor(ratio * total + 1e-9))
    if k == 0:
        mask = torch.zeros(total, dtype=torch.bool)
    else:  # one global threshold; ties at the threshold go in order of position
        threshold = flat.kthvalue(k).values
        mask = flat < threshold
        ties = flat == threshold
        mask |= ties & (ties.cumsum(0) <= k - int(mask.sum()))
    start = 0
    for _, module in layers:
        w = module.weight
        n = w.shape[0] * w.shape[1]
        m = mask[start : start + n].view(w.shape[:2]).to(w.device)
        start += n
        if m.any():
            w.masked_fill_(m.view(*m.shape, *([1] * (w.dim() - 2))), 0)
    return k, total


def channelprune(
    model: nn.Module,
    ratio: float,
    *,
    scores: Mapping[str, torch.Tensor] | None = None,
    loader: Iterable | None = None,
    target: Callable | None = None,
    fill: str = "fillzero",
    mode: str = "paper",
    example_inputs: Any = None,
    round_to: int | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> PruneReport:
    """Prune a CNN in place with ChannelPrune (Sec. 3.3 of the paper).

    Steps: (1) a score per spatial kernel (``scores``, or Eq. 4 saliency from
    ``loader``); (2) zero the globally least-salient ``ratio`` of all spatial kernels;
    (3)+(4) remove every channel whose removal cannot change the zeroed model's
    output, consistently across the whole dependency graph (residual adds, concats,
    depthwise convs, BatchNorm, linear heads; see :mod:`explainfix.prune.graph`);
    (5) FillZero the zeros that remain. The removal is decided on the zeroed model
    before FillZero, and the pruned model is checked to equal the zeroed model on
    ``example_inputs`` (eval mode) before FillZero runs.

    The model is changed in place, transactionally: all work happens on a copy, and
    only when every step succeeded are the caller's modules given the new
    parameters, buffers and channel counts (module objects, hooks and
    ``training`` flags stay). If anything fails, the model is exactly as before.
    Parameters are new objects afterwards: rebuild optimizers (and DDP wrappers).
    ``requires_grad`` flags are kept, so fixed spatial layers stay fixed. The
    caller's model never runs; the copy runs a few forward passes (its forward hooks,
    copied with it, fire then).

    Args:
        model: Any CNN with at least one spatial convolution.
        ratio: Fraction of spatial kernels to zero, in [0, 1).
        scores: ``{spatial conv name: tensor of shape weight.shape[:2]}`` -
            ``(out, in / groups)`` for ``Conv*d``, ``(in, out / groups)`` for
            ``ConvTranspose*d``; higher = more salient. E.g. from
            :func:`explainfix.spatial_saliency` or :func:`weight_scores`.
        loader: Instead of ``scores``: batches for :func:`explainfix.spatial_saliency`.
        target: Passed to :func:`explainfix.spatial_saliency` with ``loader``.
        fill: ``"fillzero"`` (the paper), ``"reset"`` (Kaiming for zeroed kernels
            only) or ``"none"`` (leave zeros, the pruned model then equals the zeroed one).
        mode: ``"paper"``: a channel whose input is identically zero counts as dead
            even if a BatchNorm shift or conv bias makes it a non-zero constant; that
            "ghost bias" is dropped (set to 0) and the channel removed, as the paper
            does (random-init BatchNorm has no ghost bias, so both modes agree there);
            ``"exact"``: a channel is removed only when outputs cannot change.
        example_inputs: Input used to trace the model and count MACs; default a
            ``(1, C, 224, 224)`` tensor (``224`` / ``64^3`` for 1-D / 3-D convs) in
            the dtype and on the device of the parameters.
        round_to: Keep channel counts of each dependency group a multiple of this
            (keeps a few extra zeroed channels), e.g. 8 for tensor cores.
        seed: Seed of FillZero's random values (None: a fresh one, reported).
        progress: Show a tqdm progress bar over the steps.

    Returns:
        A :class:`PruneReport`.

    Raises:
        ValueError: ``ratio`` outside [0, 1); both or neither of ``scores`` and
            ``loader``; scores with a missing / unknown layer or a wrong shape; an
            unknown ``fill`` or ``mode``; a bad ``round_to``.
        NoSpatialConvError: the model has no spatial convolution.
        RuntimeError: the pruned model would differ from the zeroed one (a case the
            dependency analysis got wrong); the model is left unchanged.

    Example:
        >>> import torch, torchvision
        >>> from explainfix.prune import channelprune, weight_scores
        >>> model = torchvision.models.resnet18(num_classes=3).eval()
        >>> report = channelprune(model, 0.9, scores=weight_scores(model),
        ...                       example_inputs=torch.randn(1, 3, 64, 64), progress=False)
        >>> report.params_after < report.params_before
        True
    """
    _check_ratio(ratio)
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if mode not in graph.MODES:
        raise ValueError(f"mode must be one of {graph.MODES}, got {mode!r}")
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ValueError(f"round_to must be a positive int or None, got {round_to!r}")
    if (scores is None) == (loader is None):
        raise ValueError(
            "pass exactly one of scores= (e.g. explainfix.prune.weight_scores(model)) or loader= (saliency)"
        )
    _require_parameter_weights(_require_spatial(model, "nothing to prune"), "pruned")
    if scores is not None:
        check_scores(model, scores)
    if example_inputs is None:
        example_inputs = default_example_inputs(model)
    if seed is None:
        seed = random.SystemRandom().randrange(2**63)

    from tqdm.auto import tqdm

    steps = ["copy", "scores", "zero", "graph", "prune", "verify", "fillzero", "count"]
    bar = tqdm(total=len(steps), desc="ChannelPrune", disable=not progress, leave=False)
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def done(step: str) -> None:
        now = time.perf_counter()
        seconds[step] = now - clock[0]
        clock[0] = now
        bar.set_postfix_str(step)
        bar.update(1)

    try:
        work = _copy(model)
        done("copy")
        if scores is None:
            from ..explain.saliency import spatial_saliency

            scores = spatial_saliency(work, loader, target=target, progress=progress)
        done("scores")
        before_channels = _channels(work)
        params_before = _n_params(work)
        tic = time.perf_counter()
        macs_before = _macs(work, example_inputs)  # the caller's model never runs
        count_s = time.perf_counter() - tic
        clock[0] += count_s
        kernels_zeroed, kernels_total = zero_kernels(work, scores, ratio)
        done("zero")
        plan = graph.plan_channel_removal(work, example_inputs, mode=mode, round_to=round_to)
        done("graph")
        graph.drop_ghost_biases(work, plan)
        tic = time.perf_counter()
        reference = _outputs(work, example_inputs)
        reference_s = time.perf_counter() - tic
        graph.apply_plan(work, plan)
        done("prune")
        seconds["prune"] -= reference_s
        rel = _compare(reference, _outputs(work, example_inputs))
        done("verify")
        seconds["verify"] += reference_s
        fill_zeros(work, fill, generator=torch.Generator().manual_seed(seed))
        done("fillzero")
        macs_after = _macs(work, example_inputs) if macs_before is not None else None
        done("count")
        seconds["count"] += count_s
        report = PruneReport(
            ratio=float(ratio),
            mode=mode,
            fill=fill,
            kernels_total=kernels_total,
            kernels_zeroed=kernels_zeroed,
            params_before=params_before,
            params_after=_n_params(work),
            macs_before=macs_before,
            macs_after=macs_after,
            input_shape=_input_shape(example_inputs),
            channels={n: (before_channels[n], c) for n, c in _channels(work).items()},
            seconds=dict(seconds),
            ghost_biases_dropped=len(plan.ghosts),
            max_rel_diff=rel,
            seed=seed,
            groups=plan.groups,
            groups_pruned=plan.groups_pruned,
            refused=dict(plan.refused),
        )
    finally:
        bar.close()
    _commit(model, work)
    return report


def default_example_inputs(model: nn.Module) -> torch.Tensor:
    """A ``(1, C, *size)`` random input fitting the model's first convolution."""
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first is None:
        raise ValueError("cannot infer an input shape (no convolution); pass example_inputs=")
    dims = len(first.kernel_size)
    size = {1: (224,), 2: (224, 224), 3: (64, 64, 64)}.get(dims, (32,) * dims)
    p = first.weight
    return torch.randn(1, first.in_channels, *size, dtype=p.dtype, device=p.device)


# ---------------------------------------------------------------------------------------
def _check_ratio(ratio) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0 <= ratio < 1):
        raise ValueError(f"ratio must be a number in [0, 1) (a fraction, not a percentage), got {ratio!r}")


def _copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(f"ChannelPrune works on a copy of the model, but copy.deepcopy failed: {err}") from err


def _macs(model: nn.Module, example_inputs) -> int | None:
    try:
        return graph.count_macs_and_params(model, example_inputs)[0]
    except Exception:  # noqa: BLE001 - a counter failure must not fail the pruning
        return None


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _channels(model: nn.Module) -> dict[str, int]:
    out = {}
    for n, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            out[n] = m.out_channels
        elif isinstance(m, nn.Linear):
            out[n] = m.out_features
    return out


def _input_shape(example_inputs) -> tuple[int, ...]:
    t = example_inputs
    while isinstance(t, (tuple, list)) and t:
        t = t[0]
    if isinstance(t, dict) and t:
        t = next(iter(t.values()))
    return tuple(t.shape) if isinstance(t, torch.Tensor) else ()


@torch.no_grad()
def _outputs(model: nn.Module, example_inputs) -> list[torch.Tensor]:
    with eval_mode(model):
        out = graph.run_model(model, example_inputs)
    return [t.detach().clone() for t in graph._flatten(out) if isinstance(t, torch.Tensor)]


def _compare(reference: list[torch.Tensor], pruned: list[torch.Tensor]) -> float:
    """Max relative difference; raises if the pruned model is not the zeroed one."""
    if len(reference) != len(pruned) or any(a.shape != b.shape for a, b in zip(reference, pruned)):
        raise RuntimeError(
            "ChannelPrune changed the shape of the model's output; the model was left unchanged "
            "(this is a bug in the dependency analysis - please report it with the model definition)"
        )
    rel = 0.0
    for a, b in zip(reference, pruned):
        if not a.is_floating_point():
            if not torch.equal(a, b):
                rel = math.inf
            continue
        scale = a.abs().max().item() if a.numel() else 0.0
        diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        rel = max(rel, diff / max(scale, torch.finfo(a.dtype).tiny))
    dtype = reference[0].dtype if reference and reference[0].is_floating_point() else torch.float32
    tol = max(1e4 * torch.finfo(dtype).eps, 1e-10)
    if not rel <= tol:
        raise RuntimeError(
            f"pruned and zeroed models differ (max relative difference {rel:.3g} > {tol:.1g}); the model was "
            "left unchanged (this is a bug in the dependency analysis - please report it with the model "
            "definition)"
        )
    return rel


_SIZES = (int, float, bool, str, tuple, torch.Size)


def _commit(model: nn.Module, work: nn.Module) -> None:
    """Give every module of ``model`` the parameters, buffers and channel counts of ``work``.

    Only assignments happen here (nothing can fail half-way): each module keeps its
    identity, children, hooks and ``training`` flag; its ``_parameters`` and ``_buffers``
    and any changed size attribute (``in_channels``, ``num_features``, ``groups``, ...)
    come from the pruned copy.
    """
    pairs = [(m, work.get_submodule(n)) for n, m in model.named_modules()]
    updates = []
    for mine, theirs in pairs:
        new = {"_parameters": theirs._parameters, "_buffers": theirs._buffers}
        for key, value in theirs.__dict__.items():
            if isinstance(value, _SIZES) and key in mine.__dict__ and mine.__dict__[key] != value:
                new[key] = value
        updates.append((mine, new))
    for mine, new in updates:
        mine.__dict__.update(new)
