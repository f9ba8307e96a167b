"""Issue 13, items 6 and 8: data that silently shifted or darkened; RLE numbers past int64."""
import pytest

from explainfix.data import rle_decode


def test_rle_number_past_int64_is_named():
    with pytest.raises(ValueError, match=r"labels.csv, row 4: RLE number 99999999999999999999 is too large"):
        rle_decode("1 99999999999999999999", (4, 4), source="labels.csv", row=4)


def _csv(tmp_path, text):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_csv_row_with_extra_fields_is_refused_naming_the_row(tmp_path):
    from explainfix.data import CSVDataset

    # pandas alone takes a first row with one extra field as an index column and shifts every column
    table = _csv(tmp_path, "path,view,a\nx.png,Frontal,AP,1\ny.png,Frontal,AP,0\n")
    with pytest.raises(ValueError, match=r"labels.csv, row 0 \(line 2\): 4 fields, more than the header's 3"):
        CSVDataset(table, label_columns=["a"])


@pytest.mark.parametrize("policy, target, mask", [
    (None, [0.0, 1.0, 0.0], [False, True, True]),  # the default: U-Ignore
    ("u-ignore", [0.0, 1.0, 0.0], [False, True, True]),
    ("u-zeros", [0.0, 1.0, 0.0], [True, True, True]),
    ("u-ones", [1.0, 1.0, 0.0], [True, True, True]),
    ("keep", [-1.0, 1.0, 0.0], [True, True, True]),
])
def test_csv_uncertain_label_policy_is_explicit(tmp_path, policy, target, mask):
    import torch

    from explainfix.data import CSVDataset

    table = _csv(tmp_path, "path,a,b,c\nx.png,-1,1,0\n")
    kwargs = {} if policy is None else {"label_policy": policy}
    ds = CSVDataset(table, label_columns=["a", "b", "c"], **kwargs)
    assert ds._target[0].tolist() == target and ds._target_mask[0].tolist() == mask
    with pytest.raises(ValueError, match="unknown label_policy 'ignore'"):
        CSVDataset(table, label_columns=["a"], label_policy="ignore")


def test_uint16_tiff_holding_8_bit_data_is_scaled_by_its_range_with_a_warning(tmp_path):
    import numpy as np
    import tifffile

    from explainfix.data import read_image
    from explainfix.data.images import ImageScaleWarning

    data = np.array([[0, 235], [100, 20]], np.uint16)
    tifffile.imwrite(tmp_path / "dim.tif", data)
    with pytest.warns(ImageScaleWarning, match=r"dim.tif holds values 0-235 only: scaled by 255"):
        x = read_image(tmp_path / "dim.tif", channels=1)
    np.testing.assert_allclose(x[0].numpy(), data / 255, atol=1e-6)
    twelve = np.array([[0, 4000]], np.uint16)
    tifffile.imwrite(tmp_path / "twelve.tif", twelve)
    with pytest.warns(ImageScaleWarning, match="scaled by 4095"):
        np.testing.assert_allclose(read_image(tmp_path / "twelve.tif", channels=1)[0].numpy(), twelve / 4095, atol=1e-6)
    full = np.array([[0, 60000]], np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", full)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(read_image(tmp_path / "full.tif", channels=1)[0].numpy(), full / 65535, atol=1e-6)


def test_bbbc038_reads_tiff_images_and_masks(tmp_path):
    import numpy as np
    import tifffile
    import torch

    from explainfix.data import BBBC038v1

    image_id = "t" * 64
    base = tmp_path / "stage1_train" / image_id
    (base / "images").mkdir(parents=True)
    (base / "masks").mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    tifffile.imwrite(base / "images" / f"{image_id}.tif", rgb)
    mask = np.zeros((16, 16), np.uint8)
    mask[2:6, 3:9] = 255
    tifffile.imwrite(base / "masks" / "nucleus1.tiff", mask)
    item = BBBC038v1(tmp_path, "stage1_train", mean=None)[0]
    assert torch.equal(item["target"][0].bool(), torch.from_numpy(mask > 0))
    torch.testing.assert_close(item["image"], torch.from_numpy(rgb / 255).permute(2, 0, 1).float())
