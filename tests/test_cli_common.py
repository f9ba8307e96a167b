"""``explainfix.cli._common``: one way to resolve a model and to get data, for every command."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from explainfix.cli import main
from explainfix.data.sources import DATA_SOURCES, data_source
from explainfix.models.resolve import resolve_model
from test_data_bbbc038 import _id, random_instances, write_image, write_masks
from test_data_chexpert import PREFIX, TASKS, TRAIN_ROWS, write_chexpert


def _classifier(in_chans: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, outputs))


def _windows(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every ``size x size`` window of an image zero-padded (centred) to at least ``size``."""
    h, w = image.shape[-2:]
    dh, dw = max(0, size - h), max(0, size - w)
    image = nn.functional.pad(image, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
    h, w = image.shape[-2:]
    return [image[..., r : r + size, c : c + size] for r in range(h - size + 1) for c in range(w - size + 1)]


def _is_crop_of(x: torch.Tensor, images: list[torch.Tensor]) -> bool:
    return any(torch.equal(x, window) for image in images for window in _windows(image, x.shape[-1]))


# ------------------------------------------------------------------------- models
def test_resolve_registered_name_gives_arch_for_the_checkpoint():
    model, arch = resolve_model("resnet18", in_chans=3, num_classes=2)
    assert arch == {"name": "resnet18", "kwargs": {"in_chans": 3, "num_classes": 2}}
    assert model.conv1.in_channels == 3 and model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 2)
    assert resolve_model("resnet18")[1] == {"name": "resnet18", "kwargs": {}}


def test_resolve_checkpoint_file(tmp_path):
    from explainfix.checkpoint import save

    model = _classifier(1, 3)
    path = save(model, tmp_path / "small.pt")
    loaded, arch = resolve_model(str(path), trust=True)
    x = torch.rand(2, 1, 9, 9)
    assert arch is None and torch.equal(loaded.eval()(x), model.eval()(x))


def test_resolve_torchvision_only_name_and_errors():
    model, arch = resolve_model("squeezenet1_1", num_classes=4)
    assert arch is None and type(model).__name__ == "SqueezeNet"
    assert model.classifier[1].out_channels == 4
    with pytest.raises(ValueError, match="squeezenet1_1.*3 input channels"):
        resolve_model("squeezenet1_1", in_chans=1)
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'; did you mean .*resnet50"):
        resolve_model("resnet5")
    with pytest.raises(FileNotFoundError, match="no checkpoint file at missing/model.pt"):
        resolve_model("missing/model.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        resolve_model("model.pth")


# ------------------------------------------------------------------------- synthetic
def test_synthetic_images_fit_the_first_conv_and_targets_the_output():
    model = nn.Sequential(nn.Conv3d(2, 3, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten()).double()
    loader, target = data_source("synthetic", model, batches=3, batch_size=2, image_size=5, seed=7)
    assert len(loader) == 3 and all(x.shape == (2, 2, 5, 5, 5) and x.dtype == torch.float64 for x in loader)
    assert 0 <= float(loader[0].min()) and float(loader[0].max()) < 1
    again, _ = data_source("synthetic", model, batches=3, batch_size=2, image_size=5, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(loader, again))
    y = target(torch.zeros(64, 3, dtype=torch.float64), loader[0])
    assert y.shape == (64, 3) and y.dtype == torch.float64 and set(y.unique().tolist()) == {0.0, 1.0}
    sizes, _ = data_source("synthetic", model, batches=1, batch_size=1, image_size=(4, 5, 6), seed=0)
    assert sizes[0].shape == (1, 2, 4, 5, 6)


# ------------------------------------------------------------------------- real data
@pytest.fixture
def chexpert_root(tmp_path):
    return write_chexpert(tmp_path / PREFIX)


def test_chexpert_source_gives_crops_and_labels_of_the_training_split(chexpert_root):
    from explainfix.data import chexpert_splits

    loader, target = data_source(f"chexpert:{chexpert_root}", _classifier(1, 5), batches=3, batch_size=2,
                                 image_size=16, seed=0)
    assert target is None and len(loader) == 3
    batches = list(loader)
    assert len(batches) == 3
    train = chexpert_splits(chexpert_root).train
    full = [train.subset([i], transform=None)[0] for i in range(len(train))]  # the 70 % split, 4 of 6 rows
    for x, y in batches:
        assert x.shape == (2, 1, 16, 16) and y.shape == (2, len(TASKS))
        for xi, yi in zip(x, y):
            owners = [item for item in full if torch.equal(item["target"], yi)]
            assert owners and _is_crop_of(xi, [item["image"] for item in owners])
    assert len(full) == 4 < len(TRAIN_ROWS)
    # every pass gives the same batches, so calibration, saliency and pruning see the same images
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, loader))
    with pytest.raises(ValueError, match="chexpert gives 1-channel images, but the model takes 3"):
        data_source(f"chexpert:{chexpert_root}", _classifier(3, 5), batches=1, batch_size=1, image_size=8, seed=0)


