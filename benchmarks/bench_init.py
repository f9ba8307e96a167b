"""Speed of the fixed initializations on torchvision ResNet50 (CPU).

Initializes every spatial convolution of ResNet50 (1.26M spatial kernels) with each
method and compares with torch's own default initialization of the same layers
(``reset_parameters``: Kaiming uniform), measured side by side.

Usage:
    python benchmarks/bench_init.py [--repeats 3] [--threads 1] [--out out/bench/init.json]

One thread by default: on a shared or busy machine, several intra-op threads can be slowed
many times over by oversubscription; pass ``--threads 2`` (or more) on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision

from explainfix import initialize, list_inits, spatial_convs
from explainfix.fileio import atomic_write


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="out/bench/init.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    guide = torchvision.models.resnet50(weights=None)
    layers = list(spatial_convs(model))
    kernels = sum(m.weight.numel() // m.weight[0, 0].numel() for _, m in layers)

    def kaiming():
        with torch.no_grad():
            for _, m in layers:
                m.reset_parameters()

    baseline = best_of(kaiming, args.repeats)
    rows = {"kaiming_reset_parameters": baseline}
    for method in list_inits():
        options = {"guide": guide} if method == "guided_steer" else {}
        rows[method] = best_of(lambda: initialize(model, method, seed=0, **options), args.repeats)

    print(f"ResNet50: {len(layers)} spatial convs, {kernels:,} spatial kernels, {args.threads} threads, best of {args.repeats}")
    print(f"{'method':<26}{'seconds':>10}{'x kaiming':>12}{'kernels/s':>14}")
    for name, sec in rows.items():
        print(f"{name:<26}{sec:>10.3f}{sec / baseline:>12.2f}{kernels / sec:>14,.0f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "model": "resnet50",
        "device": "cpu",
        "threads": args.threads,
        "repeats": args.repeats,
        "spatial_layers": len(layers),
        "spatial_kernels": kernels,
        "seconds": rows,
        "ratio_to_kaiming": {k: v / baseline for k, v in rows.items()},
        "torch": torch.__version__,
    }
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
