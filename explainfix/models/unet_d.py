"""U-NetD: the paper's depthwise-separable U-Net for segmentation (Appendix B, Table B.1).

Layout (default widths ``(3, 8, 16, 32, 64)``, 5 levels, 4 down and 4 up stages):

* **block** ``(c_in, c_mid, c_out)``: 1x1 conv ``c_in -> c_mid`` -> BN -> CELU -> 3x3
  depthwise conv (groups = ``c_mid``) -> BN -> CELU -> 1x1 conv ``c_mid -> c_out`` -> BN,
  with no activation after the last 1x1 (MobileNetV2). All convolutions are bias-free.
* **expansion**: each stage between widths ``a < b`` uses ``c_mid = 6 a`` in both of its
  blocks, i.e. the expansion is x6 of the stage's *narrower* width, in the encoder and
  in the decoder alike.
* **down stage** ``a -> b``: ``block(a, 6a, b)`` at the current resolution, then
  ``block(b, 6a, b)`` whose depthwise conv has stride ``stride`` (3 by default; padding 1,
  so each side becomes ``ceil(n / 3)``).
* **up stage** ``b -> a``: resize the deeper feature map to the skip's size (nearest
  neighbour by default, or bilinear), ``block(b, 6a, a)``, fuse with the skip as
  ``w1/(w1+w2+1e-5) * up + w2/(w1+w2+1e-5) * skip`` (two learned scalars, both 0.5 at
  init), then ``block(a, 6a, a)``. The skip of the top stage is the network input.
* **head**: a bias-free 1x1 conv ``widths[0] -> num_classes`` giving logits.

With the defaults (3 input channels, 1 output) this has exactly 116,695 parameters of
which 12,744 are spatial (3x3 depthwise weights), as in Table B.1. Resizing to the
skip's size makes any input size work (256x256, odd sizes, non-square).

Where the paper's text says "CELU then BatchNorm" and a final 3x3 convolution, Table
B.1's counts need BatchNorm before CELU and a 1x1 final layer (a 3x3 one gives 116,719);
we follow the table. ``in_chans`` different from ``widths[0]`` adds a bias-free 1x1 stem
``in_chans -> widths[0]`` so that the top-level skip has ``widths[0]`` channels.

Example:
    >>> import torch
    >>> from explainfix.models import UNetD
    >>> model = UNetD()
    >>> sum(p.numel() for p in model.parameters())
    116695
    >>> model(torch.rand(2, 3, 64, 48)).shape
    torch.Size([2, 1, 64, 48])
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

__all__ = ["UNetD", "DepthwiseSeparableBlock", "DownStage", "UpStage"]

_UPSAMPLE_MODES = ("nearest", "bilinear")


class DepthwiseSeparableBlock(nn.Sequential):
    """1x1 expand -> BN -> CELU -> 3x3 depthwise -> BN -> CELU -> 1x1 project -> BN.

    Args:
        in_channels: input channels.
        mid_channels: channels of the depthwise convolution.
        out_channels: output channels.
        stride: stride of the depthwise convolution (1 keeps the size).

    Shape:
        ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.expand = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.act1 = nn.CELU()
        self.depthwise = nn.Conv2d(
            mid_channels, mid_channels, 3, stride=stride, padding=1, groups=mid_channels, bias=False
        )
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.act2 = nn.CELU()
        self.project = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)


