"""A small CNN for smoke runs, tests and laptops: seconds per epoch on a CPU.

Three 3x3 conv blocks (norm + ReLU, stride 2), global average pooling and a linear head.
``norm="batch" | "group" | "none"``: ``"none"`` and ``"group"`` make the loss independent of
how a batch is split over processes (DistributedDataParallel without SyncBatchNorm).
"""
from __future__ import annotations

from torch import nn

from .registry import register_model

__all__ = ["SmallCNN", "small_cnn"]

_NORMS = {
    "batch": lambda c: nn.BatchNorm2d(c),
    "group": lambda c: nn.GroupNorm(min(4, c), c),
    "none": lambda c: nn.Identity(),
}


class SmallCNN(nn.Module):
    """``in_chans -> width -> 2 width -> 4 width`` 3x3 convs, pooled, ``num_classes`` logits."""

    def __init__(self, in_chans: int = 1, num_classes: int = 5, width: int = 8, norm: str = "batch"):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)}, got {norm!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        layers, c = [], in_chans
        for k in range(3):
            out = width * 2**k
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1, bias=norm == "none"), _NORMS[norm](out), nn.ReLU(inplace=True)]
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


@register_model("small_cnn")
def small_cnn(*, in_chans: int | None = None, num_classes: int | None = None, pretrained=None, **kwargs) -> SmallCNN:
    """:class:`SmallCNN` (defaults 1 input channel, 5 outputs); no published weights."""
    if pretrained is not None:
        raise ValueError("small_cnn has no pretrained weights")
    return SmallCNN(in_chans=1 if in_chans is None else in_chans, num_classes=5 if num_classes is None else num_classes, **kwargs)
