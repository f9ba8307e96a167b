"""``explainfix explain``: ExplainSteer pictures and spectra of a model.

Writes to ``--out``:

* ``spectra.json`` - every layer's spectra without saliency (and with saliency
  when ``--data`` is given), plus per-kernel-shape global ``e1`` / ``e0``;
* ``ed_heatmap.<fmt>`` - the ``e^(d)`` heatmaps without saliency (one panel per
  kernel shape), ``ed_heatmap_saliency.<fmt>`` with saliency;
* ``e0.<fmt>`` - global ``e^(0)`` per square kernel shape (with and without saliency).

Examples::

    explainfix explain --model resnet50 --init ghaar --out out/explain
    explainfix explain --model resnet50 --data synthetic --batches 15 --out out/explain
    explainfix explain --model path/to/checkpoint.pt --data synthetic --format png pdf --out out/explain
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

HELP = "ExplainSteer: DCT-II energy spectra of a model's spatial filters, as pictures and JSON"

DataSource = Callable[[argparse.Namespace, str, nn.Module], tuple[Iterable, Callable | None]]


def _first_conv(model: nn.Module) -> nn.modules.conv._ConvNd:
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module
    raise ValueError(f"{type(model).__name__} has no convolution; cannot infer the input shape for --data")


def _synthetic(args: argparse.Namespace, option: str, model: nn.Module):
    """Random images of ``--image-size`` and random multi-hot targets (no dataset needed)."""
    if option:
        raise ValueError(f"--data synthetic takes no option, got {option!r}")
    conv = _first_conv(model)
    in_channels = conv.in_channels
    d = len(conv.kernel_size)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, in_channels, *([args.image_size] * d))
    batches = [torch.rand(shape, generator=generator) for _ in range(args.batches)]

    def random_multi_hot(output: torch.Tensor, batch) -> torch.Tensor:
        return (torch.rand(output.shape, generator=generator) < 0.5).to(output.dtype)

    return batches, random_multi_hot


#: ``--data NAME[:OPTION]`` -> function(args, option, model) -> (loader, target or None).
#: A loader yielding ``(x, y)`` pairs returns target None; see ``explainfix.spatial_saliency``.
DATA_SOURCES: dict[str, DataSource] = {"synthetic": _synthetic}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a checkpoint file, or a model name (explainfix.create_model)")
    parser.add_argument("--init", default=None, metavar="METHOD",
                        help="re-initialize (and fix) the spatial filters first, e.g. dct2, ghaar, psine; with --data, BatchNorm statistics are then re-estimated from that data")
    parser.add_argument("--seed", type=int, default=0, help="seed of --init and of synthetic data (default 0)")
    parser.add_argument("--in-channels", type=int, default=None, help="input channels of a named model")
    parser.add_argument("--num-classes", type=int, default=None, help="outputs of a named model")
    parser.add_argument("--data", default=None, metavar="SOURCE",
                        help="data for saliency-weighted spectra: " + ", ".join(sorted(DATA_SOURCES))
                        + " (NAME[:OPTION]); without it only uniform spectra are computed")
    parser.add_argument("--batches", type=int, default=15, metavar="M", help="minibatches for saliency (default 15)")
    parser.add_argument("--batch-size", type=int, default=4, help="synthetic minibatch size (default 4)")
    parser.add_argument("--image-size", type=int, default=64, help="synthetic image size (default 64)")
    parser.add_argument("--saliency", default="grad_x_weight", choices=["grad_x_weight", "grad"],
                        help="saliency method (default grad_x_weight, Eq. 4)")
    parser.add_argument("--skip", action="append", default=[], metavar="LAYER",
                        help="leave this layer out of the heatmaps (repeatable), e.g. features.conv0")
    parser.add_argument("--log", action="store_true", help="logarithmic colour scale in the heatmaps")
    parser.add_argument("--device", default="cpu", help="device to run the model on (default cpu)")
    parser.add_argument("--format", nargs="+", default=["png"], choices=["png", "pdf", "svg"],
                        help="picture formats (default png)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _from_checkpoint(path: Path) -> nn.Module:
    from explainfix.checkpoint import load

    model = load(path)
    if not isinstance(model, nn.Module):
        raise RuntimeError(f"{path} did not load to a model (got {type(model).__name__})")
    return model


def _from_name(name: str, in_channels: int | None, num_classes: int | None) -> nn.Module:
    from explainfix.models import create_model

    return create_model(name, in_chans=in_channels, num_classes=num_classes)


def resolve_model(spec: str, in_channels: int | None = None, num_classes: int | None = None) -> nn.Module:
    """A model from a checkpoint path (if the file exists) or a registered name."""
    path = Path(spec)
    if path.is_file():
        return _from_checkpoint(path)
    if os.sep in spec or spec.endswith((".pt", ".pth", ".ckpt")):
        raise FileNotFoundError(f"no checkpoint file at {spec}")
    return _from_name(spec, in_channels, num_classes)


def _data_source(spec: str) -> tuple[DataSource, str]:
    """``NAME[:OPTION]`` -> (registered data source, option)."""
    name, _, option = spec.partition(":")
    source = DATA_SOURCES.get(name)
    if source is None:
        raise ValueError(f"unknown --data source {name!r}; choose one of {sorted(DATA_SOURCES)}")
    return source, option


def _write_json(data: dict, path: Path) -> None:
    from explainfix.explain.plot import _umask

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    from explainfix.explain import explainsteer
    from explainfix.explain.explainsteer import shape_label
    from explainfix.explain.plot import plot_explainsteer, plot_spectra_lines, save_figure

    if args.batches < 1 or args.batch_size < 1 or args.image_size < 1:
        raise ValueError("--batches, --batch-size and --image-size must be positive")
    source, option = _data_source(args.data) if args.data else (None, "")
    model = resolve_model(args.model, args.in_channels, args.num_classes)
    if args.init:
        from explainfix import initialize

        initialize(model, args.init, seed=args.seed)
    model = model.to(args.device)
    uniform = explainsteer(model)
    salient = None
    if source is not None:
        loader, target = source(args, option, model)
        if args.init:  # new filters invalidate the BatchNorm statistics the model had
            from explainfix import calibrate_batchnorm

            calibrate_batchnorm(model, loader, max_batches=args.batches)
        salient = explainsteer(model, loader, method=args.saliency, target=target,
                               max_batches=args.batches, progress=not args.no_progress)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json({
        "model": args.model, "init": args.init, "seed": args.seed, "data": args.data,
        "without_saliency": uniform.to_dict(),
        "with_saliency": None if salient is None else salient.to_dict(),
    }, out / "spectra.json")

    written = []
    name = Path(args.model).stem if Path(args.model).is_file() else args.model
    suffix = f" ({args.init})" if args.init else ""
    for result, stem, label in ((uniform, "ed_heatmap", "without saliency"), (salient, "ed_heatmap_saliency", "with saliency")):
        if result is None:
            continue
        fig = plot_explainsteer(result, skip=args.skip, log=args.log, title=f"{name}{suffix}: $e^{{(d)}}$ {label}")
        written += save_figure(fig, out / stem, args.format)

    square = [s for s in uniform.kernel_shapes if len(set(s)) == 1]
    if square:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.5 * len(square) + 1.5, 3.4), layout="constrained")
        axes = fig.subplots(1, len(square), squeeze=False)[0]
        for ax, shape in zip(axes, square):
            curves = {"uniform 1/n": uniform}
            if salient is not None:
                curves[f"saliency ({salient.saliency})"] = salient
            plot_spectra_lines(curves, shape, ax=ax, title=f"$e^{{(0)}}$, {shape_label(shape)} kernels")
        fig.suptitle(f"{name}{suffix}")
        written += save_figure(fig, out / "e0", args.format)
    print(f"wrote {out / 'spectra.json'}")
    for path in written:
        print(f"wrote {path}")
    return 0