class DownStage(nn.Sequential):
    """Encoder stage ``a -> b``: a block at full size, then a block that downsamples."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, stride: int):
        super().__init__()
        self.block1 = DepthwiseSeparableBlock(in_channels, mid_channels, out_channels)
        self.block2 = DepthwiseSeparableBlock(out_channels, mid_channels, out_channels, stride=stride)


class UpStage(nn.Module):
    """Decoder stage ``b -> a``: resize to the skip, block, weighted fusion, block.

    Args:
        in_channels: channels of the deeper decoder input (``b``).
        out_channels: channels of the skip and of the output (``a``).
        mid_channels: channels of both blocks' depthwise convolutions.
        mode: ``"nearest"`` or ``"bilinear"`` resizing.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, mode: str = "nearest"):
        super().__init__()
        if mode not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {_UPSAMPLE_MODES}, got {mode!r}")
        self.mode = mode
        self.block1 = DepthwiseSeparableBlock(in_channels, mid_channels, out_channels)
        self.fusion_weight = nn.Parameter(torch.full((2,), 0.5))
        self.block2 = DepthwiseSeparableBlock(out_channels, mid_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        kwargs = {"align_corners": False} if self.mode == "bilinear" else {}
        up = self.block1(F.interpolate(x, size=skip.shape[-2:], mode=self.mode, **kwargs))
        w1, w2 = self.fusion_weight[0], self.fusion_weight[1]
        total = w1 + w2 + 1e-5
        return self.block2(w1 / total * up + w2 / total * skip)


class UNetD(nn.Module):
    """Depthwise-separable U-Net of the paper (116,695 parameters, 12,744 spatial).

    Args:
        in_chans: input channels; None means ``widths[0]``. Any other value adds a
            bias-free 1x1 stem to ``widths[0]`` channels.
        num_classes: output channels (logits of the segmentation mask).
        widths: channel widths of the levels, top to bottom.
        expansion: depthwise width of a stage = ``expansion * narrower width``.
        stride: downsampling factor of each down stage.
        upsample_mode: ``"nearest"`` (default) or ``"bilinear"``; no parameters change.

    Shape:
        ``(N, in_chans, H, W) -> (N, num_classes, H, W)`` for any ``H, W >= 1``. In training
        mode BatchNorm needs more than one value per channel at the bottleneck, so
        ``N * ceil(H / stride^4) * ceil(W / stride^4) > 1`` (e.g. batch 1 needs a side
        larger than 81 pixels); smaller inputs raise a ``ValueError``.
    """

    def __init__(
        self,
        in_chans: int | None = None,
        num_classes: int = 1,
        widths: Sequence[int] = (3, 8, 16, 32, 64),
        expansion: int = 6,
        stride: int = 3,
        upsample_mode: str = "nearest",
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs at least two positive entries, got {widths}")
        if expansion < 1 or stride < 1:
            raise ValueError(f"expansion and stride must be >= 1, got {expansion} and {stride}")
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {_UPSAMPLE_MODES}, got {upsample_mode!r}")
        self.in_chans = widths[0] if in_chans is None else int(in_chans)
        self.num_classes = int(num_classes)
        self.widths = widths
        self.stride = int(stride)
        self.stem = (
            nn.Identity() if self.in_chans == widths[0] else nn.Conv2d(self.in_chans, widths[0], 1, bias=False)
        )
        pairs = list(zip(widths[:-1], widths[1:]))
        self.encoder = nn.ModuleList(DownStage(a, b, expansion * a, stride) for a, b in pairs)
        self.decoder = nn.ModuleList(UpStage(b, a, expansion * a, upsample_mode) for a, b in reversed(pairs))
        self.head = nn.Conv2d(widths[0], self.num_classes, 1, bias=False)

    @property
    def upsample_mode(self) -> str:
        return self.decoder[0].mode

    @upsample_mode.setter
    def upsample_mode(self, mode: str) -> None:
        if mode not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {_UPSAMPLE_MODES}, got {mode!r}")
        for stage in self.decoder:
            stage.mode = mode

    def bottleneck_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the deepest feature map for an ``height x width`` input."""
        for _ in self.encoder:
            height, width = -(-height // self.stride), -(-width // self.stride)
        return height, width

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"UNetD expects a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        if c != self.in_chans:
            raise ValueError(f"UNetD expects {self.in_chans} input channels, got {c} (shape {tuple(x.shape)})")
        if n < 1 or h < 1 or w < 1:
            raise ValueError(f"UNetD got an empty input of shape {tuple(x.shape)}")
        if self.training:
            bh, bw = self.bottleneck_size(h, w)
            if n * bh * bw < 2:
                raise ValueError(
                    f"input {tuple(x.shape)} is too small to train UNetD: its {len(self.encoder)} "
                    f"stride-{self.stride} stages leave a {bh}x{bw} bottleneck, and BatchNorm needs more "
                    "than one value per channel; use a larger image or batch, or call model.eval()"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.stem(x)
        skips = [x]
        for stage in self.encoder:
            skips.append(stage(skips[-1]))
        y = skips.pop()
        for stage in self.decoder:
            y = stage(y, skips.pop())
        return self.head(y)


@register_model("unet_d")
def unet_d(
    *,
    in_chans: int | None = None,
    num_classes: int | None = None,
    pretrained: str | os.PathLike | None = None,
    **kwargs,
) -> UNetD:
    """U-NetD (defaults in_chans=3, num_classes=1 as in Table B.1); ``pretrained`` is a local state_dict file."""
    model = UNetD(in_chans=in_chans, num_classes=1 if num_classes is None else num_classes, **kwargs)
    if pretrained is None:
        return model
    if isinstance(pretrained, str) and pretrained in ("torchvision", "DEFAULT"):
        raise ValueError("unet_d has no published weights; pass a path to a state_dict file saved from UNetD")
    path = os.fspath(pretrained)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights file not found: {path!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path!r} does not fit this UNetD configuration: {err}") from err
    return model
