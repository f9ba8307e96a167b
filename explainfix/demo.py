"""The main job: fixed and learned U-NetDs trained on a real nuclei image, compared as in the paper.

:func:`run_demo` runs, through :func:`explainfix.train.train` (the same code path as
``explainfix train``), on ``nuclei-demo`` (:mod:`explainfix.data.nuclei_demo`):

1. U-NetD (Table B.1) ``learned`` and spatially fixed with ``ghaar``, ``psine``, ``dct2`` (and,
   in the full run, Psine with the paper-text whitening), same seed and data stream for all;
2. ``guided_steer`` guided by the trained learned model;
3. ChannelPrune of the trained GHaar model, then a short fine-tune at 2x learning rate;
4. ``report.md`` / ``report.json``: held-out Dice per arm (and Otsu's threshold as a
   reference), parameters, seconds per iteration, learning curves, prediction overlays,
   ExplainSteer pictures, the filters, the PruneReport. Every number comes from this run.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from explainfix.fileio import atomic_write

__all__ = ["run_demo", "DemoSettings", "otsu_threshold"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of a demo run (``quick`` for tests: well under a minute)."""

    epochs: int = 30
    finetune_epochs: int = 8
    steps_per_epoch: int | None = None
    crop: int = 128
    lr: float = 0.008
    prune_ratio: float = 0.9
    explain_batches: int = 2
    whitened_psine: bool = True
    batch_size: int = 8

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(epochs=2, finetune_epochs=1, steps_per_epoch=2, crop=64, explain_batches=1, whitened_psine=False,
                   batch_size=4)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut of a histogram that maximises the between-class variance."""
    hist, edges = np.histogram(values.ravel(), bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight = hist.astype(np.float64)
    w0 = np.cumsum(weight)
    w1 = w0[-1] - w0
    m0 = np.cumsum(weight * centers) / np.maximum(w0, 1e-12)
    m1 = (np.sum(weight * centers) - np.cumsum(weight * centers)) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float(np.logical_and(pred, truth).sum())
    return 2 * tp / max(float(pred.sum() + truth.sum()), 1.0)


def _base_config(s: DemoSettings, seed: int) -> dict:
    return {
        "data": {"source": "nuclei-demo", "image_size": s.crop, "batch_size": s.batch_size},
        "model": {"name": "unet_d"},
        "optim": {"name": "adam", "lr": s.lr},
        "schedule": {"name": "cosine"},
        "epochs": s.epochs,
        "max_steps_per_epoch": s.steps_per_epoch,
        "seed": seed,
        "explain": {"batches": s.explain_batches},
    }


def _merge(base: dict, **sections) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in sections.items():
        if isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def _predict(model_file: Path, image: torch.Tensor) -> np.ndarray:
    from explainfix.checkpoint import load

    model = load(model_file, trust=True).eval()
    with torch.no_grad():
        return model(image.unsqueeze(0))[0, 0].numpy()


def run_demo(out: str | Path = "out/demo", *, quick: bool = False, seed: int = 0, progress: bool = True,
             settings: DemoSettings | None = None) -> dict:
    """Train every arm on the nuclei image and write ``report.md`` / ``report.json`` into ``out``.

    Returns:
        The report as a dict (also ``out/report.json``).
    """
    from explainfix.data.nuclei_demo import HELD_OUT_COLUMNS, TRAIN_COLUMNS
    from explainfix.data.training import training_data
    from explainfix.figures import render_filter_figures
    from explainfix.train import train

    s = settings or (DemoSettings.quick() if quick else DemoSettings())
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    data = training_data("nuclei-demo", image_size=s.crop, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs"
    base = _base_config(s, seed)
    started = time.perf_counter()
    arms: dict[str, dict] = {}

    def run(label: str, config: dict) -> dict:
        print(f"== {label}", flush=True)
        result = train(config, runs / _folder(label), overwrite=True, progress=progress)
        arms[label] = result
        return result

    run("learned", base)
    for init in ("ghaar", "psine", "dct2"):
        run(init, _merge(base, arm={"init": init}))
    if s.whitened_psine:
        run("psine (whitened)", _merge(base, arm={"init": "psine", "options": {"normalize": "whiten"}}))
    learned_file = runs / "learned" / "last.pt"
    run("guided_steer", _merge(base, arm={"init": "guided_steer", "guide": str(learned_file)},
                               model={"trust_checkpoint": True}))
    ghaar_file = runs / "ghaar" / "last.pt"
    run(f"ghaar + ChannelPrune {s.prune_ratio}", _merge(
        base, model={"name": str(ghaar_file), "trust_checkpoint": True}, arm={"init": "unchanged"},
        prune={"ratio": s.prune_ratio, "batches": 4}, epochs=s.finetune_epochs))
    files = render_filter_figures(out / "filters", seed=seed)

    # held-out pictures and the Otsu reference
    held = data.test[0] if data.test is not None else None
    image, truth = held["image"], held["target"][0].numpy() > 0.5
    grey = image[0].numpy()
    otsu = _dice(grey > otsu_threshold(grey), truth)
    predictions = {label: _predict(runs / _folder(label) / "last.pt", image) for label in ("learned", "ghaar")}
    _overlay(grey, truth, predictions, out / "overlay.png")
    _curves(arms, runs, out / "learning_curves.png")
    _e0_side_by_side(runs, out / "e0_learned_vs_ghaar.png")
    report = _report(arms, s, data, otsu, time.perf_counter() - started, files, out, TRAIN_COLUMNS, HELD_OUT_COLUMNS)
    with atomic_write(out / "report.json", "w") as f:
        json.dump(report, f, indent=1, default=str)
    with atomic_write(out / "report.md", "w") as f:
        f.write(_markdown(report, out))
    return report


def _folder(label: str) -> str:
    return label.replace(" ", "_").replace("(", "").replace(")", "")


def _overlay(grey: np.ndarray, truth: np.ndarray, predictions: dict[str, np.ndarray], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.2 * (2 + len(predictions)), 6.5), layout="constrained")
    axes = fig.subplots(1, 2 + len(predictions))
    axes[0].imshow(grey, cmap="gray")
    axes[0].set_title("held-out input")
    axes[1].imshow(truth, cmap="gray")
    axes[1].set_title("ground truth")
    for ax, (label, logits) in zip(axes[2:], predictions.items()):
        pred = logits > 0
        rgb = np.zeros((*pred.shape, 3))
        rgb[..., 0] = pred & ~truth      # false positives red
        rgb[..., 1] = pred & truth       # true positives green
        rgb[..., 2] = ~pred & truth      # false negatives blue
        ax.imshow(rgb)
        ax.set_title(f"{label}\nDice {_dice(pred, truth):.3f}")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle("held-out region: green TP, red FP, blue FN")
    fig.savefig(path, dpi=110)


def _curves(arms: dict[str, dict], runs: Path, path: Path) -> None:
    import csv

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for label in arms:
        with open(runs / _folder(label) / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        ax.plot([int(r["epoch"]) for r in rows], [float(r["val_dice"]) for r in rows], label=label, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out Dice (logit > 0)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("U-NetD on one DSB 2018 image: learning curves")
    fig.savefig(path, dpi=110)


def _e0_side_by_side(runs: Path, path: Path) -> None:
    """e^(0) with saliency of the trained learned and GHaar models on one axis (Fig. 12b style)."""
    from matplotlib.figure import Figure

    from explainfix.explain.plot import plot_spectra_lines

    curves = {}
    for label in ("learned", "ghaar"):
        spectra = runs / label / "explain" / "spectra.json"
        if spectra.is_file():
            data = json.loads(spectra.read_text())["with_saliency"]
            curves[label] = torch.tensor(_global_e0(data))
    if not curves:
        return
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    plot_spectra_lines(curves, (3, 3), ax=ax, title="$e^{(0)}$ with saliency, 3x3 kernels (trained)")
    fig.savefig(path, dpi=110)


def _global_e0(result: dict) -> list[float]:
    """Sum of the layers' e^(0) in a stored ExplainSteer result (3x3 layers)."""
    total = None
    for layer in result["layers"]:
        e0 = layer.get("e0")
        if e0 is None or len(e0) != 3:
            continue
        total = np.asarray(e0, dtype=float) if total is None else total + np.asarray(e0, dtype=float)
    return [] if total is None else total.tolist()