@pytest.fixture
def bbbc_root(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "BBBC038v1"
    for k, (h, w) in enumerate([(20, 24), (18, 18), (22, 16)]):
        write_image(root / "stage1_train", _id(k), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        write_masks(root / "stage1_train", _id(k), random_instances(rng, h, w, 4))
    return root


def test_bbbc038_source_gives_matching_image_and_mask_crops(bbbc_root):
    from explainfix.data import BBBC038v1

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    loader, target = data_source(f"bbbc038:{bbbc_root}", model, batches=2, batch_size=3, image_size=12, seed=3)
    assert target is None
    items = [BBBC038v1(bbbc_root)[i] for i in range(3)]
    pairs = [torch.cat([item["image"], item["target"]]) for item in items]  # crop image and mask together
    n = 0
    for x, y in loader:
        assert x.shape == (3, 3, 12, 12) and y.shape == (3, 1, 12, 12)
        assert set(y.unique().tolist()) <= {0.0, 1.0}
        for xi, yi in zip(x, y):
            assert _is_crop_of(torch.cat([xi, yi]), pairs)
            n += 1
    assert n == 6


def _write_images(folder, names, rng, size=(10, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), "L").save(folder / name)


def test_folder_source_gives_class_indices(tmp_path):
    rng = np.random.default_rng(2)
    _write_images(tmp_path / "xrays" / "effusion", ["a.png", "b.png"], rng)
    _write_images(tmp_path / "xrays" / "normal", ["c.png"], rng)
    loader, target = data_source(f"folder:{tmp_path / 'xrays'}", _classifier(1, 2), batches=2, batch_size=3,
                                 image_size=8, seed=0)
    labels = [y for _, y in loader]
    assert target is None and [tuple(y.shape) for y in labels] == [(3,), (3,)]
    assert torch.cat(labels).dtype == torch.int64 and sorted(torch.cat(labels).tolist()) == [0, 0, 0, 0, 1, 1]


def test_csv_source_labels_or_mask(tmp_path):
    rng = np.random.default_rng(3)
    _write_images(tmp_path / "img", ["0.png", "1.png"], rng)
    _write_images(tmp_path / "msk", ["0.png", "1.png"], rng)
    pd.DataFrame({"path": ["img/0.png", "img/1.png"], "a": [1, 0], "b": [0.5, 1]}).to_csv(tmp_path / "labels.csv", index=False)
    loader, _ = data_source(f"csv:{tmp_path / 'labels.csv'}", _classifier(1, 2), batches=1, batch_size=2,
                            image_size=8, seed=0)
    (x, y), = list(loader)
    assert x.shape == (2, 1, 8, 8) and sorted(y.tolist()) == [[0.0, 1.0], [1.0, 0.5]]
    pd.DataFrame({"path": ["img/0.png", "img/1.png"], "mask": ["msk/0.png", "msk/1.png"]}).to_csv(tmp_path / "seg.csv", index=False)
    seg = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1))
    (x, y), = list(data_source(f"csv:{tmp_path / 'seg.csv'}", seg, batches=1, batch_size=2, image_size=6, seed=0)[0])
    assert x.shape == (2, 3, 6, 6) and y.shape == (2, 1, 6, 6) and set(y.unique().tolist()) <= {0.0, 1.0}
    pd.DataFrame({"file": ["img/0.png"], "a": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="needs a 'path' column"):
        data_source(f"csv:{tmp_path / 'bad.csv'}", seg, batches=1, batch_size=1, image_size=4, seed=0)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("imagenet", ValueError, r"unknown --data source 'imagenet'; choose one of \['bbbc038', 'chexpert', 'csv', 'folder', 'nuclei-demo', 'synthetic'\]"),
        ("chexpert", ValueError, "--data chexpert needs root: --data chexpert:ROOT"),
        ("folder", ValueError, "--data folder needs dir"),
        ("synthetic:big", ValueError, "synthetic takes no option"),
        ("chexpert:{tmp}/nowhere", FileNotFoundError, "train.csv not found"),
        ("bbbc038:{tmp}/nowhere", ValueError, "bbbc038 gives 3-channel images, but the model takes 1 channels"),
        ("folder:{tmp}/nowhere", FileNotFoundError, "image folder not found"),
        ("csv:{tmp}/nowhere.csv", FileNotFoundError, "CSV file not found"),
    ],
)
def test_data_source_errors(tmp_path, spec, error, message):
    with pytest.raises(error, match=message):
        data_source(spec.format(tmp=tmp_path), _classifier(1, 5), batches=1, batch_size=1, image_size=8, seed=0)


