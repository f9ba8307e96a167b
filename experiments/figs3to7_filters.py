"""Figs. 3-7 and F.1: pictures of the DCT-II basis and of the fixed spatial initializations.

Draws the 3x3 and 5x5 DCT-II basis in frequency order (Fig. F.1), the GHaar basis and filters,
Psine filters and their steering, and GuidedSteer filters next to their guide (a random-init
DenseNet121: the paper's guide was ImageNet-pretrained) with
:func:`explainfix.figures.render_filter_figures`, and lists the files in a table.

    .venv/bin/python experiments/figs3to7_filters.py [--formats png pdf] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_parser, setup, write_table  # noqa: E402
from explainfix.figures import render_filter_figures  # noqa: E402

NAME = "figs3to7_filters"

#: figure file stem -> what it shows in the paper
SHOWS = {
    "dct_basis_3x3": "Fig. F.1a: 3x3 DCT-II basis, numbered low -> high frequency",
    "dct_basis_5x5": "Fig. F.1b: 5x5 DCT-II basis",
    "ghaar_basis": "Fig. 3: 2-D GHaar basis",
    "ghaar_filters": "Fig. 4: GHaar filters",
    "psine_steering": "Fig. 5: Psine, full and degenerate steering",
    "psine_filters": "Fig. 6: Psine filters",
    "guided_steer_filters": "Fig. 7: GuidedSteer filters vs guide (random-init DenseNet121 guide)",
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_parser(NAME, __doc__)
    parser.add_argument("--formats", nargs="+", default=["png"], help="png, pdf and/or svg")
    args = parser.parse_args(argv)
    out = setup(args)
    paths = render_filter_figures(out, formats=args.formats, seed=args.seed)
    rows = [{"file": p.name, "shows": SHOWS.get(p.stem, ""), "bytes": p.stat().st_size} for p in paths]
    write_table(out, NAME, rows, title="Figs. 3-7, F.1: filter pictures", settings=vars(args),
                notes="Random filters are drawn with `--seed`; the GuidedSteer guide is a random-init "
                      "network, not the paper's ImageNet-pretrained one.")
    return rows


if __name__ == "__main__":
    main()
