"""What the sub-commands share: the ``--model`` / ``--data`` options and the output folder.

The meaning of a model spec lives in :mod:`explainfix.models.resolve`, that of a data spec in
:mod:`explainfix.data.sources`; this module only adds the command-line options for them.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from torch import nn

from explainfix.data.sources import DATA_SOURCES, data_source, first_conv, parse_data_spec
from explainfix.models.resolve import resolve_model

__all__ = [
    "resolve_model",
    "model_from_args",
    "data_source",
    "parse_data_spec",
    "DATA_SOURCES",
    "add_model_arguments",
    "add_data_arguments",
    "first_conv",
    "check_out_folder",
]


def model_from_args(args: argparse.Namespace) -> tuple[nn.Module, dict | None]:
    """The options of :func:`add_model_arguments` -> ``(model, arch)``.

    :func:`resolve_model` on ``--model`` / ``--in-chans`` / ``--num-classes`` / ``--trust-checkpoint``; with ``--init``,
    the spatial filters are then re-initialized and fixed (:func:`explainfix.initialize`, ``--seed``).
    """
    model, arch = resolve_model(args.model, in_chans=args.in_chans, num_classes=args.num_classes,
                                trust=getattr(args, "trust_checkpoint", False))
    if args.init:
        from explainfix.init import initialize

        initialize(model, args.init, seed=args.seed)
    return model, arch


def check_out_folder(path: str | os.PathLike) -> Path:
    """``--out`` as a :class:`~pathlib.Path`, checked before any work is done.

    Raises:
        ValueError: ``path`` exists and is not a folder, or it (or the folder it would be created
            in) cannot be written - found by a test write, so a command does not fail only after
            all its work. Nothing is created.
    """
    from ..fileio import check_writable_folder

    return check_writable_folder(path, what="--out")


# --------------------------------------------------------------------------- options
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--trust-checkpoint``, ``--in-chans``, ``--num-classes``, ``--init``, ``--seed``."""
    parser.add_argument("--model", required=True,
                        help="a checkpoint file, or a model name (explainfix.list_models(), or another "
                             "torchvision classification model). A checkpoint is rebuilt from its stored "
                             "architecture without running code from the file; one that only unpickling can "
                             "restore (a custom model) is refused unless --trust-checkpoint is given")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow unpickling the model stored in a --model checkpoint when its architecture "
                             "cannot rebuild it; unpickling RUNS CODE FROM THE FILE: only for files you trust")
    parser.add_argument("--in-chans", "--in-channels", dest="in_chans", type=int, default=None,
                        help="input channels of a model built by name (an error with a checkpoint)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="outputs of a model built by name (an error with a checkpoint)")
    parser.add_argument("--init", default=None, metavar="METHOD",
                        help="re-initialize (and fix) the spatial filters first (explainfix.list_inits()), "
                             "e.g. dct2, ghaar, psine")
    parser.add_argument("--seed", type=int, default=0, help="seed of --init and of --data (default 0)")


def add_data_arguments(parser: argparse.ArgumentParser, *, default: str | None = None,
                       image_size: int | None = 64, purpose: str = "saliency") -> None:
    """``--data``, ``--batches``, ``--batch-size``, ``--image-size``."""
    names = ", ".join(f"{n}:ROOT" if n in ("chexpert", "bbbc038") else f"{n}:DIR" if n == "folder"
                      else f"{n}:FILE" if n == "csv" else n for n in DATA_SOURCES)
    parser.add_argument("--data", default=default, metavar="SOURCE",
                        help=f"data for {purpose}: {names}" + (f" (default {default})" if default else ""))
    parser.add_argument("--batches", type=int, default=15, metavar="M", help="minibatches of --data (default 15)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per minibatch (default 4)")
    parser.add_argument("--image-size", type=int, default=image_size,
                        help="side of synthetic images and of crops of real ones"
                             + (f" (default {image_size})" if image_size else ""))