def _report(arms, s, data, otsu, seconds, filters, out, train_cols, held_cols) -> dict:
    rows = []
    for label, r in arms.items():
        steps = r["val_last"]["images"] / s.batch_size if r.get("val_last") else None
        prune = r.get("prune")
        rows.append({
            "arm": label,
            "held_out_dice_last": r["test"]["last"]["dice"],
            "held_out_dice_best": r["test"]["best"]["dice"],
            "held_out_mcc_last": r["test"]["last"]["mcc"],
            "trainable_params": r["params"]["trainable"],
            "spatial_params_fixed": r["params"]["spatial_fixed"],
            "params": r["params"]["total"],
            "params_before_pruning": prune["params_before"] if prune else None,
            "seconds_per_iteration": r["spe"]["mean_compute_s"] / steps if steps else None,
            "epochs": r["epochs"],
            "folder": str(Path("runs") / _folder(label)),
        })
    return {
        "data": {"description": data.description, "warnings": data.warnings,
                 "training_pixels": f"rows 0-511, columns {train_cols[0]}-{train_cols[1] - 1}",
                 "held_out_pixels": f"rows 0-511, columns {held_cols[0]}-{held_cols[1] - 1}"},
        "settings": s.__dict__,
        "arms": rows,
        "otsu_dice": otsu,
        "prune_report": next((arms[k].get("prune") for k in arms if "ChannelPrune" in k), None),
        "wall_seconds": seconds,
        "filters": [str(Path(p).relative_to(out)) for p in filters],
    }


