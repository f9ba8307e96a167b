"""``explainfix prune``: ChannelPrune a model and write the pruned checkpoint and a report.

``--out`` is checked to be writable before any work; ``model.pt``, ``report.json`` and
``report.txt`` are written as one set (all staged first, then renamed in with Ctrl-C held off),
so a new model never stands beside an old report. ``--data`` is only read with
``--scores saliency`` (an error otherwise).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

from ..fileio import atomic_write, write_file_set
from ._common import (
    add_data_arguments,
    add_model_arguments,
    check_out_folder,
    data_source,
    model_from_args,
    parse_data_spec,
)

HELP = "ChannelPrune a model: zero least-salient spatial kernels, remove dead channels, FillZero"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--ratio", type=float, required=True, help="fraction of spatial kernels to zero, in [0, 1)")
    parser.add_argument("--scores", choices=("weight-magnitude", "saliency"), default="weight-magnitude",
                        help="kernel scores: L1 norm of each kernel, or Eq. 4 saliency on --data")
    add_data_arguments(parser, default=None, image_size=None,
                       purpose="--scores saliency (default synthetic; an error with other --scores)")
    parser.add_argument("--mode", choices=("paper", "exact"), default="paper")
    parser.add_argument("--fill", choices=("fillzero", "reset", "none"), default="fillzero")
    parser.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                        help="C H W (or C L / C D H W) of the example input; default C 224 224 "
                             "(also the size of --data images unless --image-size is given)")
    parser.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of this")
    parser.add_argument("--latency", action="store_true",
                        help="also time the model before and after pruning, side by side, at batch 1 and "
                             "--latency-batch (added to the report; warns when the pruned model is slower)")
    parser.add_argument("--latency-batch", type=int, default=8, metavar="N",
                        help="second batch size of --latency (default 8)")
    parser.add_argument("--latency-repeats", type=int, default=10, metavar="R",
                        help="timed forward passes per model and batch size of --latency (default 10)")
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
    if args.latency and (args.latency_batch < 1 or args.latency_repeats < 1):
        raise ValueError("--latency-batch and --latency-repeats must be positive")
    if args.input_size is not None and (not 2 <= len(args.input_size) <= 4 or min(args.input_size) < 1):
        raise ValueError(f"--input-size must be C H W (or C L / C D H W) of positive sizes, got {args.input_size}")
    if args.scores == "saliency":
        args.data = args.data or "synthetic"
        parse_data_spec(args.data)  # an unknown source fails before any work
    elif args.data is not None:
        raise ValueError(f"--data {args.data} is only used with --scores saliency; --scores {args.scores} "
                         "reads no data (add --scores saliency, or drop --data)")
    check_out_folder(args.out)
    model, arch = model_from_args(args)
    model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    if args.input_size:
        p = next(model.parameters())
        example = torch.randn(1, *args.input_size, generator=generator, dtype=p.dtype).to(p.device)
    else:
        example = default_example_inputs(model)
    progress = not args.no_progress
    unpruned = copy.deepcopy(model) if args.latency else None
    if args.scores == "saliency":
        loader, target = data_source(args.data, model, batches=args.batches, batch_size=args.batch_size,
                                     image_size=args.image_size or tuple(example.shape[2:]), seed=args.seed)
        report = channelprune(model, args.ratio, loader=loader, target=target, fill=args.fill,
                              mode=args.mode, example_inputs=example, round_to=args.round_to, seed=args.seed,
                              progress=progress)
    else:
        report = channelprune(model, args.ratio, scores=weight_scores(model), fill=args.fill, mode=args.mode,
                              example_inputs=example, round_to=args.round_to, seed=args.seed, progress=progress)
    info = report.to_dict()
    info.update(model=args.model, init=args.init, scores=args.scores, data=args.data)
    text, warning = report.summary(), None
    if unpruned is not None:  # FLOPs are not latency: measure both, interleaved
        from ..prune import latency

        timing = latency.compare_latency(unpruned, model, example, batch_sizes=(1, args.latency_batch),
                                         repeats=args.latency_repeats)
        warning = timing.warning()
        info["latency"] = timing.to_dict()
        text += "\n" + timing.summary()
    # one set: a reader (or a Ctrl-C) never leaves a new model.pt beside an old report.json
    with write_file_set(args.out, ["model.pt", "report.json", "report.txt"]) as staged:
        save(model, staged["model.pt"], meta={"prune_report": info}, arch=arch)
        _write_text(staged["report.json"], json.dumps(info, indent=2) + "\n")
        _write_text(staged["report.txt"], text + ("\n" + warning if warning else "") + "\n")
    print(text)
    if warning:
        print(warning, file=sys.stderr)
    print(f"wrote {os.path.join(args.out, 'model.pt')}, report.json, report.txt")
    return 0

