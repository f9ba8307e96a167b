"""Table B.1: parameters of U-NetD and of the DeepLab baselines on BBBC038v1.

U-NetD is ``explainfix.create_model("unet_d")`` (3 channels in, 1 mask out); the paper gives
116,695 parameters of which 12,744 are spatial. The paper's DeepLabV3+ models are not in
torchvision: the closest available, torchvision's DeepLabV3 (not V3+: no low-level decoder
branch) with a ResNet50 and a MobileNetV3-Large backbone (torchvision has no MobileNetV2
DeepLab), are counted beside them with ``weights=None, weights_backbone=None``, 1 output
class and no auxiliary head.

    .venv/bin/python experiments/tableB1_unet_d.py [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import explainfix as ef  # noqa: E402
from _common import make_parser, setup, write_table  # noqa: E402

NAME = "tableB1_unet_d"

#: Table B.1 of the paper: (params, spatial params, % spatial)
PAPER = {
    "U-NetD": (116_695, 12_744, 11),
    "DeepLabV3+ MobileNetV2": (5_220_577, 2_977_344, 57),
    "DeepLabV3+ ResNet50": (39_756_705, 26_182_848, 66),
}


def _deeplab(factory: str) -> nn.Module:
    from torchvision.models import segmentation

    return getattr(segmentation, factory)(weights=None, weights_backbone=None, num_classes=1, aux_loss=False)


#: row label -> (what we build, the paper's row it stands in for, model factory)
MODELS = {
    "U-NetD": ("explainfix unet_d (3 in, 1 out)", "U-NetD", lambda: ef.create_model("unet_d")),
    "DeepLabV3 MobileNetV3-Large": (
        "torchvision deeplabv3_mobilenet_v3_large (closest available; not V3+, not MobileNetV2)",
        "DeepLabV3+ MobileNetV2",
        lambda: _deeplab("deeplabv3_mobilenet_v3_large"),
    ),
    "DeepLabV3 ResNet50": (
        "torchvision deeplabv3_resnet50 (closest available; not V3+)",
        "DeepLabV3+ ResNet50",
        lambda: _deeplab("deeplabv3_resnet50"),
    ),
}
QUICK_MODELS = ("U-NetD",)


def count(model: nn.Module) -> tuple[int, int]:
    """(parameters, spatial parameters)."""
    total = sum(p.numel() for p in model.parameters())
    spatial = sum(m.weight.numel() for _, m in ef.spatial_convs(model))
    return total, spatial


def run(labels: list[str], check_forward: bool = True) -> list[dict]:
    rows = []
    for label in labels:
        built, paper_label, factory = MODELS[label]
        model = factory()
        total, spatial = count(model)
        if check_forward:  # the counted model runs on a BBBC038v1-shaped input
            with torch.no_grad():
                out = model.eval()(torch.rand(1, 3, 64, 64))
            out = out["out"] if isinstance(out, dict) else out
            assert tuple(out.shape) == (1, 1, 64, 64), tuple(out.shape)
        p_total, p_spatial, p_pct = PAPER[paper_label]
        rows.append({
            "model": label,
            "built": built,
            "params": total,
            "spatial_params": spatial,
            "spatial_ratio": spatial / total,
            "paper_model": paper_label,
            "paper_params": p_total,
            "paper_spatial_params": p_spatial,
            "paper_spatial_pct": p_pct,
            "params_diff": total - p_total,
            "spatial_diff": spatial - p_spatial,
            "exact_match": total == p_total and spatial == p_spatial,
        })
    return rows


NOTES = """\
U-NetD reproduces Table B.1 exactly (`exact_match`). The paper's DeepLabV3+ baselines are not
available in torchvision; the rows `DeepLabV3 ...` are **DeepLabV3, not DeepLabV3+** (no low-level
decoder branch), built with `weights=None, weights_backbone=None`, 1 output class, no auxiliary
head, and the MobileNet row uses **MobileNetV3-Large**, not the paper's MobileNetV2 (torchvision
has no MobileNetV2 DeepLab). Their counts are shown beside the paper's only for scale: the
ResNet50 model has about 0.3 % fewer parameters than the paper's, the MobileNet one is not comparable.
`spatial_params` counts the weights of convolutions with kernels > 1 in every dimension (depthwise
and atrous included). Table B.1's companion Fig. B.1b (Dice after 150 epochs) needs BBBC038v1 and
a training loop and is not reproduced here."""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_parser(NAME, __doc__)
    args = parser.parse_args(argv)
    out = setup(args)
    torch.manual_seed(args.seed)
    labels = list(QUICK_MODELS if args.quick else MODELS)
    rows = run(labels)
    write_table(out, NAME, rows, title="Table B.1: BBBC038v1 baselines, parameter counts", notes=NOTES,
                settings=vars(args))
    return rows


if __name__ == "__main__":
    main()
