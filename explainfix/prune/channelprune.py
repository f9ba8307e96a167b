"""ChannelPrune (Sec. 3.3): saliency -> zero least-salient kernels -> remove dead channels -> FillZero."""
from __future__ import annotations

import math
import random
import time
import warnings
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from ..spatial import _require_parameter_weights, _require_spatial, spatial_convs
from . import plan as planning
from . import transaction as tx
from .fillzero import FILLS, fill_zeros
from .report import PruneReport, PruneWarning
from .values import MODES

__all__ = ["channelprune", "weight_scores", "zero_kernels", "check_scores", "PruneWarning", "NORMS",
           "DEFAULT_MODE"]

#: the one default of ``mode`` (``channelprune``, the CLI and the planner agree)
DEFAULT_MODE = "paper"


NORMS = ("l1_sqrt", "l1", "mean")


def weight_scores(model: nn.Module, norm: str = "l1_sqrt") -> dict[str, torch.Tensor]:
    """Weight-magnitude scores of every spatial kernel, comparable across kernel sizes.

    A data-free alternative to :func:`explainfix.spatial_saliency` for step (1). The
    global ranking of step (2) compares kernels of different sizes, so the default
    normalises: ``"l1_sqrt"`` = ``sum|w| / sqrt(k)`` for a kernel of ``k`` weights (the L2
    norm of a kernel whose entries have equal magnitude; a Kaiming-initialised layer
    scores independently of its kernel size, and a 7x7 kernel does not outrank a 3x3
    one of the same energy). ``"l1"`` is the plain L1 norm (grows with ``k``: ranks all
    3x3 kernels below 7x7 ones), ``"mean"`` is ``sum|w| / k``.

    Returns:
        ``{layer name: (weight.shape[0], weight.shape[1]) tensor}`` for every spatial conv.

    Example:
        >>> import torchvision
        >>> weight_scores(torchvision.models.resnet18())["conv1"].shape
        torch.Size([64, 3])
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    out = {}
    for n, m in spatial_convs(model):
        w = m.weight.detach().abs().flatten(2)
        k = w.shape[-1]
        s = w.sum(-1)
        out[n] = s / math.sqrt(k) if norm == "l1_sqrt" else (s / k if norm == "mean" else s)
    return out


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
    mode: str = DEFAULT_MODE,
    example_inputs: Any = None,
    round_to: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    warn_change: float = 1e-3,
) -> PruneReport:
    """Prune a CNN in place with ChannelPrune (Sec. 3.3 of the paper).

    Steps: (1) a score per spatial kernel (``scores``, or Eq. 4 saliency from
    ``loader``); (2) zero the globally least-salient ``ratio`` of all spatial kernels;
    (3)+(4) remove every channel whose removal cannot change the zeroed model's output,
    consistently across the whole dependency graph (residual adds, concats, depthwise
    convs, BatchNorm, linear heads; see :mod:`explainfix.prune.plan`), folding channels
    that became input-independent constants into their consumers' biases where that is
    exact (:mod:`explainfix.prune.values`); (5) FillZero the zeros that remain.

    Everything runs on a copy in float64 (cast back at the end): the pruned model is
    checked to equal the zeroed one (``mode="exact"``) or the zeroed one with ghost
    biases dropped (``mode="paper"``) within 1e-9 relative on ``example_inputs``, and
    the report states the true change against the zeroed model and against the model
    before zeroing, in every mode. Degenerate results (an output that no longer depends
    on the input, a layer that lost every kernel, a layer scored all 0) are named in the
    report's ``warnings`` and raised as :class:`PruneWarning`.

    The model is changed in place, transactionally: only when every step succeeded are
    the caller's modules given the new parameters, buffers and channel counts (module
    objects, hooks and ``training`` flags stay). If anything fails, the model is exactly
    as before. Parameters are new objects afterwards: rebuild optimizers (and DDP
    wrappers). ``requires_grad`` flags are kept. The caller's model never runs.

    Args:
        model: Any CNN with at least one spatial convolution (no tied weights).
        ratio: Fraction of spatial kernels to zero, in [0, 1).
        scores: ``{spatial conv name: tensor of shape weight.shape[:2]}``; higher = more
            salient. E.g. from :func:`explainfix.spatial_saliency` or :func:`weight_scores`.
        loader: Instead of ``scores``: batches for :func:`explainfix.spatial_saliency`.
        target: Passed to :func:`explainfix.spatial_saliency` with ``loader``.
        fill: ``"fillzero"`` (the paper), ``"reset"`` or ``"none"``.
        mode: ``"paper"`` (default): a channel whose input is identically zero is
            removed even if a BatchNorm shift or conv bias makes it a constant, whose
            "ghost bias" is dropped, as the paper does - the change is measured and
            reported; ``"exact"``: a channel is removed only when the output cannot
            change (constants folded where exact).
        example_inputs: Input used to trace, verify and count MACs; default a
            ``(1, C, 224, 224)`` tensor (``224`` / ``64^3`` for 1-D / 3-D convs).
        round_to: Keep channel counts of each dependency group a multiple of this.
        seed: Seed of FillZero's random values (None: a fresh one, reported).
        progress: Show a tqdm progress bar over the steps.
        max_batches: With ``loader``: use at most this many batches for saliency.
        warn_change: Warn (:class:`PruneWarning`) when the pruned model's outputs differ
            from the zeroed model's by more than this (relative; paper mode's ghost biases).

    Returns:
        A :class:`PruneReport`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: a bad ``ratio``, ``fill``, ``mode``, ``round_to``, ``max_batches`` or
            ``warn_change``; both or neither of ``scores`` and ``loader``; bad scores; a
            model on the meta device, with tied conv weights or with spatial weights used
            functionally.
        NoSpatialConvError: the model has no spatial convolution.
        RuntimeError: the pruned model would differ from its reference (a case the
            analysis got wrong); the model is left unchanged.

    Example:
        >>> import torch, torchvision
        >>> from explainfix.prune import channelprune, weight_scores
        >>> model = torchvision.models.resnet18(num_classes=3).eval()
        >>> report = channelprune(model, 0.9, scores=weight_scores(model),
        ...                       example_inputs=torch.randn(1, 3, 64, 64), progress=False)
        >>> report.params_after < report.params_before
        True
    """
    _validate(model, ratio, scores, loader, fill, mode, round_to, max_batches, warn_change)
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
        seconds[step] = seconds.get(step, 0.0) + now - clock[0]
        clock[0] = now
        bar.set_postfix_str(step)
        bar.update(1)

    try:
        work = tx.copy_model(model)
        done("copy")
        if scores is None:
            from ..explain.saliency import spatial_saliency

            scores = spatial_saliency(work, loader, target=target, max_batches=max_batches, progress=progress)
        done("scores")
        before_channels = _channels(work)
        params_before = _n_params(work)
        dtypes = tx.to_float64(work)
        x = tx.float64_inputs(example_inputs)
        x2 = _other_inputs(x, seed)
        original = tx.outputs(work, x)
        original2 = tx.outputs(work, x2) if x2 is not None else None
        macs_before = _macs(work, x)
        done("count")
        kernels_zeroed, kernels_total = zero_kernels(work, scores, ratio)
        warn = _score_warnings(work, scores)
        zeroed = tx.outputs(work, x)
        done("zero")
        plan = planning.plan_channel_removal(work, x, mode=mode, round_to=round_to)
        done("graph")
        planning.drop_ghost_biases(work, plan)
        reference = tx.outputs(work, x) if plan.ghosts else zeroed
        planning.apply_plan(work, plan)
        done("prune")
        pruned = tx.outputs(work, x)
        rel = tx.rel_change(reference, pruned)
        if not rel <= _TOL:
            raise RuntimeError(
                f"pruned and zeroed models differ (max relative difference {rel:.3g} > {_TOL:.0e}, float64); the "
                "model was left unchanged (this is a bug in the dependency analysis - please report it with the "
                "model definition)")
        change = tx.rel_change(zeroed, pruned)
        change_input = tx.rel_change(original, pruned)
        warn += _output_warnings(work, x2, pruned, original, original2)
        if change > warn_change:
            warn.append(f"the pruned model's output differs from the zeroed model's by {change:.3g} (relative, "
                        f"> warn_change={warn_change:g}): {len(plan.ghosts)} ghost biases were dropped "
                        "(mode='paper'); mode='exact' never changes the output")
        done("verify")
        macs_after = _macs(work, x) if macs_before is not None else None
        done("count")
        tx.restore_dtypes(work, dtypes)
        fill_zeros(work, fill, generator=torch.Generator().manual_seed(seed))
        done("fillzero")
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
            change_vs_zeroed=change,
            change_vs_original=change_input,
            biases_folded=len(plan.folds),
            warnings=tuple(warn),
        )
    finally:
        bar.close()
    tx.commit(model, work)
    for w in report.warnings:
        warnings.warn(w, PruneWarning, stacklevel=2)
    return report


_TOL = 1e-9  # float64 self-check: the pruned model equals its reference up to rounding


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


def _validate(model, ratio, scores, loader, fill, mode, round_to, max_batches, warn_change) -> None:
    """Every argument check of :func:`channelprune`, once, before anything runs."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_ratio(ratio)
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise ValueError(f"round_to must be a positive int or None, got {round_to!r}")
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}")
    if isinstance(warn_change, bool) or not isinstance(warn_change, (int, float)) or not warn_change >= 0:
        raise ValueError(f"warn_change must be a number >= 0, got {warn_change!r}")
    if (scores is None) == (loader is None):
        raise ValueError(
            "pass exactly one of scores= (e.g. explainfix.prune.weight_scores(model)) or loader= (saliency)"
        )
    meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if meta:
        raise ValueError(f"the model has tensors on the meta device (e.g. {meta[0]!r}): load real weights first "
                         "(e.g. model.to_empty(device=...) and a state_dict)")
    layers = _require_spatial(model, "nothing to prune")
    _require_parameter_weights(layers, "pruned")
    owner: dict[int, str] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            w = m.weight
            if id(w) in owner and owner[id(w)] != n:
                raise ValueError(f"layers {owner[id(w)]!r} and {n!r} share one weight Parameter (tied weights); "
                                 "ChannelPrune would untie them - untie them first or prune another model")
            owner.setdefault(id(w), n)
    if scores is not None:
        check_scores(model, scores)