def test_data_source_rejects_non_positive_sizes_and_unsupported_channels(tmp_path):
    for kwargs in ({"batches": 0}, {"batch_size": 0}, {"image_size": 0}):
        args = {"batches": 1, "batch_size": 1, "image_size": 8, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match="must be positive"):
            data_source("synthetic", _classifier(1, 5), **args)
    with pytest.raises(ValueError, match="grey \\(1\\) or RGB \\(3\\) images; the model takes 2"):
        data_source(f"folder:{tmp_path}", _classifier(2, 5), batches=1, batch_size=1, image_size=8, seed=0)
    with pytest.raises(FileNotFoundError, match="BBBC038v1 folder not found"):
        data_source(f"bbbc038:{tmp_path}/nowhere", _classifier(3, 1), batches=1, batch_size=1, image_size=8, seed=0)
    assert sorted(DATA_SOURCES) == ["bbbc038", "chexpert", "csv", "folder", "nuclei-demo", "synthetic"]


# ------------------------------------------------------------------------- commands
def test_explain_and_prune_read_real_data(tmp_path, chexpert_root, bbbc_root):
    from explainfix.checkpoint import load, save

    out = tmp_path / "explain"
    assert main(["explain", "--model", "resnet18", "--data", f"chexpert:{chexpert_root}", "--batches", "2",
                 "--batch-size", "2", "--image-size", "32", "--no-progress", "--out", str(out)]) == 0
    salient = json.loads((out / "spectra.json").read_text())["with_saliency"]
    assert salient["n_batches"] == 2 and len(salient["layers"]) == 17

    seg = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 1, 1))
    path = save(seg, tmp_path / "seg.pt")
    pruned = tmp_path / "pruned"
    assert main(["prune", "--model", str(path), "--trust-checkpoint", "--ratio", "0.5", "--scores", "saliency", "--data",
                 f"bbbc038:{bbbc_root}", "--batches", "2", "--batch-size", "2", "--image-size", "12",
                 "--input-size", "3", "12", "12", "--no-progress", "--out", str(pruned)]) == 0
    report = json.loads((pruned / "report.json").read_text())
    assert report["data"] == f"bbbc038:{bbbc_root}" and report["scores"] == "saliency"
    assert report["params_after"] < report["params_before"]
    assert load(pruned / "model.pt", trust=True)(torch.rand(1, 3, 12, 12)).shape == (1, 1, 12, 12)


def test_in_channels_is_an_alias_of_in_chans(tmp_path):
    out = tmp_path / "rgb"
    assert main(["explain", "--model", "resnet18", "--in-channels", "3", "--num-classes", "2", "--out", str(out)]) == 0
    stem = json.loads((out / "spectra.json").read_text())["without_saliency"]["layers"][0]
    assert stem["name"] == "conv1" and stem["n_kernels"] == 64 * 3


def test_commands_share_the_model_and_data_errors(tmp_path, capsys):
    for command in (["explain"], ["prune", "--ratio", "0.5", "--scores", "saliency"]):
        assert main([*command, "--model", "resnet18", "--data", "mnist", "--out", str(tmp_path / "a")]) == 2
        assert main([*command, "--model", "resnett18", "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert "unknown --data source 'mnist'" in err and "did you mean resnet18" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "--model", "unet_d", "--ratio", "0.5"],
        ["explain", "--model", "unet_d"],
        ["demo"],
        ["filters"],
    ],
)
def test_every_command_refuses_an_out_that_is_a_file(tmp_path, capsys, argv):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert main([*argv, "--out", str(a_file)]) == 2
    assert f"--out '{a_file}' exists and is not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