def _markdown(report: dict, out: Path) -> str:
    d = report["data"]
    lines = ["# ExplainFix demo: fixed vs learned U-NetD on a real nuclei image", ""]
    for warning in d["warnings"]:
        lines += [f"> **WARNING**: {warning}", ""]
    lines += [f"Data: {d['description']}. Training pixels: {d['training_pixels']}; held-out pixels: "
              f"{d['held_out_pixels']} (a 32-column gap between them). Every number below was computed in this "
              f"run ({report['wall_seconds']:.0f} s).", "",
              "| arm | held-out Dice (last epoch) | Dice (best epoch) | MCC | trainable params | spatial params fixed "
              "| params (after pruning) | s / iteration |", "|---|---|---|---|---|---|---|---|"]
    for r in report["arms"]:
        params = f"{r['params']:,}" + (f" (from {r['params_before_pruning']:,})" if r["params_before_pruning"] else "")
        spi = f"{r['seconds_per_iteration']:.3f}" if r["seconds_per_iteration"] else "-"
        lines.append(f"| {r['arm']} | {r['held_out_dice_last']:.3f} | {r['held_out_dice_best']:.3f} | "
                     f"{r['held_out_mcc_last']:.3f} | {r['trainable_params']:,} | {r['spatial_params_fixed']:,} | "
                     f"{params} | {spi} |")
    lines.append(f"| Otsu threshold (reference, no learning) | {report['otsu_dice']:.3f} | | | | | | |")
    lines += ["", "Dice is pooled over the held-out pixels at logit > 0. 'Best epoch' is chosen on the same held-out "
              "region, so it is optimistic; the last epoch is the honest number.", "",
              "## Learning curves", "", "![learning curves](learning_curves.png)", "",
              "## Held-out predictions", "", "![overlay](overlay.png)", "",
              "## ExplainSteer of the trained models (with saliency)", "",
              "| learned | GHaar (fixed) |", "|---|---|",
              "| ![](runs/learned/explain/ed_heatmap_saliency.png) | ![](runs/ghaar/explain/ed_heatmap_saliency.png) |", "",
              "![e0](e0_learned_vs_ghaar.png)", "", "## Filters of each init", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in report["filters"] if p.endswith(".png")]
    if report["prune_report"]:
        p = report["prune_report"]
        lines += ["", "## ChannelPrune of the GHaar model", "",
                  f"Zeroed {p.get('kernels_zeroed', '?')} of {p.get('kernels_total', '?')} spatial kernels; parameters "
                  f"{p.get('params_before', '?'):,} → {p.get('params_after', '?'):,}. Full report: "
                  "`runs/*ChannelPrune*/prune_report.txt`."]
    return "\n".join(lines) + "\n"
