"""ExplainSteer with saliency vs. the same minibatches' plain forward + backward passes.

Both arms run side by side in one process on the same model and batches, alternating,
repeated; the medians are compared. Goal: overhead ratio (ExplainSteer / plain) <= 1.10.

    .venv/bin/python benchmarks/bench_explainsteer.py [--repeats 5] [--batches 5] [--size 64]

Prints a small table and writes out/bench/explainsteer.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision

from explainfix import explainsteer, spatial_saliency
from explainfix.fileio import atomic_write


def plain_passes(model, batches):
    """M forward + backward passes of sum(y * yhat), gradients for every parameter."""
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        (model(x) * y).sum().backward()
    model.zero_grad(set_to_none=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5, help="minibatches M")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default="out/bench/explainsteer.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None, num_classes=5)
    if args.channels != 3:
        model.conv1 = torch.nn.Conv2d(args.channels, 64, 7, 2, 3, bias=False)
    model.eval()  # both arms in eval mode (saliency runs in eval mode)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(args.batch_size, args.channels, args.size, args.size, generator=g),
         (torch.rand(args.batch_size, 5, generator=g) < 0.5).float())
        for _ in range(args.batches)
    ]
    arms = {
        "plain forward+backward": lambda: plain_passes(model, batches),
        "spatial_saliency": lambda: spatial_saliency(model, batches, progress=False),
        "explainsteer (saliency + spectra)": lambda: explainsteer(model, batches, progress=False),
    }
    for fn in arms.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, fn in arms.items():  # alternate the arms within every repeat
            times[name].append(timed(fn))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["plain forward+backward"]

    print(f"resnet50, {args.batches} minibatches of {args.batch_size}x{args.channels}x{args.size}x{args.size}, "
          f"{args.repeats} repeats, {torch.get_num_threads()} threads, CPU")
    print(f"{'arm':36s} {'median s':>9s} {'ratio':>7s}")
    for name, t in medians.items():
        print(f"{name:36s} {t:9.3f} {t / base:7.3f}")
    ratio = medians["explainsteer (saliency + spectra)"] / base
    print(f"overhead ratio explainsteer / plain = {ratio:.3f} (goal <= 1.10)")

    result = {
        "model": "resnet50", "batches": args.batches, "batch_size": args.batch_size, "channels": args.channels,
        "size": args.size, "repeats": args.repeats, "threads": torch.get_num_threads(), "device": "cpu",
        "torch": torch.__version__, "machine": platform.machine(),
        "seconds": times, "median_seconds": medians, "ratio_explainsteer_over_plain": ratio,
        "ratio_saliency_over_plain": medians["spatial_saliency"] / base,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
