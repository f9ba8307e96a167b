"""``explainfix filters``: write the filter pictures (DCT-II basis, GHaar, Psine, GuidedSteer)."""
from __future__ import annotations

import argparse

HELP = "write pictures of the DCT-II basis and of GHaar, Psine and GuidedSteer filters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument(
        "--format",
        dest="formats",
        nargs="+",
        action="extend",
        choices=("png", "pdf", "svg"),
        help="file format(s); repeatable (default: png)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random filters (default: 0)")


def run(args: argparse.Namespace) -> int:
    from explainfix.cli._common import check_out_folder
    from explainfix.figures import render_filter_figures

    check_out_folder(args.out)
    for path in render_filter_figures(args.out, formats=tuple(args.formats or ("png",)), seed=args.seed):
        print(path)
    return 0
