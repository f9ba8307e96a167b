"""ChannelPrune speed and savings on torchvision ResNet50 (random init).

Zeroes 99 % of torchvision ResNet50's 1.26M spatial kernels and prunes it structurally, timing each
step (goal: <= 3 s for zero + graph + prune on 2 CPU cores), then reports the parameters
and MACs kept at ratios 0.9 and 0.99. Side by side, the vectorised zeroing step is
compared with a per-kernel Python loop (timed on a slice, extrapolated).

    .venv/bin/python benchmarks/bench_channelprune.py [--size 224] [--threads 2] [--scores saliency]

Scores are weight magnitudes (default) or Eq. 4 saliency on 15 synthetic batches of 4. Forward
latency before / after pruning comes from explainfix.prune.compare_latency (the two models
interleaved, median and IQR of --latency-repeats passes, batch 1 and 4).
Writes out/bench/channelprune.json (or channelprune_saliency.json).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time

import torch
import torchvision

from explainfix.fileio import atomic_write
from explainfix.prune import channelprune, compare_latency, weight_scores


def loop_zero_seconds(model, scores, ratio, sample=20000):
    """Seconds a per-kernel Python loop would take to zero ``ratio`` of the kernels (extrapolated)."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = int(ratio * flat.numel())
    order = torch.argsort(flat, stable=True)[:k]
    layers = [(n, m) for n, m in model.named_modules() if n in scores]
    offsets, start = [], 0
    for n, m in layers:
        offsets.append((start, m))
        start += m.weight.shape[0] * m.weight.shape[1]
    idx = order[:sample].tolist()
    t = time.perf_counter()
    with torch.no_grad():
        for i in idx:
            for s, m in reversed(offsets):
                if i >= s:
                    j = i - s
                    m.weight[j // m.weight.shape[1], j % m.weight.shape[1]] = 0
                    break
    return (time.perf_counter() - t) * k / max(1, len(idx))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="input side for tracing and MACs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs per ratio; the best time of each step is kept")
    ap.add_argument("--latency-repeats", type=int, default=5, help="timed forward passes per model and batch")
    ap.add_argument("--scores", choices=("weight-magnitude", "saliency"), default="weight-magnitude")
    ap.add_argument("--out", default=None, help="JSON file (default out/bench/channelprune[_saliency].json)")
    args = ap.parse_args()
    if args.out is None:
        args.out = "out/bench/channelprune" + ("_saliency" if args.scores == "saliency" else "") + ".json"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, args.size, args.size)
    if args.scores == "saliency":  # Eq. 4 on synthetic data, as in DESIGN section 6 (15 batches of 4)
        from explainfix import spatial_saliency

        g = torch.Generator().manual_seed(0)
        batches = [torch.randn(4, 3, 128, 128, generator=g) for _ in range(15)]
        t = time.perf_counter()
        scores = spatial_saliency(base, batches, target=lambda out, batch: torch.ones_like(out), progress=False)
        print(f"saliency: {time.perf_counter() - t:.1f} s (not part of the step times below)")
    else:
        scores = weight_scores(base)
    rows = []
    for ratio in (0.9, 0.99):
        runs = []
        for _ in range(args.repeat):
            model = copy.deepcopy(base)
            runs.append(channelprune(model, ratio, scores=scores, fill="fillzero", mode="paper",
                                     example_inputs=x, seed=0, progress=False))
        report = runs[0]
        timing = compare_latency(base, model, x, batch_sizes=(1, 4), warmup=2, repeats=args.latency_repeats)
        lat = {f"batch{b}": {"before_ms": timing.before[b].median_ms, "after_ms": timing.after[b].median_ms,
                             "before_iqr_ms": 1e3 * timing.before[b].iqr_s,
                             "after_iqr_ms": 1e3 * timing.after[b].iqr_s, "speedup": s}
               for b, s in timing.speedup.items()}
        seconds = {k: min(r.seconds[k] for r in runs) for k in report.seconds}  # best of repeats, per step
        prune_s = min(sum(r.seconds[k] for k in ("zero", "graph", "prune")) for r in runs)
        rows.append({
            "ratio": ratio,
            "kernels_zeroed": report.kernels_zeroed,
            "kernels_total": report.kernels_total,
            "params_kept": report.params_kept,
            "macs_kept": report.macs_kept,
            "seconds": seconds,
            "zero_graph_prune_s": prune_s,
            "total_s": min(r.total_seconds for r in runs),
            "max_rel_diff": report.max_rel_diff,
            "latency": lat,
        })
    loop_s = loop_zero_seconds(copy.deepcopy(base), scores, 0.99)
    vec_s = rows[1]["seconds"]["zero"]
    print(f"ResNet50, {args.threads} threads, input 1x3x{args.size}x{args.size}, {args.scores} scores, "
          f"mode=paper, seconds = best of {args.repeat}")
    print(f"{'ratio':>6} {'params kept':>12} {'MACs kept':>10} {'zero':>7} {'graph':>7} {'prune':>7} "
          f"{'verify':>7} {'fill':>7} {'count':>7} {'z+g+p':>7} {'total':>7}")
    for r in rows:
        s = r["seconds"]
        print(f"{r['ratio']:>6} {100 * r['params_kept']:>11.1f}% {100 * r['macs_kept']:>9.1f}% "
              f"{s['zero']:>7.2f} {s['graph']:>7.2f} {s['prune']:>7.2f} {s['verify']:>7.2f} {s['fillzero']:>7.2f} "
              f"{s['count']:>7.2f} {r['zero_graph_prune_s']:>7.2f} {r['total_s']:>7.2f}")
    for r in rows:
        for b, v in r["latency"].items():
            print(f"ratio {r['ratio']}: CPU forward {b}: {v['before_ms']:.0f} ms (IQR {v['before_iqr_ms']:.0f}) -> "
                  f"{v['after_ms']:.0f} ms (IQR {v['after_iqr_ms']:.0f}), interleaved: {v['speedup']:.2f}x faster")
    print(f"zeroing 99% of {rows[1]['kernels_total']:,} kernels: vectorised {vec_s:.3f} s vs per-kernel loop "
          f"{loop_s:.1f} s (extrapolated) -> {loop_s / max(vec_s, 1e-9):.0f}x")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    result = {"model": "resnet50", "scores": args.scores, "threads": args.threads, "repeat": args.repeat, "input": [1, 3, args.size, args.size], "rows": rows,
              "zero_loop_s_extrapolated": loop_s, "zero_vectorised_s": vec_s}
    with atomic_write(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
