"""Sweeps: a YAML grid of ``explainfix train`` runs with stable ids, skip/resume, and collected tables.

Sweep file::

    name: fig8
    base: {run config}
    grid: {"arm.init": [learned, ghaar], seed: [0, 1]}
    out: runs/fig8
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

__all__ = ["Run", "load_sweep", "expand", "run_status", "run_one", "run_sweep", "collect", "smoke_sweep"]

EXECUTORS = ("inline", "pool", "debug", "local", "slurm")


@dataclass(frozen=True)
class Run:
    id: str
    overrides: tuple[str, ...]
    folder: Path


def load_sweep(source) -> dict:
    if isinstance(source, dict):
        sweep = copy.deepcopy(source)
    else:
        sweep = yaml.safe_load(Path(source).read_text())
    for key in ("name", "grid", "out"):
        if key not in sweep:
            raise ValueError(f"sweep file lacks {key!r}")
    sweep.setdefault("base", {})
    return sweep


def _part(key: str, value) -> str:
    short = key.split(".")[-1]
    v = str(value).replace("/", "_").replace(" ", "")
    return f"{short}-{v}"


def expand(sweep) -> list[Run]:
    """All runs of the grid, in grid order; ids are readable (``init-ghaar_seed-0``) plus a short hash."""
    sweep = load_sweep(sweep)
    keys = list(sweep["grid"])
    runs = []
    for values in itertools.product(*(sweep["grid"][k] for k in keys)):
        overrides = tuple(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in zip(keys, values))
        digest = hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
        rid = "_".join(_part(k, v) for k, v in zip(keys, values)) + f"_{digest}"
        runs.append(Run(rid, overrides, Path(sweep["out"]) / rid))
    return runs


def run_status(run: Run) -> str:
    """``done`` (result.json), ``killed`` (checkpoint.pt, no result.json) or ``new``."""
    if (run.folder / "result.json").is_file():
        return "done"
    if (run.folder / "checkpoint.pt").is_file():
        return "killed"
    return "new"


def run_one(base: dict, run: Run) -> dict:
    """Train one run (resuming it if killed); returns its result."""
    from explainfix.train import train

    status = run_status(run)
    if status == "done":
        return json.loads((run.folder / "result.json").read_text())
    return train(base, run.folder, overrides=list(run.overrides), resume=status == "killed", progress=False)


def run_sweep(sweep, jobs: int = 1, executor: str = "inline", slurm: dict | None = None) -> list[str]:
    """Run every unfinished run of ``sweep``; returns the ids that were run (finished ones are skipped)."""
    sweep = load_sweep(sweep)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    todo = [r for r in expand(sweep) if run_status(r) != "done"]
    base = sweep["base"]
    if not todo:
        return []
    if executor == "inline":
        for r in todo:
            run_one(base, r)
    elif executor == "pool":
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            for f in [pool.submit(run_one, base, r) for r in todo]:
                f.result()
    else:
        import submitit

        folder = Path(sweep["out"]) / "_submitit"
        ex = submitit.AutoExecutor(folder=str(folder), cluster=None if executor == "slurm" else executor)
        params = dict(slurm or {})
        if executor == "slurm":
            params.setdefault("slurm_array_parallelism", max(1, jobs))
        if params:
            ex.update_parameters(**params)
        if executor == "debug":
            jobs_ = [ex.submit(run_one, base, r) for r in todo]
        else:
            jobs_ = ex.map_array(run_one, [base] * len(todo), todo)
        for j in jobs_:
            j.result()
    return [r.id for r in todo]


def collect(sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, epochs)`` of the finished runs, also written as results.csv / epochs.csv in the sweep folder."""
    sweep = load_sweep(sweep)
    rows, epochs = [], []
    for r in expand(sweep):
        if run_status(r) != "done":
            continue
        res = json.loads((r.folder / "result.json").read_text())
        row = {"run": r.id}
        for o in r.overrides:
            k, v = o.split("=", 1)
            row[k.split(".")[-1]] = yaml.safe_load(v)
        for split in ("best", "last"):
            for k, v in (res.get("test", {}).get(split) or {}).items():
                if isinstance(v, (int, float)):
                    row[f"test_{split}_{k}"] = v
        row["best_epoch"] = res.get("monitor", {}).get("best_epoch")
        row["epochs"] = res.get("epochs")
        for k, v in (res.get("spe") or {}).items():
            row[f"spe_{k}"] = v
        for k, v in (res.get("params") or {}).items():
            row[f"params_{k}"] = v
        rows.append(row)
        m = r.folder / "metrics.csv"
        if m.is_file():
            e = pd.read_csv(m)
            for k, v in row.items():
                if k in ("run",) or k in [o.split("=", 1)[0].split(".")[-1] for o in r.overrides]:
                    e.insert(0, k, v)
            epochs.append(e)
    results = pd.DataFrame(rows)
    epochs_df = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame()
    out = Path(sweep["out"])
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)
    epochs_df.to_csv(out / "epochs.csv", index=False)
    return results, epochs_df


def smoke_sweep(sweep, out: str | os.PathLike | None = None) -> dict:
    """The same grid shrunk: unet_d, 32 px synthetic:segment, 3 epochs x 3 steps, 2 seeds."""
    s = load_sweep(sweep)
    s["base"] = {"data": {"source": "synthetic:segment", "image_size": 32}, "model": {"name": "unet_d"},
                 "epochs": 3, "max_steps_per_epoch": 3, "explain": {"enabled": False},
                 "optim": (s["base"].get("optim") or {})}
    if not s["base"]["optim"]:
        del s["base"]["optim"]
    s["grid"] = {k: v for k, v in s["grid"].items() if k != "seed"}
    s["grid"]["seed"] = [0, 1]
    s["name"] = f"{s['name']}-smoke"
    s["out"] = str(out) if out is not None else str(Path(s["out"]).with_name(Path(s["out"]).name + "-smoke"))
    return s
