"""``explainfix explain``: pictures and JSON of every spectrum."""
import json
import sys
import types

import pytest
from torch import nn

from explainfix.cli import main


def test_named_model_with_init_and_synthetic_saliency(tmp_path, capsys):
    out = tmp_path / "explain"
    rc = main(["explain", "--model", "resnet18", "--init", "dct2", "--seed", "3", "--data", "synthetic",
               "--batches", "2", "--batch-size", "2", "--image-size", "32", "--skip", "conv1",
               "--format", "png", "svg", "--no-progress", "--out", str(out)])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["e0.png", "e0.svg", "ed_heatmap.png", "ed_heatmap.svg", "ed_heatmap_saliency.png",
                     "ed_heatmap_saliency.svg", "spectra.json"]
    assert (out / "ed_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "spectra.json").read_text())
    assert (data["model"], data["init"], data["seed"], data["data"]) == ("resnet18", "dct2", 3, "synthetic")
    uniform, salient = data["without_saliency"], data["with_saliency"]
    assert len(uniform["layers"]) == 17  # 7x7 stem + 16 3x3 convs
    assert uniform["saliency"] is None and salient["saliency"] == "grad_x_weight" and salient["n_batches"] == 2
    assert uniform["layers"][0]["kernel_shape"] == [7, 7] and uniform["layers"][0]["n_kernels"] == 64
    # DCT2: every kernel is one unit-norm basis filter, so each layer's e^(d) sums to 1
    for layer in uniform["layers"]:
        assert sum(layer["ed"]) == pytest.approx(1.0, abs=1e-6)
    assert set(uniform["global"]) == {"7x7", "3x3"}
    assert "wrote" in capsys.readouterr().out


def test_without_data_writes_uniform_spectra_only(tmp_path):
    out = tmp_path / "plain"
    assert main(["explain", "--model", "resnet18", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["e0.png", "ed_heatmap.png", "spectra.json"]
    assert json.loads((out / "spectra.json").read_text())["with_saliency"] is None


def test_checkpoint_path_goes_to_checkpoint_load(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    path.write_bytes(b"stub")
    seen = []

    def load(p, **kwargs):
        seen.append(p)
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    fake = types.ModuleType("explainfix.checkpoint")
    fake.load = load
    monkeypatch.setitem(sys.modules, "explainfix.checkpoint", fake)
    out = tmp_path / "out"
    assert main(["explain", "--model", str(path), "--data", "synthetic", "--batches", "1", "--image-size", "8",
                 "--no-progress", "--out", str(out)]) == 0
    assert [str(p) for p in seen] == [str(path)]
    data = json.loads((out / "spectra.json").read_text())
    assert [l["name"] for l in data["with_saliency"]["layers"]] == ["0"]


def test_real_checkpoint_round_trip(tmp_path):
    from explainfix import checkpoint
    from explainfix import explainsteer, initialize

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 5), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    initialize(model, "ghaar", seed=0)
    path = checkpoint.save(model, tmp_path / "ghaar.pt")
    out = tmp_path / "out"
    assert main(["explain", "--model", str(path), "--out", str(out)]) == 2  # a custom model: pickled
    assert not out.exists()
    assert main(["explain", "--model", str(path), "--trust-checkpoint", "--out", str(out), "--format", "pdf"]) == 0
    data = json.loads((out / "spectra.json").read_text())["without_saliency"]
    expected = explainsteer(model)
    assert [l["kernel_shape"] for l in data["layers"]] == [[3, 3], [5, 5]]
    assert data["layers"][1]["e0"] == pytest.approx(expected.layers[1].spectra.e0.tolist(), rel=1e-6)
    assert (out / "ed_heatmap.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet18", "--data", "chexpert-nowhere"], "unknown --data source"),
        (["--model", "missing/model.pt"], "no checkpoint file"),
        (["--model", "resnet18", "--data", "synthetic", "--batches", "0"], "must be positive"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["explain", *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unknown_skip_layer_is_an_error(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "--model", "unet_d", "--skip", "no.such.layer", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--skip 'no.such.layer' is not a spatial conv" in err and "encoder.0.block1.depthwise" in err
    assert not out.exists()
