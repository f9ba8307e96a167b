"""Measured forward latency of a model, and of two models side by side.

FLOPs are not latency: a pruned model with fewer multiply-accumulates can run slower
(odd channel counts, kernel-launch overhead, memory traffic). :func:`measure_latency`
times one model; :func:`compare_latency` times a model before and after pruning,
interleaved, so that machine noise hits both alike, and reports the speed-up.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from explainfix.batches import eval_mode

__all__ = ["Latency", "LatencyComparison", "measure_latency", "compare_latency"]

Timer = Callable[[], float]


@dataclass(frozen=True)
class Latency:
    """Forward-pass time of one model at one batch size (eval mode, no autograd).

    Attributes:
        median_s: Median seconds per forward pass over ``repeats`` timed passes.
        iqr_s: Interquartile range of those passes (seconds), a robust noise estimate.
        batch_size: Leading dimension of the input.
        device: Device the model ran on, e.g. ``"cpu"`` or ``"cuda:0"``.
        repeats: Timed passes.
        warmup: Untimed passes run first.
    """

    median_s: float
    iqr_s: float
    batch_size: int
    device: str
    repeats: int
    warmup: int

    @property
    def median_ms(self) -> float:
        return 1e3 * self.median_s

    def to_dict(self) -> dict:
        """JSON-ready dict (``median_ms`` included)."""
        return {**asdict(self), "median_ms": self.median_ms}


@dataclass(frozen=True)
class LatencyComparison:
    """Latency of a model before and after a change, measured side by side.

    Attributes:
        before: ``{batch size: Latency}`` of the reference (e.g. unpruned) model.
        after: ``{batch size: Latency}`` of the changed (e.g. pruned) model.
    """

    before: dict[int, Latency]
    after: dict[int, Latency]

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(self.before)

    @property
    def speedup(self) -> dict[int, float]:
        """``{batch size: before median / after median}``; below 1 means ``after`` is slower."""
        return {b: _ratio(self.before[b].median_s, self.after[b].median_s) for b in self.before}

    @property
    def slower(self) -> tuple[int, ...]:
        """Batch sizes at which ``after`` was slower than ``before`` (speed-up below 1)."""
        return tuple(b for b, s in self.speedup.items() if s < 1)

    def warning(self, what: str = "pruned model") -> str | None:
        """A one-line warning naming the batch sizes where ``after`` was slower, else ``None``."""
        if not self.slower:
            return None
        at = "; ".join(
            f"batch {b}: {_ms(self.before[b].median_s)} -> {_ms(self.after[b].median_s)}, "
            f"{self.speedup[b]:.2f}x, IQR {_ms(self.after[b].iqr_s)}" for b in self.slower
        )
        device = self.after[self.slower[0]].device
        return f"WARNING: the {what} is slower than before on {device} ({at}); fewer FLOPs are not less latency"

    def to_dict(self) -> dict:
        """JSON-ready dict: one entry per batch size with both latencies and the speed-up."""
        return {
            str(b): {"before": self.before[b].to_dict(), "after": self.after[b].to_dict(), "speedup": s}
            for b, s in self.speedup.items()
        }

    def summary(self) -> str:
        """A short table: median (IQR) milliseconds before and after, and the speed-up."""
        first = next(iter(self.before.values()))
        lines = [f"  latency on {first.device} (median of {first.repeats}, IQR), interleaved:"]
        for b, s in self.speedup.items():
            x, y = self.before[b], self.after[b]
            lines.append(
                f"    batch {b:>4}: {_ms(x.median_s)} (IQR {_ms(x.iqr_s)}) -> "
                f"{_ms(y.median_s)} (IQR {_ms(y.iqr_s)})  speed-up {s:.2f}x"
            )
        return "\n".join(lines)


def measure_latency(
    model: nn.Module,
    example_input: Any,
    *,
    warmup: int = 3,
    repeats: int = 10,
    timer: Timer | None = None,
) -> Latency:
    """Median and IQR of a model's forward time on its own device.

    The model runs in eval mode under ``torch.no_grad()``; every module's
    ``training`` flag is restored afterwards. The input is moved to the device of
    the model's parameters (the model is never moved). On CUDA (and other
    accelerators) the device is synchronised before and after every timed pass.

    Args:
        model: Any module.
        example_input: A tensor, or a tuple / list of positional tensors, whose first
            dimension is the batch.
        warmup: Untimed passes first (allocator, caches, lazy initialisation).
        repeats: Timed passes.
        timer: Clock in seconds (default ``time.perf_counter``).

    Returns:
        A :class:`Latency`.

    Raises:
        ValueError: ``repeats < 1``, ``warmup < 0``, or an input without a batch dimension.

    Shape:
        ``example_input``: ``(N, ...)``; ``Latency.batch_size`` is ``N``.

    Example:
        >>> import torch
        >>> lat = measure_latency(torch.nn.Conv2d(1, 4, 3), torch.randn(2, 1, 16, 16), repeats=3)
        >>> lat.batch_size, lat.median_s > 0
        (2, True)
    """
    _check_counts(warmup, repeats)
    device = _device(model)
    args = _to_device(_as_args(example_input), device)
    with _eval_no_grad(model):
        samples = _run(((model, args),), (device,), warmup, repeats, timer)[0]
    return _latency(samples, args, device, warmup)


def compare_latency(
    before: nn.Module,
    after: nn.Module,
    example_input: Any,
    *,
    batch_sizes: Sequence[int] = (1,),
    warmup: int = 3,
    repeats: int = 10,
    timer: Timer | None = None,
) -> LatencyComparison:
    """Time two models side by side at several batch sizes.

    The passes are interleaved - ``before``, ``after``, then ``after``, ``before``, and
    so on - so drifting clocks, other processes and thermal throttling hit both models
    alike; the speed-up is ``before median / after median``. Each model runs on its
    own device, in eval mode under ``torch.no_grad()``, and gets its ``training``
    flags back afterwards.

    Args:
        before: Reference model (e.g. a copy taken before pruning).
        after: Changed model (e.g. the pruned one); must accept the same input.
        example_input: A tensor (or tuple / list of tensors) with a batch dimension;
            the input of batch size ``b`` repeats its samples to ``b`` rows.
        batch_sizes: Batch sizes to measure (duplicates dropped, order kept).
        warmup: Untimed passes of each model per batch size.
        repeats: Timed passes of each model per batch size.
        timer: Clock in seconds (default ``time.perf_counter``).

    Returns:
        A :class:`LatencyComparison`; ``.speedup[b] < 1`` means ``after`` is slower.

    Raises:
        ValueError: bad counts or batch sizes, or an input without a batch dimension.

    Example:
        >>> import torch
        >>> big, small = torch.nn.Conv2d(1, 64, 3), torch.nn.Conv2d(1, 8, 3)
        >>> c = compare_latency(big, small, torch.randn(1, 1, 32, 32), batch_sizes=(1, 4), repeats=3)
        >>> sorted(c.speedup)
        [1, 4]
    """
    _check_counts(warmup, repeats)
    sizes = tuple(dict.fromkeys(batch_sizes))
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {tuple(batch_sizes)!r}")
    devices = (_device(before), _device(after))
    base = _as_args(example_input)
    results: tuple[dict[int, Latency], dict[int, Latency]] = ({}, {})
    with _eval_no_grad(before), _eval_no_grad(after):
        for b in sizes:
            args = _with_batch(base, b)
            pair = tuple((m, _to_device(args, d)) for m, d in zip((before, after), devices))
            samples = _run(pair, devices, warmup, repeats, timer)
            for k in range(2):
                results[k][b] = _latency(samples[k], pair[k][1], devices[k], warmup)
    return LatencyComparison(before=results[0], after=results[1])


# ---------------------------------------------------------------------------------------
def _check_counts(warmup: int, repeats: int) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")


def _ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.3g} ms"


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return math.inf if a > 0 else 1.0


def _device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _as_args(example_input: Any) -> tuple[torch.Tensor, ...]:
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not args or not all(isinstance(a, torch.Tensor) and a.dim() >= 1 for a in args):
        raise ValueError("example_input must be a tensor (or tuple of tensors) with a batch dimension")
    return args


def _to_device(args: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(a.to(device) for a in args)


def _with_batch(args: tuple[torch.Tensor, ...], batch: int) -> tuple[torch.Tensor, ...]:
    """Each tensor with ``batch`` rows, cycling through its own samples."""
    return tuple(a[torch.arange(batch, device=a.device) % a.shape[0]] for a in args)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cpu":
        return lambda: None
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: torch.accelerator.synchronize(device)


@contextlib.contextmanager
def _eval_no_grad(model: nn.Module):
    """Eval mode and no autograd inside; every module's ``training`` flag restored on exit."""
    with eval_mode(model, no_grad=True):
        yield


def _run(pairs, devices, warmup: int, repeats: int, timer: Timer | None) -> list[list[float]]:
    """Seconds per pass of each ``(model, args)``, interleaved in alternating order."""
    clock = timer or time.perf_counter
    syncs = [_synchronizer(d) for d in devices]
    samples: list[list[float]] = [[] for _ in pairs]
    order = list(range(len(pairs)))
    for i in range(warmup + repeats):
        for k in order:
            model, args = pairs[k]
            syncs[k]()
            start = clock()
            model(*args)
            syncs[k]()
            if i >= warmup:
                samples[k].append(clock() - start)
        order.reverse()
    return samples


def _latency(samples: list[float], args, device: torch.device, warmup: int) -> Latency:
    if len(samples) > 1:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    else:
        q1 = q3 = samples[0]
    return Latency(
        median_s=float(statistics.median(samples)),
        iqr_s=float(q3 - q1),
        batch_size=int(args[0].shape[0]),
        device=str(device),
        repeats=len(samples),
        warmup=warmup,
    )
