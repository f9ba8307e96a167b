"""Table M.1: fraction of spatial kernels zeroed vs fraction of parameters ChannelPrune removes.

For each architecture, Eq. 4 saliency of every spatial kernel is summed over synthetic
minibatches (default 15 batches of 4 Gaussian 1x128x128 images with random multi-hot targets
over 5 outputs) of a *random-init* model with its default BatchNorm statistics; then
``explainfix.channelprune`` zeroes the least-salient fraction of spatial kernels, removes every
channel that became dead across the dependency graph and reports parameters and MACs before and
after (MACs at one 1x``size``x``size`` image).

    .venv/bin/python experiments/tableM1_zeroed_vs_pruned.py [--runs resnet50:0.9 ...]
        [--batches 15] [--batch-size 4] [--size 128] [--quick]

The paper's Table M.1 numbers are for models trained on CheXpert (Appendix L), which this
script cannot reproduce without the data; it shows how far the saliency of an untrained model
already concentrates.
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import explainfix as ef  # noqa: E402
from _common import make_parser, parse_with_quick, setup, synthetic_batches, write_table  # noqa: E402

NAME = "tableM1_zeroed_vs_pruned"

#: Table M.1 of the paper (trained models): (model, fraction spatially zeroed) -> fraction pruned
PAPER = {
    ("densenet121", 0.8): 0.58,
    ("densenet121", 0.9): 0.74,
    ("resnet50", 0.9): 0.52,
    ("resnet50", 0.99): 0.79,
    ("resnet50", 0.999): 0.86,
}
DEFAULT_RUNS = (
    "resnet50:0.9", "resnet50:0.99", "resnet50:0.999",
    "densenet121:0.8", "densenet121:0.9",
    "efficientnet_b0:0.85",
)
QUICK_RUNS = ("resnet18:0.9", "resnet18:0.99")
QUICK = {"batches": 2, "batch_size": 2, "size": 64}


def parse_run(text: str) -> tuple[str, float]:
    """``"resnet50:0.99"`` -> ``("resnet50", 0.99)``."""
    name, sep, ratio = text.partition(":")
    try:
        value = float(ratio)
    except ValueError:
        value = float("nan")
    if not sep or not name or not 0 <= value < 1:
        raise SystemExit(f"--runs takes MODEL:RATIO with RATIO in [0, 1) (a fraction), got {text!r}")
    return name, value


def run(runs: list[tuple[str, float]], *, batches: int, batch_size: int, size: int, seed: int,
        progress: bool = False) -> list[dict]:
    """One row per (model, ratio); saliency is computed once per model and shared by its ratios."""
    rows = []
    models = list(dict.fromkeys(name for name, _ in runs))
    example = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed + 1))
    for name in models:
        torch.manual_seed(seed)
        model = ef.create_model(name, in_chans=1, num_classes=5)
        data = synthetic_batches(batches, batch_size, size, seed=seed)
        tic = time.perf_counter()
        scores = ef.spatial_saliency(model, data, progress=progress)
        saliency_s = time.perf_counter() - tic
        for _, ratio in (r for r in runs if r[0] == name):
            pruned = copy.deepcopy(model)
            report = ef.channelprune(pruned, ratio, scores=scores, example_inputs=example, seed=seed, progress=progress)
            macs_kept = report.macs_kept
            rows.append({
                "model": name,
                "zeroed": report.kernels_zeroed_fraction,
                "params_before": report.params_before,
                "params_after": report.params_after,
                "pruned": 1 - report.params_kept,
                "macs_before": report.macs_before,
                "macs_after": report.macs_after,
                "macs_pruned": None if macs_kept is None else 1 - macs_kept,
                "paper_zeroed": ratio if (name, ratio) in PAPER else None,
                "paper_pruned": PAPER.get((name, ratio)),
                "layers_changed": report.layers_changed,
                "max_rel_diff": report.max_rel_diff,
                "saliency_s": saliency_s,
                "prune_s": report.total_seconds,
            })
    return rows


NOTES = """\
`zeroed`: fraction of all spatial kernels zeroed by Eq. 4 saliency (the globally least salient);
`pruned`: fraction of all parameters ChannelPrune removed; `macs_pruned`: fraction of
multiply-accumulates removed (one 1x{size}x{size} image). `max_rel_diff` is the largest relative
difference between the pruned and the zeroed model before FillZero (pruned = zeroed).

**These are random-init (untrained) models**: saliency summed over {batches} synthetic minibatches
of {batch_size} Gaussian 1x{size}x{size} images with random multi-hot targets over 5 outputs,
default (untrained) BatchNorm statistics. The paper's `paper_pruned` values (Table M.1) are for
models trained on CheXpert (Appendix L), so the two columns come from different experiments: trained
saliency may concentrate differently, and the closeness of the numbers is an observation, not a
reproduction of the paper's setting. EfficientNet-b0 has no row in Table M.1 (its 0.85 is the ratio of Fig. K.1b)."""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_parser(NAME, __doc__)
    parser.add_argument("--runs", nargs="+", default=None, metavar="MODEL:RATIO",
                        help=f"models and zeroed fractions (default: {' '.join(DEFAULT_RUNS)})")
    parser.add_argument("--batches", type=int, default=15, help="saliency minibatches (paper setting: 15)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per minibatch (paper setting: 4)")
    parser.add_argument("--size", type=int, default=128, help="image side (default: %(default)s)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parse_with_quick(parser, argv, QUICK)
    out = setup(args)
    runs = [parse_run(r) for r in (args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS))]
    rows = run(runs, batches=args.batches, batch_size=args.batch_size, size=args.size, seed=args.seed,
               progress=args.progress)
    write_table(
        out, NAME, rows,
        title="Table M.1: spatially zeroed vs pruned (random-init models, synthetic saliency)",
        notes=NOTES.format(size=args.size, batches=args.batches, batch_size=args.batch_size),
        settings=vars(args),
    )
    return rows


if __name__ == "__main__":
    main()
