import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image

from explainfix.data import (
    CSVDataset,
    ImageFolderDataset,
    RandomCrop,
    as_xy,
    make_loader,
    read_image,
    read_mask,
)
from explainfix.data.transforms import Compose, RandomFlip4


def _grey(rng, h, w):
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "xrays"
    for name, n in (("normal", 3), ("effusion", 2)):
        (root / name).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(_grey(rng, 10 + k, 12)).save(root / name / f"img{k}.png")
    (root / "normal" / "notes.txt").write_text("not an image")
    (root / "normal" / ".hidden.png").write_bytes(b"")
    return root


def test_image_folder_classes_targets_and_pixels(folder):
    ds = ImageFolderDataset(folder)
    assert ds.classes == ["effusion", "normal"]
    assert len(ds) == 5 and ds.targets.tolist() == [0, 0, 1, 1, 1]
    item = ds[3]
    assert item["target"].dtype == torch.int64 and int(item["target"]) == 1
    assert item["meta"] == {"path": str(folder / "normal" / "img1.png"), "class": "normal"}
    expected = np.asarray(Image.open(folder / "normal" / "img1.png"), np.float32) / 255
    assert item["image"].shape == (1, 11, 12)
    np.testing.assert_allclose(item["image"][0].numpy(), expected, atol=1e-7)
    rgb = ImageFolderDataset(folder, channels=3)[3]["image"]
    assert rgb.shape == (3, 11, 12) and torch.equal(rgb[0], rgb[2])
    assert ImageFolderDataset(folder, classes=["normal"]).targets.tolist() == [0, 0, 0]


def test_image_folder_loader_crops_and_xy(folder):
    ds = ImageFolderDataset(folder, transform=RandomCrop(8))
    batch = next(iter(make_loader(ds, 5, train=True, seed=0, num_workers=0)))
    assert batch["image"].shape == (5, 1, 8, 8) and sorted(batch["target"].tolist()) == [0, 0, 1, 1, 1]
    x, y = next(iter(make_loader(as_xy(ImageFolderDataset(folder)), 5, train=False, num_workers=0)))
    assert x.shape == (5, 1, 12, 12) and y.tolist() == [0, 0, 1, 1, 1]  # padded to the largest


