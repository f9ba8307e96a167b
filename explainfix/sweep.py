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

__all__ = ["Run", "load_sweep", "expand", "run_status", "run_one", "run_sweep", "collect", "smoke_sweep", "validate_sweep", "SMOKE_BASE"]

EXECUTORS = ("inline", "pool", "debug", "local", "slurm")
SWEEP_KEYS = {"name", "description", "base", "grid", "out", "smoke"}


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
    unknown = sorted(set(sweep) - SWEEP_KEYS)
    if unknown:
        raise ValueError(f"sweep file has unknown key {unknown[0]!r} (keys: {sorted(SWEEP_KEYS)})")
    if not isinstance(sweep["grid"], dict) or not sweep["grid"]:
        raise ValueError("sweep grid must map config keys to lists of values")
    for k, v in sweep["grid"].items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"sweep grid axis {k!r} must be a non-empty list, got {v!r}")
        n = len(k.split(","))
        if n > 1 and any(not isinstance(item, list) or len(item) != n for item in v):
            raise ValueError(f"sweep grid axis {k!r} zips {n} keys: each value must be a list of {n} values")
    sweep.setdefault("base", {})
    return sweep


def validate_sweep(sweep) -> list[Run]:
    """Every run's config checked (:func:`explainfix.train.load_config`) before any run starts.

    Raises:
        ValueError (:class:`~explainfix.train.ConfigError`): naming the first run whose config is wrong.
    """
    from explainfix.train.config import load_config

    sweep = load_sweep(sweep)
    runs = expand(sweep)
    for r in runs:
        try:
            load_config(sweep["base"], list(r.overrides))
        except ValueError as err:
            raise type(err)(f"sweep {sweep['name']!r}, run {r.id}: {err}") from None
    return runs


def _column(key: str) -> str:
    """Column of a grid axis in the collected tables: its last part (``arm.init`` -> ``init``), ``model.name`` -> ``model``."""
    return "model" if key == "model.name" else key.split(".")[-1]


def _part(key: str, value) -> str:
    short = _column(key)
    v = str(value).replace("/", "_").replace(" ", "")
    return f"{short}-{v}"


def _axes(grid: dict) -> list[list[tuple[tuple[str, object], ...]]]:
    """Each grid axis as its list of settings; ``"a,b": [[1, 2], [3, 4]]`` zips keys a and b."""
    axes = []
    for key, values in grid.items():
        keys = [k.strip() for k in key.split(",")]
        if len(keys) == 1:
            axes.append([((key, v),) for v in values])
        else:
            axes.append([tuple(zip(keys, v)) for v in values])
    return axes


def expand(sweep) -> list[Run]:
    """All runs of the grid, in grid order; ids are readable (``init-ghaar_seed-0``) plus a short hash.

    A grid key naming several config keys separated by commas takes lists of that many values
    and varies them together (``"model.name,prune.ratio": [[resnet50, 0.99], [densenet121, 0.95]]``).
    """
    sweep = load_sweep(sweep)
    runs = []
    for combo in itertools.product(*_axes(sweep["grid"])):
        pairs = [kv for setting in combo for kv in setting]
        overrides = tuple(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in pairs)
        digest = hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
        rid = "_".join(_part(k, v) for k, v in pairs) + f"_{digest}"
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
    todo = [r for r in validate_sweep(sweep) if run_status(r) != "done"]
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
        row = {"run": r.id, "arm": res.get("arm"), "model": res.get("model")}
        axes = {}
        for o in r.overrides:
            k, v = o.split("=", 1)
            axes[_column(k)] = yaml.safe_load(v)
        row.update(axes)
        for split in ("best", "last"):
            for k, v in (res.get("test", {}).get(split) or {}).items():
                if isinstance(v, (int, float)):
                    row[f"test_{split}_{k}"] = v
        row["best_epoch"] = res.get("monitor", {}).get("best_epoch")
        row["epochs"] = res.get("epochs")
        for k, v in (res.get("spe") or {}).items():
            if isinstance(v, (int, float)):
                row[f"spe_{k}"] = v
        for k, v in (res.get("params") or {}).items():
            row[f"params_{k}"] = v
        for k, v in (res.get("prune") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[f"prune_{k}"] = v
        rows.append(row)
        m = r.folder / "metrics.csv"
        if m.is_file():
            e = pd.read_csv(m)
            for k in reversed(["run", "arm", "model", *axes]):
                if k not in e.columns:
                    e.insert(0, k, row[k])
            epochs.append(e)
    results = pd.DataFrame(rows)
    epochs_df = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame()
    out = Path(sweep["out"])
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)
    epochs_df.to_csv(out / "epochs.csv", index=False)
    return results, epochs_df


#: what a smoke run changes in every sweep's base: a tiny U-NetD on synthetic masks, 3 epochs of 3 steps
SMOKE_BASE = {"data": {"source": "synthetic:segment", "image_size": 32}, "model": {"name": "unet_d"},
              "epochs": 3, "max_steps_per_epoch": 3, "explain": {"enabled": False}}


def _merge(a: dict, b: dict) -> dict:
    """``a`` updated by ``b``, recursively for nested dicts (new dict; inputs unchanged)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def smoke_sweep(sweep, out: str | os.PathLike | None = None) -> dict:
    """The same grid shrunk to minutes on a CPU, 2 seeds.

    The base keeps its arm, prune, optim, schedule and loss settings; data, model, epochs and
    runtime become :data:`SMOKE_BASE`, then the sweep file's optional ``smoke:`` section applies:
    ``smoke.base`` is merged into the base, and each ``smoke.grid`` entry replaces the grid's
    (``null`` drops the axis). Example: a CheXpert sweep smokes on ``{data: {source: synthetic},
    model: {name: small_cnn}}``.
    """
    s = load_sweep(sweep)
    smoke = s.pop("smoke", None) or {}
    kept = {k: v for k, v in s["base"].items() if k not in ("data", "model", "epochs", "max_steps_per_epoch", "runtime")}
    s["base"] = _merge(_merge(kept, SMOKE_BASE), smoke.get("base") or {})
    grid = {k: v for k, v in s["grid"].items() if k != "seed"}  # seeds: always 0 and 1
    for k, v in (smoke.get("grid") or {}).items():
        if v is None:
            grid.pop(k, None)
        else:
            grid[k] = v
    grid["seed"] = [0, 1]
    s["grid"] = grid
    s["name"] = f"{s['name']}-smoke"
    s["out"] = str(out) if out is not None else str(Path(s["out"]).with_name(Path(s["out"]).name + "-smoke"))
    return s
