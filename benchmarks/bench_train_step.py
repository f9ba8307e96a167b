"""Training-step time: learned vs fixed (ghaar) vs fixed + ChannelPrune (issue 11).

Times the same :class:`explainfix.train.step.TrainStep` that ``explainfix train`` runs. Arms
of one model are measured round-robin in one process (one step of each arm per round), after
warm-up; medians/IQR of the per-step times (CUDA-synchronised); peak CUDA memory per arm.

    python benchmarks/bench_train_step.py --smoke
    python benchmarks/bench_train_step.py --models resnet50,densenet121 --size 320 --batch 4
    python benchmarks/bench_train_step.py --batch 32 --amp bf16 --channels-last
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import explainfix  # noqa: E402
from explainfix.train.step import TrainStep, build_optimizer, trainable_parameters  # noqa: E402

RATIOS = {"resnet50": 0.99, "densenet121": 0.95, "efficientnet_b0": 0.85, "unet_d": 0.9, "resnet18": 0.99}
ARMS = ("learned", "fixed", "fixed_pruned")


def make_model(name):
    if name == "unet_d":
        return explainfix.create_model("unet_d")
    return explainfix.create_model(name, in_chans=1, num_classes=5)


def make_batch(name, batch, size, device):
    if name == "unet_d":
        x = torch.randn(batch, 3, size, size, device=device)
        y = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    else:
        x = torch.randn(batch, 1, size, size, device=device)
        y = (torch.rand(batch, 5, device=device) > 0.5).float()
    return x, y


def loss_fn(lo, y, m):
    if lo.shape != y.shape and lo.dim() == 4:
        lo = torch.nn.functional.interpolate(lo, size=y.shape[-2:])
    return torch.nn.functional.binary_cross_entropy_with_logits(lo, y)


def build_arm(name, arm, x, args, device):
    torch.manual_seed(0)
    model = make_model(name)
    if arm != "learned":
        explainfix.initialize(model, "ghaar", seed=0)
    if arm == "fixed_pruned":
        xs = x[:2].cpu()
        rep = explainfix.channelprune(model, RATIOS.get(name, 0.9),
                                      scores=explainfix.prune.weight_scores(model),
                                      example_inputs=(xs,), progress=False)
        if isinstance(rep, torch.nn.Module):  # pruned in place; a returned module wins
            model = rep
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in trainable_parameters(model))
    opt = build_optimizer(trainable_parameters(model), "adam", lr=1e-4)
    step = TrainStep(model, opt, loss_fn, amp=args.amp, channels_last=args.channels_last,
                     compile=args.compile, device=device)
    return step, n_params, n_train


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name, args, device):
    x, y = make_batch(name, args.batch, args.size, device)
    arms, out = {}, {}
    for arm in ARMS:
        try:
            arms[arm] = build_arm(name, arm, x, args, device)
        except Exception as e:  # record and go on (pruning may fail for a model)
            out[arm] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    times = {a: [] for a in arms}
    peak = {}
    for a, (step, *_r) in arms.items():  # warm-up (and peak memory) per arm
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            step(x, y, None)
        sync(device)
        peak[a] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    t_end = time.monotonic() + args.budget_s if args.budget_s else None
    for _ in range(args.steps):  # round-robin
        for a, (step, *_r) in arms.items():
            sync(device)
            t0 = time.perf_counter()
            step(x, y, None)
            sync(device)
            times[a].append(time.perf_counter() - t0)
        if t_end and time.monotonic() > t_end:
            break
    for a, (step, n_params, n_train) in arms.items():
        ts = sorted(times[a])
        q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
        out[a] = {"median_ms": 1e3 * statistics.median(ts), "iqr_ms": 1e3 * (q[2] - q[0]),
                  "steps": len(ts), "peak_mem_mb": None if peak[a] is None else peak[a] / 2**20,
                  "params": n_params, "trainable_params": n_train}
    base = out.get("learned", {}).get("median_ms")
    for a in arms:
        out[a]["speedup_vs_learned"] = (base / out[a]["median_ms"]) if base else float("nan")
    return out


def table(results, settings):
    lines = [f"settings: {settings}", "",
             "| model | arm | median ms | IQR ms | speedup vs learned | peak MB | params |",
             "|---|---|---|---|---|---|---|"]
    for m, arms in results.items():
        for a in ARMS:
            r = arms.get(a, {})
            if "error" in r:
                lines.append(f"| {m} | {a} | error: {r['error'][:80]} | | | | |")
            elif r:
                pm = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
                lines.append(f"| {m} | {a} | {r['median_ms']:.1f} | {r['iqr_ms']:.1f} | "
                             f"{r['speedup_vs_learned']:.2f}x | {pm} | {r['params']/1e6:.2f}M |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet50,densenet121,efficientnet_b0,unet_d")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", default="false", help="false | true | reduce-overhead | max-autotune")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=0, help="stop timing a model after this many s")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="out/bench/train_step.json")
    p.add_argument("--smoke", action="store_true", help="tiny: unet_d + resnet18 at 64 px, 3 steps")
    args = p.parse_args(argv)
    args.compile = {"false": False, "true": True}.get(args.compile.lower(), args.compile)
    if args.smoke:
        args.models, args.size, args.batch, args.steps, args.warmup = "unet_d,resnet18", 64, 2, 3, 1
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    settings = {k: getattr(args, k) for k in ("batch", "size", "amp", "channels_last", "compile",
                                              "steps", "warmup", "device", "smoke")}
    settings.update(torch=torch.__version__, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    threads=torch.get_num_threads())
    results = {}
    for m in args.models.split(","):
        results[m] = bench_model(m.strip(), args, device)
        print(f"[{m}] done", file=sys.stderr, flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"settings": settings, "results": results}, f, indent=1,
                  default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
    print(table(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
