"""``explainfix explain``: ExplainSteer pictures and spectra of a model.

Writes to ``--out``:

* ``spectra.json`` - every layer's spectra without saliency (and with saliency
  when ``--data`` is given), plus per-kernel-shape global ``e1`` / ``e0``;
* ``ed_heatmap.<fmt>`` - the ``e^(d)`` heatmaps without saliency (one panel per
  kernel shape), ``ed_heatmap_saliency.<fmt>`` with saliency;
* ``e0.<fmt>`` - global ``e^(0)`` per square kernel shape (with and without saliency).

The files are written as one set (staged, then renamed in with Ctrl-C held off): files of an
earlier run in ``--out`` are replaced, never left beside new ones. ``--out`` is checked to be
writable before any work.

Examples::

    explainfix explain --model resnet50 --init ghaar --out out/explain
    explainfix explain --model resnet50 --data synthetic --batches 15 --out out/explain
    explainfix explain --model path/to/checkpoint.pt --data synthetic --format png pdf --out out/explain
    explainfix explain --model densenet121 --data chexpert:data/CheXpert-v1.0-small --image-size 320 --out out/explain

``--data`` sources are those of :mod:`explainfix.cli._common` (synthetic, chexpert, bbbc038, folder, csv).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..fileio import atomic_write, staged_folder
from explainfix.explain.pictures import write_pictures

from ._common import (
    add_data_arguments,
    add_model_arguments,
    check_out_folder,
    data_source,
    model_from_args,
    parse_data_spec,
)

HELP = "ExplainSteer: DCT-II energy spectra of a model's spatial filters, as pictures and JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_data_arguments(parser, purpose="saliency-weighted spectra (without it only uniform spectra are computed); "
                       "with --init, BatchNorm statistics are then re-estimated from it")
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


def _earlier_output(name: str) -> bool:
    """Whether ``name`` in ``--out`` is a file an earlier ``explainfix explain`` wrote."""
    return name == "spectra.json" or name.split(".")[0] in ("ed_heatmap", "ed_heatmap_saliency", "e0")


def _write_json(data: dict, path: Path) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=1)


def run(args: argparse.Namespace) -> int:
    from explainfix.explain import explainsteer

    if args.batches < 1 or args.batch_size < 1 or args.image_size < 1:
        raise ValueError("--batches, --batch-size and --image-size must be positive")
    out = check_out_folder(args.out)
    if args.data:
        parse_data_spec(args.data)  # an unknown source fails before any work
    model, _ = model_from_args(args)
    model = model.to(args.device)
    uniform = explainsteer(model)
    unknown = sorted(set(args.skip) - {layer.name for layer in uniform.layers})
    if unknown:
        raise ValueError(f"--skip {unknown[0]!r} is not a spatial conv of the model; layers are "
                         f"{[layer.name for layer in uniform.layers]}")
    salient = None
    if args.data:
        loader, target = data_source(args.data, model, batches=args.batches, batch_size=args.batch_size,
                                     image_size=args.image_size, seed=args.seed)
        if args.init:  # new filters invalidate the BatchNorm statistics the model had
            from explainfix import calibrate_batchnorm

            calibrate_batchnorm(model, loader, max_batches=args.batches)
        salient = explainsteer(model, loader, method=args.saliency, target=target,
                               max_batches=args.batches, progress=not args.no_progress)

    # one set: the files of an earlier run (e.g. its ed_heatmap_saliency) never stay beside new ones
    with staged_folder(out, replaces=_earlier_output) as staging:
        _write_json({
            "model": args.model, "init": args.init, "seed": args.seed, "data": args.data,
            "without_saliency": uniform.to_dict(),
            "with_saliency": None if salient is None else salient.to_dict(),
        }, staging / "spectra.json")

        name = Path(args.model).stem if Path(args.model).is_file() else args.model
        suffix = f" ({args.init})" if args.init else ""
        written = write_pictures(uniform, salient, staging, f"{name}{suffix}", skip=args.skip, log=args.log,
                                 formats=args.format)
    written = [out / Path(path).name for path in written]
    print(f"wrote {out / 'spectra.json'}")
    for path in written:
        print(f"wrote {path}")
    return 0
