"""Data loading throughput: images per second, 0 vs 2 worker processes side by side.

Generates fixtures of realistic size in a temporary folder, in the exact dataset layouts:
CheXpert-v1.0-small JPEGs (about 390 x 320, grey) and BBBC038v1 PNGs (256 to 520 px, RGBA,
one PNG per nucleus plus an RLE label CSV), then times the paper's pipelines:

* CheXpert train: random 320 x 320 crop, batch 4; eval: full size, zero-padded batches of 4;
* BBBC038v1 train: crop 256, flips, noise, batch 10, masks from per-nucleus PNGs or from the
  RLE CSV; eval: full size, batch 1.

Run: ``python benchmarks/bench_data.py`` (writes ``out/bench/data.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from explainfix.fileio import atomic_write
from explainfix.data import (
    TASKS,
    BBBC038v1,
    CheXpert,
    bbbc038_train_transform,
    chexpert_splits,
    make_loader,
    rle_encode,
)

BBBC_SIZES = [(256, 256), (256, 320), (260, 347), (360, 360), (520, 520)]


def make_chexpert(root: Path, n: int, rng: np.random.Generator) -> Path:
    rows = []
    for k in range(n):
        h, w = int(rng.integers(370, 411)), 320
        rel = f"train/patient{k:05d}/study1/view1_frontal.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        # smooth content + noise: JPEG sizes like real radiographs (~20 kB), not like white noise
        yy, xx = np.mgrid[0:h, 0:w]
        img = 128 + 60 * np.sin(xx / 23.0 + k) * np.cos(yy / 31.0) + rng.normal(0, 8, (h, w))
        Image.fromarray(img.clip(0, 255).astype(np.uint8), "L").save(root / rel, quality=90)
        labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=len(TASKS))
        rows.append({"Path": f"CheXpert-v1.0-small/{rel}", **dict(zip(TASKS, labels))})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    return root


def make_bbbc(root: Path, n: int, nuclei: int, rng: np.random.Generator) -> Path:
    rle_rows = []
    for k in range(n):
        h, w = BBBC_SIZES[k % len(BBBC_SIZES)]
        image_id = f"{k:064x}"
        base = root / "stage1_train" / image_id
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "masks").mkdir(parents=True, exist_ok=True)
        labels = np.zeros((h, w), np.int32)
        yy, xx = np.mgrid[0:h, 0:w]
        for j in range(1, nuclei + 1):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 14)
            labels[((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & (labels == 0)] = j
        grey = np.where(labels > 0, 180, 20) + rng.normal(0, 10, (h, w))
        rgba = np.dstack([grey, grey, grey, np.full((h, w), 255)]).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgba, "RGBA").save(base / "images" / f"{image_id}.png")
        for j in np.unique(labels)[1:]:
            nucleus = labels == j
            Image.fromarray((nucleus * 255).astype(np.uint8), "L").save(base / "masks" / f"n{j:03d}.png")
            rle_rows.append({"ImageId": image_id, "EncodedPixels": rle_encode(nucleus)})
    pd.DataFrame(rle_rows).to_csv(root / "stage1_train_labels.csv", index=False)
    return root


def images_per_second(dataset, batch_size: int, train: bool, workers: int, epochs: int) -> float:
    loader = make_loader(dataset, batch_size, train=train, num_workers=workers, seed=0, pin_memory=False)
    it = iter(loader)
    next(it)  # warm-up: worker start and first batch are not counted
    count, start = 0, time.perf_counter()
    for batch in it:
        count += batch["image"].shape[0]
    for _ in range(epochs - 1):
        for batch in loader:
            count += batch["image"].shape[0]
    elapsed = time.perf_counter() - start
    del it, loader
    return count / elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chexpert-images", type=int, default=120)
    parser.add_argument("--bbbc-images", type=int, default=40)
    parser.add_argument("--nuclei", type=int, default=30, help="nuclei (mask PNGs) per BBBC image")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs=2, default=(0, 2))
    parser.add_argument("--out", type=Path, default=Path("out/bench/data.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        cx = make_chexpert(tmp / "CheXpert-v1.0-small", args.chexpert_images, rng)
        bb = make_bbbc(tmp / "BBBC038v1", args.bbbc_images, args.nuclei, rng)
        print(f"fixtures written in {time.perf_counter() - t0:.1f} s")
        splits = chexpert_splits(cx, train_fraction=0.5)
        cases = [
            ("chexpert train crop320 b4", splits.train, 4, True),
            ("chexpert eval full-size pad b4", CheXpert(cx, "train"), 4, False),
            ("bbbc038 train crop256 b10 (PNG masks)", BBBC038v1(bb, transform=bbbc038_train_transform()), 10, True),
            (
                "bbbc038 train crop256 b10 (RLE csv)",
                BBBC038v1(bb, transform=bbbc038_train_transform(), labels_csv=bb / "stage1_train_labels.csv"),
                10,
                True,
            ),
            ("bbbc038 eval full-size b1 (PNG masks)", BBBC038v1(bb), 1, False),
        ]
        w0, w1 = args.workers
        print(f"{'pipeline':40s} {'workers=' + str(w0):>12s} {'workers=' + str(w1):>12s} {'ratio':>7s}")
        for name, ds, bs, train in cases:
            a = images_per_second(ds, bs, train, w0, args.epochs)
            b = images_per_second(ds, bs, train, w1, args.epochs)
            results.append({"pipeline": name, "images": len(ds), "batch_size": bs,
                            f"images_per_s_workers_{w0}": round(a, 1),
                            f"images_per_s_workers_{w1}": round(b, 1),
                            "ratio": round(b / a, 2)})
            print(f"{name:40s} {a:12.1f} {b:12.1f} {b / a:6.2f}x")
    payload = {
        "benchmark": "data",
        "unit": "images per second (higher is better)",
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "config": {k: (list(v) if isinstance(v, tuple) else (str(v) if isinstance(v, Path) else v)) for k, v in vars(args).items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