def _other_inputs(x, seed):
    """A second, independent input of the same shape (to see whether the output still depends on it)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return None
    g = torch.Generator().manual_seed(seed % (2**63))
    return (torch.randn(x.shape, generator=g, dtype=torch.float64) * (x.std() if x.numel() > 1 else 1.0)
            + x.mean()).to(x.device, x.dtype)


def _score_warnings(model, scores) -> list[str]:
    out = []
    zero_score = [n for n, s in scores.items() if s.numel() and bool((s == 0).all())]
    if zero_score:
        out.append(f"{len(zero_score)} layer(s) scored exactly 0 throughout (e.g. zero-initialised residual "
                   f"branches): {', '.join(zero_score[:5])}")
    dead = [n for n, m in spatial_convs(model) if not bool(m.weight.detach().flatten(2).ne(0).any())]
    if dead:
        out.append(f"{len(dead)} layer(s) lost all their spatial kernels: {', '.join(dead[:5])}")
    return out


def _output_warnings(work, x2, pruned, original, original2) -> list[str]:
    if x2 is None or original2 is None:
        return []
    spread_before = tx.rel_change(original, original2)
    spread_after = tx.rel_change(pruned, tx.outputs(work, x2))
    if spread_before > 1e-6 and spread_after <= 1e-6 * spread_before:
        return [f"the pruned model's output no longer depends on its input (relative output change between two "
                f"random inputs {spread_after:.2g}, before pruning {spread_before:.2g}): the model is dead - "
                "lower the ratio or use saliency scores"]
    return []


def _macs(model: nn.Module, example_inputs) -> int | None:
    try:
        return planning.count_macs_and_params(model, example_inputs)[0]
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
