"""Table 3 (middle column): number and share of spatial parameters per architecture.

Spatial parameters are the weights of every convolution with a kernel > 1 in every dimension
(:func:`explainfix.spatial_convs`; depthwise included). The paper's classifiers have a 1-channel
stem and 5 outputs (the CheXpert tasks); every other registered model is counted in the same
setting (``unet_d`` in its Table B.1 setting: 3 channels in, 1 out).

    .venv/bin/python experiments/table3_spatial_params.py [--models resnet50 ...] [--quick]

The SPE columns of Table 3 (seconds per training epoch on CheXpert, RTX 2080 Ti) need the
dataset and a GPU and are not reproduced here.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explainfix as ef  # noqa: E402
from _common import make_parser, setup, write_table  # noqa: E402

NAME = "table3_spatial_params"

#: Table 3 of the paper: spatial params in millions as printed (11.3e6 ...) and % of total (integer)
PAPER = {
    "resnet50": (11.3, 48),
    "densenet121": (2.1, 31),
    "efficientnet_b0": (0.2, 5),
}
PAPER_MODELS = tuple(PAPER)
QUICK_MODELS = ("resnet18", "unet_d")
#: settings that differ from the classifiers' (1 channel in, 5 out)
NATIVE = {"unet_d": {"in_chans": 3, "num_classes": 1}}


def count(name: str) -> dict:
    """Parameters, spatial parameters and spatial layers / kernels of a registered model."""
    kwargs = NATIVE.get(name, {"in_chans": 1, "num_classes": 5})
    model = ef.create_model(name, **kwargs)
    layers = list(ef.spatial_convs(model))
    total = sum(p.numel() for p in model.parameters())
    spatial = sum(m.weight.numel() for _, m in layers)
    shapes = sorted({"x".join(map(str, m.kernel_size)) for _, m in layers}, key=lambda s: (len(s), s))
    return {
        "model": name,
        "in/out": f"{kwargs['in_chans']}/{kwargs['num_classes']}",
        "params": total,
        "spatial_params": spatial,
        "spatial_ratio": spatial / total,
        "spatial_layers": len(layers),
        "spatial_kernels": sum(m.weight.shape[0] * m.weight.shape[1] for _, m in layers),
        "kernel_shapes": " ".join(shapes),
    }


COLUMNS = (
    "model", "in/out", "params", "spatial_params", "spatial_ratio", "spatial_layers", "spatial_kernels",
    "kernel_shapes", "spatial_M", "paper_spatial_M", "paper_spatial_pct", "matches_paper",
)


def _matches_paper(spatial: int, ratio: float, paper: tuple[float, int]) -> bool:
    """Equal at the paper's printed precision (one decimal of 1e6, integer percent)."""
    millions, pct = paper
    return math.isclose(round(spatial / 1e5) / 10, millions) and round(100 * ratio) == pct


def run(models: list[str]) -> list[dict]:
    rows = []
    for name in models:
        row = count(name)
        paper = PAPER.get(name)
        row["spatial_M"] = row["spatial_params"] / 1e6
        row["paper_spatial_M"] = None if paper is None else paper[0]
        row["paper_spatial_pct"] = None if paper is None else paper[1]
        row["matches_paper"] = None if paper is None else _matches_paper(row["spatial_params"], row["spatial_ratio"], paper)
        rows.append(row)
    return rows


NOTES = """\
`spatial_params` counts the weights of every convolution whose kernel is larger than 1 in every
dimension (depthwise convolutions included; biases of spatial convolutions, 1x1 convolutions,
BatchNorm and linear layers are not spatial). The classifiers are torchvision's architectures with a
1-channel stem and 5 outputs, as in the paper; `unet_d` is counted in its Table B.1 setting
(3 channels in, 1 out). `paper_*` are Table 3's printed values (3 significant digits / integer
percent, `paper_spatial_M` in millions); `matches_paper` compares at that precision.

Not reproduced: Table 3's SPE columns (mean seconds per training epoch on CheXpert, RTX 2080 Ti,
20 epochs) need the CheXpert dataset, a GPU and a training loop."""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_parser(NAME, __doc__)
    parser.add_argument(
        "--models", nargs="+", default=None,
        help="registered model names (default: the paper's three, then every other registered model)",
    )
    args = parser.parse_args(argv)
    out = setup(args)
    if args.models:
        models = list(args.models)
    elif args.quick:
        models = list(QUICK_MODELS)
    else:
        models = list(PAPER_MODELS) + [m for m in ef.list_models() if m not in PAPER_MODELS]
    rows = run(models)
    write_table(
        out, NAME, rows,
        title="Table 3 (middle column): spatial parameters per architecture",
        notes=NOTES, columns=COLUMNS, settings=vars(args), digits=3,
    )
    return rows


if __name__ == "__main__":
    main()
