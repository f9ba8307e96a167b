import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explainfix import UNetD, create_model, spatial_convs
from explainfix.models.unet_d import DepthwiseSeparableBlock, UpStage


def _counts(model):
    total = sum(p.numel() for p in model.parameters())
    spatial = sum(p.numel() for _, m in spatial_convs(model) for p in m.parameters())
    return total, spatial


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_table_b1_parameter_counts_exact(mode):
    model = create_model("unet_d", upsample_mode=mode)
    assert _counts(model) == (116_695, 12_744)
    assert round(12_744 / 116_695, 2) == 0.11
    layers = list(spatial_convs(model))
    assert len(layers) == 16  # 4 down + 4 up stages, two blocks each
    assert all(m.kernel_size == (3, 3) and m.groups == m.in_channels == m.out_channels for _, m in layers)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_expansion_is_six_times_the_narrower_width():
    model = UNetD()
    mids = [m.out_channels for _, m in spatial_convs(model)]
    assert mids == [18, 18, 48, 48, 96, 96, 192, 192] + [192, 192, 96, 96, 48, 48, 18, 18]
    assert model.head.kernel_size == (1, 1) and model.head.weight.shape == (1, 3, 1, 1)


def test_block_layer_order():
    block = DepthwiseSeparableBlock(4, 24, 8, stride=3)
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Conv2d", "BatchNorm2d", "CELU", "Conv2d", "BatchNorm2d", "CELU", "Conv2d", "BatchNorm2d"]
    assert block.depthwise.stride == (3, 3) and block.depthwise.groups == 24
    assert block(torch.randn(2, 4, 10, 7)).shape == (2, 8, 4, 3)


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 100, 37), (2, 3, 33, 50)])
def test_any_input_size_keeps_size(shape):
    model = UNetD()
    out = model(torch.rand(shape))
    assert out.shape == (shape[0], 1, *shape[2:])
    out.mean().backward()
    assert all(s.fusion_weight.grad is not None and s.fusion_weight.grad.abs().sum() > 0 for s in model.decoder)


def test_256_input_and_downsampled_sizes():
    model = UNetD().eval()
    sizes = []
    hooks = [s.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for s in model.encoder]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 256, 256)).shape == (1, 1, 256, 256)
    for h in hooks:
        h.remove()
    assert sizes == [(86, 86), (29, 29), (10, 10), (4, 4)]
    assert model.bottleneck_size(256, 256) == (4, 4)


def test_upsample_modes_share_weights_and_differ_in_output():
    torch.manual_seed(0)
    model = UNetD()  # training mode: BatchNorm normalises, so the deep path matters
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        nearest = model(x)
        model.upsample_mode = "bilinear"
        bilinear = model(x)
    assert nearest.shape == bilinear.shape
    assert (nearest - bilinear).abs().max() > 0.1 * nearest.abs().max()
    with pytest.raises(ValueError, match="upsample_mode"):
        UNetD(upsample_mode="bicubic")


def test_fusion_is_normalised_weighted_sum():
    stage = UpStage(4, 2, 12).double()
    stage.block1, stage.block2 = nn.Conv2d(4, 2, 1, bias=False).double(), nn.Identity()
    assert stage.fusion_weight.tolist() == [0.5, 0.5]
    with torch.no_grad():
        stage.fusion_weight.copy_(torch.tensor([0.2, 1.3], dtype=torch.float64))
    x = torch.randn(1, 4, 3, 2, dtype=torch.float64)
    skip = torch.randn(1, 2, 7, 5, dtype=torch.float64)
    up = stage.block1(F.interpolate(x, size=(7, 5), mode="nearest"))
    expected = 0.2 / (1.5 + 1e-5) * up + 1.3 / (1.5 + 1e-5) * skip
    torch.testing.assert_close(stage(x, skip), expected, rtol=1e-12, atol=1e-12)


def test_input_checks():
    model = UNetD()
    with pytest.raises(ValueError, match="too small to train"):
        model(torch.rand(1, 3, 40, 40))  # 1x1 bottleneck with batch 1
    with pytest.raises(ValueError, match="3 input channels, got 1"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.rand(3, 32, 32))
    assert model.eval()(torch.rand(1, 3, 5, 7)).shape == (1, 1, 5, 7)


def test_in_chans_and_num_classes_options():
    model = create_model("unet_d", in_chans=1, num_classes=2)
    total, spatial = _counts(model)
    assert (total, spatial) == (116_695 + 3 + 3, 12_744)  # 1->3 stem, second head row
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 2, 32, 32)


def test_pretrained_file_round_trip(tmp_path):
    source = UNetD()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "unet.pt"
    torch.save(source.state_dict(), path)
    loaded = create_model("unet_d", pretrained=path)
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with pytest.raises(ValueError, match="does not fit"):
        create_model("unet_d", num_classes=2, pretrained=path)
    with pytest.raises(ValueError, match="no published weights"):
        create_model("unet_d", pretrained="torchvision")
