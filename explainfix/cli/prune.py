"""``explainfix prune``: ChannelPrune a model and write the pruned checkpoint and a report."""
from __future__ import annotations

import argparse
import json
import os
import tempfile

HELP = "ChannelPrune a model: zero least-salient spatial kernels, remove dead channels, FillZero"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered model name (explainfix.list_models()) or checkpoint file")
    parser.add_argument("--ratio", type=float, required=True, help="fraction of spatial kernels to zero, in [0, 1)")
    parser.add_argument("--init", default=None, help="fixed initialization to apply first (explainfix.list_inits())")
    parser.add_argument("--scores", choices=("weight-magnitude", "saliency"), default="weight-magnitude",
                        help="kernel scores: L1 norm of each kernel, or Eq. 4 saliency on --data")
    parser.add_argument("--data", choices=("synthetic",), default="synthetic",
                        help="data for --scores saliency (synthetic: random images, every output as target)")
    parser.add_argument("--batches", type=int, default=15, help="minibatches of 4 for --scores saliency")
    parser.add_argument("--mode", choices=("paper", "exact"), default="paper")
    parser.add_argument("--fill", choices=("fillzero", "reset", "none"), default="fillzero")
    parser.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                        help="C H W (or C L / C D H W) of the example input; default C 224 224")
    parser.add_argument("--in-chans", type=int, default=None, help="input channels of a model built by name")
    parser.add_argument("--num-classes", type=int, default=None, help="outputs of a model built by name")
    parser.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", required=True, help="output folder (model.pt, report.json, report.txt)")


def build_model(name: str, in_chans: int | None, num_classes: int | None):
    """(model, arch) from a checkpoint path or a registered / torchvision model name."""
    if os.path.isfile(name):
        from ..checkpoint import load

        return load(name), None
    kwargs = {k: v for k, v in (("in_chans", in_chans), ("num_classes", num_classes)) if v is not None}
    try:
        from ..models import create_model
    except ImportError:  # pragma: no cover - models package missing
        create_model = None
    if create_model is not None:
        try:
            return create_model(name, **kwargs), {"name": name, "kwargs": kwargs}
        except ValueError as err:
            if "unknown model" not in str(err):
                raise
            first_error = err
    else:
        first_error = ValueError(f"unknown model {name!r}")
    import torchvision

    try:
        tv_kwargs = {"num_classes": num_classes} if num_classes is not None else {}
        model = torchvision.models.get_model(name, weights=None, **tv_kwargs)
    except ValueError:
        raise first_error from None
    if in_chans not in (None, 3):
        raise ValueError(f"--in-chans needs a registered model; {name!r} comes from torchvision with 3 channels")
    return model, None


def _write_text(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import save
    from ..prune import channelprune, default_example_inputs, weight_scores

    if not 0 <= args.ratio < 1:
        raise ValueError(f"--ratio must be in [0, 1) (a fraction, not a percentage), got {args.ratio}")
    model, arch = build_model(args.model, args.in_chans, args.num_classes)
    if args.init:
        from ..init import initialize

        initialize(model, args.init, seed=args.seed)
    model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    if args.input_size:
        p = next(model.parameters())
        example = torch.randn(1, *args.input_size, generator=generator, dtype=p.dtype).to(p.device)
    else:
        example = default_example_inputs(model)
    progress = not args.no_progress
    if args.scores == "saliency":
        batches = [torch.randn(4, *example.shape[1:], generator=generator, dtype=example.dtype)
                   for _ in range(max(1, args.batches))]
        report = channelprune(model, args.ratio, loader=batches, target=_all_outputs, fill=args.fill,
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


def _all_outputs(output, batch):
    """Saliency target for synthetic data: every output counts (y = 1)."""
    return output.new_ones(output.shape)