def test_image_folder_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "nothing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path / "flat")
    (folder / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty holds no images"):
        ImageFolderDataset(folder)
    with pytest.raises(FileNotFoundError, match="class folder not found"):
        ImageFolderDataset(folder, classes=["normal", "typo"])


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    rows = []
    for k in range(4):
        image = _grey(rng, 12, 14)
        Image.fromarray(image).save(tmp_path / "img" / f"{k}.png")
        mask = np.zeros((12, 14), np.uint8)
        mask[k : k + 4, 2 * k : 2 * k + 5] = 255
        Image.fromarray(mask).save(tmp_path / "img" / f"{k}_mask.png")
        rows.append({"path": f"img/{k}.png", "mask": f"img/{k}_mask.png", "a": k % 2, "b": [1.0, None, 0.0, 0.5][k]})
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_csv_classification_labels_and_missing_values(table):
    ds = CSVDataset(table, label_columns=["a", "b"])
    assert len(ds) == 4
    item = ds[1]
    assert item["target"].tolist() == [1.0, 0.0] and item["target_mask"].tolist() == [True, False]
    assert ds[3]["target"].tolist() == [1.0, 0.5]
    assert item["meta"] == {"row": 1, "path": str(table.parent / "img/1.png")}
    expected = np.asarray(Image.open(table.parent / "img/1.png"), np.float32) / 255
    np.testing.assert_allclose(item["image"][0].numpy(), expected, atol=1e-7)


def test_csv_segmentation_masks_follow_crops_and_flips(table):
    ds = CSVDataset(table, mask_column="mask", channels=3)
    item = ds[2]
    assert item["image"].shape == (3, 12, 14) and item["target"].shape == (1, 12, 14)
    assert int(item["target"].sum()) == 4 * 5 and item["target"][0, 2, 4] == 1
    # replace images by their masks to check alignment after augmentation
    frame = pd.read_csv(table)
    frame["path"] = frame["mask"]
    frame.to_csv(table, index=False)
    aug = CSVDataset(table, mask_column="mask", transform=Compose([RandomCrop(9), RandomFlip4()]))
    for seed in range(8):
        out = aug[(seed % 4, seed)]
        assert out["image"].shape == (1, 9, 9) and torch.equal(out["image"], out["target"])


def test_csv_errors(table, tmp_path):
    with pytest.raises(ValueError, match="exactly one of label_columns"):
        CSVDataset(table)
    with pytest.raises(ValueError, match=r"labels\.csv lacks the columns \['c'\]"):
        CSVDataset(table, label_columns=["a", "c"])
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        CSVDataset(tmp_path / "none.csv", label_columns=["a"])
    frame = pd.read_csv(table)
    frame["b"] = frame["b"].astype(object)
    frame.loc[2, "b"] = "positive"
    frame.to_csv(table, index=False)
    with pytest.raises(ValueError, match=r"labels\.csv, row 2 \(line 4\), column 'b': label 'positive' is not a number"):
        CSVDataset(table, label_columns=["b"])
    frame.loc[2, "b"] = 1
    frame.loc[1, "path"] = None
    frame.to_csv(table, index=False)
    with pytest.raises(ValueError, match=r"row 1 \(line 3\): empty 'path'"):
        CSVDataset(table, label_columns=["b"])
    frame.loc[1, "path"] = "img/missing.png"
    frame.to_csv(table, index=False)
    ds = CSVDataset(table, label_columns=["b"])
    with pytest.raises(FileNotFoundError, match=r"missing\.png \(.*labels\.csv row 1\)"):
        ds[1]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(table.parent / "img/0_mask.png")
    with pytest.raises(ValueError, match=r"0_mask\.png \(.*row 0\) has size \(5, 5\) but image .* has \(12, 14\)"):
        CSVDataset(table, mask_column="mask")[0]


def test_read_image_bit_depths_channels_and_ranges(tmp_path):
    sixteen = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "16.png")
    x = read_image(tmp_path / "16.png")
    assert x.shape == (1, 2, 2)
    np.testing.assert_allclose(x[0].numpy(), sixteen / 65535, atol=1e-6)
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert torch.equal(read_image(tmp_path / "rgba.png"), torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 2, 3))
    grey = read_image(tmp_path / "rgba.png", channels=1)  # ITU-R 601 luma of pure red
    assert torch.allclose(grey, torch.full((1, 2, 3), 0.299), atol=1e-6)
    tifffile.imwrite(tmp_path / "f.tif", np.full((3, 4), 0.25, np.float32))
    assert torch.equal(read_image(tmp_path / "f.tif", channels=3), torch.full((3, 3, 4), 0.25))
    tifffile.imwrite(tmp_path / "big.tif", np.full((3, 4), 2.0, np.float32))
    with pytest.raises(ValueError, match=r"big\.tif .*must hold finite values in \[0, 1\]"):
        read_image(tmp_path / "big.tif")
    assert read_mask(tmp_path / "rgba.png").all()  # alpha ignored, red > 0
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*none\.png \(somewhere\)"):
        read_image(tmp_path / "none.png", where="somewhere")


def test_loader_on_a_plain_torch_dataset():
    from torch.utils.data import TensorDataset

    ds = TensorDataset(torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10))
    loader = make_loader(ds, 4, train=True, seed=3, num_workers=0)
    first = [y.tolist() for _, y in loader]
    assert [y.tolist() for _, y in make_loader(ds, 4, train=True, seed=3, num_workers=0)] == first
    assert sorted(sum(first, [])) == list(range(10)) and sum(first, []) != list(range(10))
    x, y = next(iter(make_loader(ds, 4, train=False, num_workers=0)))
    assert x.shape == (4, 1, 1, 1) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="num_samples only applies"):
        make_loader(ds, 4, train=False, num_samples=5)
