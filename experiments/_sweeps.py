"""Shared plumbing of the training-figure scripts: run (or resume) a sweep, collect its tables.

Every training figure is ``python experiments/<script>.py [--smoke]``: the script loads its sweep
file from ``experiments/sweeps/``, runs the runs that have not finished (``explainfix.sweep``:
finished runs are skipped, killed ones resumed; ``--executor slurm --jobs N`` for a cluster),
collects ``results.csv`` / ``epochs.csv`` and draws from them. ``--smoke`` shrinks the same grid to
tiny models on synthetic data with 2 seeds (:func:`explainfix.sweep.smoke_sweep`), minutes on a CPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from explainfix.sweep import EXECUTORS, collect, load_sweep, run_sweep, smoke_sweep

from _common import make_parser, setup

SWEEPS = Path(__file__).resolve().parent / "sweeps"

#: what users bring for the real (non-smoke) sweeps, by data source
DATA_HINTS = {
    "bbbc038": "BBBC038v1 (Kaggle DSB 2018): unzip stage1_train, stage1_test (+ solution CSV) and stage2_test "
               "into the folder, e.g. data/BBBC038v1/stage1_train/<id>/{images,masks}/",
    "chexpert": "CheXpert-v1.0-small (Stanford AIMI): the folder holding train.csv, valid.csv, train/ and valid/, "
                "e.g. data/CheXpert-v1.0-small/",
}


def sweep_parser(name: str, description: str, sweep: str) -> argparse.ArgumentParser:
    """:func:`make_parser` plus ``--sweep``, ``--smoke``, ``--runs``, ``--executor``, ``--jobs``, ``--no-run``."""
    parser = make_parser(name, description)
    parser.add_argument("--sweep", type=Path, default=SWEEPS / sweep, help="sweep file (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="the same grid shrunk: tiny models, synthetic data, 2 seeds")
    parser.add_argument("--runs", type=Path, default=None, help="folder of the sweep's runs (default: the sweep file's out)")
    parser.add_argument("--executor", choices=EXECUTORS, default="inline", help="inline, pool or submitit debug/local/slurm")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (pool, slurm array)")
    parser.add_argument("--no-run", action="store_true", help="only draw from the runs that have finished")
    return parser


def _check_data(sweep: dict) -> None:
    source = str((sweep["base"].get("data") or {}).get("source", ""))
    name, _, root = source.partition(":")
    if name in DATA_HINTS and root and not Path(root).exists():
        raise SystemExit(f"sweep {sweep['name']!r} needs {name} data at {root!r}, which does not exist.\n"
                         f"Bring: {DATA_HINTS[name]}\nor set another path in {sweep.get('_file', 'the sweep file')} "
                         "(base.data.source), or try the figure in miniature with --smoke.")


def run_and_collect(args: argparse.Namespace) -> tuple[dict, pd.DataFrame, pd.DataFrame, Path]:
    """Run the unfinished runs of ``--sweep`` (smoke-shrunk with ``--smoke``); ``(sweep, results, epochs, out)``."""
    if args.quick:
        args.smoke = True
    out = setup(args)
    sweep = load_sweep(args.sweep)
    if args.smoke:
        sweep = smoke_sweep(sweep)
    if args.runs is not None:
        sweep["out"] = str(args.runs)
    if not args.no_run:
        _check_data(dict(sweep, _file=str(args.sweep)))
        done = run_sweep(sweep, jobs=args.jobs, executor=args.executor)
        print(f"sweep {sweep['name']}: ran {len(done)} runs in {sweep['out']}")
    results, epochs = collect(sweep)
    if results.empty:
        raise SystemExit(f"sweep {sweep['name']!r} has no finished run in {sweep['out']}")
    return sweep, results, epochs, out


def monitored(results: pd.DataFrame, epochs: pd.DataFrame, split: str = "val") -> str:
    """The sweep's monitored metric as a column of ``epochs`` for ``split`` (``val_dice``, ``test_auc``, ...)."""
    for metric in ("dice", "auc", "accuracy"):
        if f"val_{metric}" in epochs.columns:
            return f"{split}_{metric}"
    raise SystemExit(f"no val_dice / val_auc / val_accuracy column in the sweep's epochs ({list(epochs.columns)})")


def settings(args: argparse.Namespace, sweep: dict) -> dict:
    """What a figure's JSON records about how it was made."""
    return {"sweep": str(args.sweep), "smoke": bool(args.smoke), "runs": sweep["out"], "grid": sweep["grid"],
            "base": sweep["base"]}


def in_grid_order(df: pd.DataFrame, results: pd.DataFrame, by: str = "arm") -> pd.DataFrame:
    """``df`` with its ``by`` groups in the order the sweep's grid lists them (learned first)."""
    order = {v: i for i, v in enumerate(dict.fromkeys(results[by]))}
    return df.sort_values(by, key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
