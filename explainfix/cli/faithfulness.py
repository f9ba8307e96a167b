"""``explainfix faithfulness``: deletion curves - is the saliency meaningful on this model and data?"""
from __future__ import annotations

import argparse
import json

from ._common import add_model_arguments, check_out_folder, model_from_args

HELP = ("deletion curves: the held-out metric as the most / least / random salient spatial kernels are zeroed, "
        "and the area between them")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from explainfix.explain.faithfulness import DEFAULT_FRACTIONS

    add_model_arguments(parser)
    parser.add_argument("--data", required=True, metavar="SOURCE",
                        help="a training data source (as in `explainfix train`): nuclei-demo, synthetic, "
                             "chexpert:ROOT, bbbc038:ROOT, folder:DIR, csv:FILE")
    parser.add_argument("--split", default="test", choices=["test", "val"], help="images the metric is measured on")
    parser.add_argument("--metric", default=None, help="auc, dice, mcc, accuracy, loss, ... (default: the task's)")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                        help="fractions of spatial kernels zeroed, increasing in [0, 1)")
    parser.add_argument("--repeats", type=int, default=3, help="random orders averaged (default 3)")
    parser.add_argument("--batches", type=int, default=15, metavar="M", help="training minibatches for the saliency")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=None, help="crop side (default: the data source's)")
    parser.add_argument("--eval-images", type=int, default=None, help="measure on a fixed subset of this many images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, help="output folder: deletion.json, deletion.png")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from explainfix.data.training import training_data
    from explainfix.fileio import atomic_write
    from explainfix.train.faithfulness import data_deletion_curve

    if args.repeats < 1 or args.batches < 1 or args.batch_size < 1:
        raise ValueError("--repeats, --batches and --batch-size must be >= 1")
    out = check_out_folder(args.out)
    data = training_data(args.data, image_size=args.image_size, seed=args.seed)
    model, _ = model_from_args(args)
    model = model.to(args.device)
    curve = data_deletion_curve(model, data, metric=args.metric, split=args.split, eval_images=args.eval_images,
                                saliency_batches=args.batches, batch_size=args.batch_size, fractions=args.fractions,
                                repeats=args.repeats, seed=args.seed, progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "deletion.json", "w") as f:
        json.dump({"model": args.model, "data": args.data, **curve.to_dict()}, f, indent=1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    curve.plot(axes[0])
    curve.plot(axes[1], log=True, title="log-scaled fraction")
    with atomic_write(out / "deletion.png", "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    print(curve.summary())
    print(f"wrote {out / 'deletion.json'}, {out / 'deletion.png'}")
    return 0
