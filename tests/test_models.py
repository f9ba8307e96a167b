import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from explainfix import create_model, list_models, register_model, spatial_convs
from explainfix.models import TORCHVISION_MODELS, adapt_stem_weight
from explainfix.models import registry

TV_NAMES = [
    "densenet121", "densenet169",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "resnet101", "resnet18", "resnet34", "resnet50",
]  # fmt: skip


def _counts(model):
    total = sum(p.numel() for p in model.parameters())
    spatial = sum(p.numel() for _, m in spatial_convs(model) for p in m.parameters())
    return spatial, total


def test_list_models_names_and_pattern():
    names = list_models()
    assert names == sorted(names)
    assert set(TV_NAMES + ["unet_d"]) <= set(names)
    assert len(list_models("[dmer]*")) == len(TV_NAMES)
    assert list_models("efficientnet_b*") == [f"efficientnet_b{i}" for i in range(6)]
    assert list_models("resnet1*") == ["resnet101", "resnet18"]
    assert list_models("nothing*") == []


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'resnet5O'.*resnet50"):
        create_model("resnet5O")
    with pytest.raises(ValueError, match="did you mean.*densenet121"):
        create_model("densenet12")


def test_register_model_and_duplicates():
    @register_model("_test_tiny")
    def tiny(*, in_chans=None, num_classes=None, pretrained=None, width=4):
        return nn.Sequential(nn.Conv2d(in_chans or 1, width, 3), nn.Flatten(), nn.LazyLinear(num_classes or 5))

    try:
        model = create_model("_test_tiny", in_chans=2, width=7)
        assert model[0].in_channels == 2 and model[0].out_channels == 7
        assert "_test_tiny" in list_models("_test*")
        with pytest.raises(ValueError, match="already registered"):
            register_model("_test_tiny")(tiny)
    finally:
        registry._REGISTRY.pop("_test_tiny")
    with pytest.raises(ValueError, match="without spaces"):
        register_model("bad name")


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_channel_counts_rejected(bad):
    with pytest.raises(ValueError, match="in_chans must be a positive int"):
        create_model("resnet18", in_chans=bad)


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small"])
def test_stem_and_head_keep_torchvision_layer_names(name):
    model = create_model(name, in_chans=1, num_classes=5)
    reference = getattr(torchvision.models, name)()
    family = TORCHVISION_MODELS[name]
    ours, theirs = model.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    stem = model.get_submodule(family.stem)
    head = model.get_submodule(family.head)
    assert stem.in_channels == 1 and stem.weight.shape[1] == 1
    assert head.out_features == 5
    diff = {k for k in ours if ours[k].shape != theirs[k].shape}
    assert diff == {f"{family.stem}.weight", f"{family.head}.weight", f"{family.head}.bias"}
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 64, 64)).shape == (2, 5)


def test_default_channels_and_kwargs_pass_through():
    model = create_model("efficientnet_b0", dropout=0.5)
    assert model.features[0][0].in_channels == 1
    assert model.classifier[1].out_features == 5
    assert model.classifier[0].p == 0.5
    assert create_model("resnet18", in_chans=3).conv1 is not None
    with pytest.raises(ValueError, match="pretrained="):
        create_model("resnet18", weights=None)


@pytest.mark.parametrize(
    "name, spatial, total, paper_millions, paper_ratio",
    [
        ("resnet50", 11_320_384, 23_512_005, 11.32, 0.481),
        ("densenet121", 2_141_248, 6_952_709, 2.14, 0.308),
        ("efficientnet_b0", 182_304, 4_013_377, 0.18, 0.045),
    ],
)
def test_table3_spatial_parameter_counts(name, spatial, total, paper_millions, paper_ratio):
    got_spatial, got_total = _counts(create_model(name, in_chans=1, num_classes=5))
    print(f"{name}: {got_spatial} spatial of {got_total} ({got_spatial / got_total:.4f})")
    assert (got_spatial, got_total) == (spatial, total)
    assert round(got_spatial / 1e6, 2) == paper_millions
    assert round(got_spatial / got_total, 3) == paper_ratio


def test_adapt_stem_weight_sum_and_repeat_average():
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    assert torch.equal(adapt_stem_weight(w, 3), w)
    torch.testing.assert_close(adapt_stem_weight(w, 1), w.sum(1, keepdim=True))
    w5 = adapt_stem_weight(w, 5)
    assert w5.shape == (4, 5, 3, 3)
    for j in range(5):
        torch.testing.assert_close(w5[:, j], w[:, j % 3] * 3 / 5)
    # a constant image has the same response when in_chans is a multiple of 3
    torch.testing.assert_close(adapt_stem_weight(w, 6).sum(1), w.sum(1))


@pytest.fixture
def imagenet_like_resnet18(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_pretrained_file_gray_stem_equals_rgb_network_on_gray_input(imagenet_like_resnet18):
    reference, path = imagenet_like_resnet18
    model = create_model("resnet18", in_chans=1, num_classes=1000, pretrained=str(path))
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.fc.weight, reference.fc.weight)
    model.double().eval()
    reference.double().eval()
    x = torch.rand(2, 1, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-6)


def test_pretrained_file_new_head_is_reinitialised(imagenet_like_resnet18, tmp_path):
    reference, path = imagenet_like_resnet18
    torch.manual_seed(5)
    model = create_model("resnet18", num_classes=5, pretrained=path)
    torch.manual_seed(5)
    fresh = create_model("resnet18", num_classes=5)
    ref = reference.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 5
            torch.testing.assert_close(value, fresh.state_dict()[key])  # torchvision's head init
        elif key == "conv1.weight":
            torch.testing.assert_close(value, ref[key].sum(1, keepdim=True))
        else:
            assert torch.equal(value, ref[key]), key


def test_pretrained_file_already_matching_loads_exactly(tmp_path):
    source = create_model("mobilenet_v3_small", in_chans=1, num_classes=5)
    path = tmp_path / "ours.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = create_model("mobilenet_v3_small", in_chans=1, num_classes=5, pretrained=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pretrained_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        create_model("resnet18", pretrained=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet34().state_dict(), wrong)
    with pytest.raises(ValueError, match="do not fit 'resnet18'.*unexpected keys"):
        create_model("resnet18", pretrained=wrong)
    partial = tmp_path / "partial.pth"
    state = torchvision.models.resnet18().state_dict()
    del state["layer1.0.bn1.weight"]
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"missing keys \['layer1.0.bn1.weight'\]"):
        create_model("resnet18", pretrained=partial)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="corrupt.pth' is not a readable state_dict file"):
        create_model("resnet18", pretrained=corrupt)


@pytest.mark.parametrize("spec", ["torchvision", "DEFAULT"])
def test_pretrained_download_failure_explains_local_file(monkeypatch, spec):
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"could not download.*pretrained='/path/to/resnet18-.*\.pth'"):
        create_model("resnet18", pretrained=spec)
    assert len(calls) == 1 and calls[0].startswith("https://download.pytorch.org/models/resnet18")


@pytest.mark.slow
@pytest.mark.parametrize("name", TV_NAMES)
def test_model_zoo_builds_and_runs_with_three_channels_and_two_classes(name):
    model = create_model(name, in_chans=3, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 2)
    spatial, total = _counts(model)
    assert 0 < spatial < total
