"""``explainfix prune``: ChannelPrune a model and write the pruned checkpoint and a report."""
from __future__ import annotations

import argparse
import json
import os

from ..fileio import atomic_write
from ._common import add_data_arguments, add_model_arguments, data_source, model_from_args, parse_data_spec

HELP = "ChannelPrune a model: zero least-salient spatial kernels, remove dead channels, FillZero"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--ratio", type=float, required=True, help="fraction of spatial kernels to zero, in [0, 1)")
    parser.add_argument("--scores", choices=("weight-magnitude", "saliency"), default="weight-magnitude",
                        help="kernel scores: L1 norm of each kernel, or Eq. 4 saliency on --data")
    add_data_arguments(parser, default="synthetic", image_size=None, purpose="--scores saliency")
    parser.add_argument("--mode", choices=("paper", "exact"), default="paper")
    parser.add_argument("--fill", choices=("fillzero", "reset", "none"), default="fillzero")
    parser.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                        help="C H W (or C L / C D H W) of the example input; default C 224 224 "
                             "(also the size of --data images unless --image-size is given)")
    parser.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of this")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", required=True, help="output folder (model.pt, report.json, report.txt)")


def _write_text(path: str, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import save
    from ..prune import channelprune, default_example_inputs, weight_scores

    if not 0 <= args.ratio < 1:
        raise ValueError(f"--ratio must be in [0, 1) (a fraction, not a percentage), got {args.ratio}")
    if args.scores == "saliency":
        parse_data_spec(args.data)  # an unknown source fails before any work
    model, arch = model_from_args(args)
    model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    if args.input_size:
        p = next(model.parameters())
        example = torch.randn(1, *args.input_size, generator=generator, dtype=p.dtype).to(p.device)
    else:
        example = default_example_inputs(model)
    progress = not args.no_progress
    if args.scores == "saliency":
        loader, target = data_source(args.data, model, batches=args.batches, batch_size=args.batch_size,
                                     image_size=args.image_size or tuple(example.shape[2:]), seed=args.seed)
        report = channelprune(model, args.ratio, loader=loader, target=target, fill=args.fill,
                              mode=args.mode, example_inputs=example, round_to=args.round_to, seed=args.seed,
                              progress=progress)
    else:
        report = channelprune(model, args.ratio, scores=weight_scores(model), fill=args.fill, mode=args.mode,
                              example_inputs=example, round_to=args.round_to, seed=args.seed, progress=progress)
    os.makedirs(args.out, exist_ok=True)
    info = report.to_dict()
    info.update(model=args.model, init=args.init, scores=args.scores, data=args.data)
    save(model, os.path.join(args.out, "model.pt"), meta={"prune_report": info}, arch=arch)
    _write_text(os.path.join(args.out, "report.json"), json.dumps(info, indent=2) + "\n")
    _write_text(os.path.join(args.out, "report.txt"), report.summary() + "\n")
    print(report.summary())
    print(f"wrote {os.path.join(args.out, 'model.pt')}, report.json, report.txt")
    return 0

