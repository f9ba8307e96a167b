"""``explainfix sweep``: run a sweep file's grid of training runs and collect results.csv / epochs.csv."""
from __future__ import annotations

import argparse

HELP = "run a sweep (YAML grid of training runs): finished runs skipped, killed runs resumed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from explainfix.sweep import EXECUTORS

    parser.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file {name, base, grid, out}")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (pool / slurm array)")
    parser.add_argument("--executor", choices=EXECUTORS, default="inline", help="inline, pool, or submitit debug/local/slurm")
    parser.add_argument("--smoke", action="store_true", help="shrink: unet_d 32 px synthetic:segment, 3 epochs x 3 steps, 2 seeds")


def run(args: argparse.Namespace) -> int:
    from explainfix.sweep import collect, load_sweep, run_sweep, smoke_sweep

    sweep = load_sweep(args.sweep)
    if args.smoke:
        sweep = smoke_sweep(sweep)
    done = run_sweep(sweep, jobs=args.jobs, executor=args.executor)
    results, _ = collect(sweep)
    print(f"ran {len(done)} runs; {len(results)} finished; tables in {sweep['out']}/results.csv, epochs.csv")
    return 0
