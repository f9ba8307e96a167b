import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from explainfix.data import (
    BBBC038v1,
    bbbc038_train_transform,
    make_loader,
    rle_encode,
    split_indices,
)
from explainfix.data.transforms import Compose, RandomCrop, RandomFlip4, random_flip4, random_noise
import refdata


def _id(k: int) -> str:
    return f"{k:04d}" + "ab" * 30  # 64 hex characters, like Kaggle's ids


def random_instances(rng, h, w, n):
    """Instance label image with n rectangular nuclei (may touch / overlap)."""
    labels = np.zeros((h, w), np.uint16)
    for k in range(1, n + 1):
        r, c = rng.integers(0, h - 3), rng.integers(0, w - 3)
        labels[r : r + rng.integers(2, 5), c : c + rng.integers(2, 5)] = k
    return labels


def write_image(folder, image_id, rgb, mode="RGBA"):
    d = folder / image_id / "images"
    d.mkdir(parents=True, exist_ok=True)
    if mode == "RGBA":
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        Image.fromarray(rgba, "RGBA").save(d / f"{image_id}.png")
    else:
        Image.fromarray(rgb[..., 0], "L").save(d / f"{image_id}.png")


def write_masks(folder, image_id, labels):
    d = folder / image_id / "masks"
    d.mkdir(parents=True, exist_ok=True)
    for k in np.unique(labels)[1:]:
        Image.fromarray(((labels == k) * 255).astype(np.uint8), "L").save(d / f"nucleus{k:03d}.png")


def solution_rows(image_id, labels, usage):
    h, w = labels.shape
    return [
        {"ImageId": image_id, "EncodedPixels": rle_encode(labels == k), "Height": h, "Width": w, "Usage": usage}
        for k in np.unique(labels)[1:]
    ]


@pytest.fixture
def bbbc(tmp_path):
    """A tiny BBBC038v1 in the exact Kaggle layout; returns (root, {id: labels}, {id: rgb})."""
    rng = np.random.default_rng(0)
    root = tmp_path / "BBBC038v1"
    labels, images = {}, {}
    sizes = [(20, 24), (24, 20), (18, 18), (22, 26)]
    for k, (h, w) in enumerate(sizes):  # stage1_train: one grey, others RGBA
        i = _id(k)
        images[i] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if k == 2:
            images[i][:] = images[i][..., :1]
        labels[i] = random_instances(rng, h, w, 4)
        write_image(root / "stage1_train", i, images[i], mode="L" if k == 2 else "RGBA")
        write_masks(root / "stage1_train", i, labels[i])
    rows = []
    for k in (10, 11):  # stage1_test + stage1_solution.csv
        i = _id(k)
        images[i] = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        labels[i] = random_instances(rng, 16, 20, 3)
        write_image(root / "stage1_test", i, images[i])
        rows += solution_rows(i, labels[i], "Public" if k == 10 else "Private")
    pd.DataFrame(rows).to_csv(root / "stage1_solution.csv", index=False)
    rows = []
    for k, usage in ((20, "Private"), (21, "Ignored"), (22, "Public"), (23, "Ignored")):  # stage 2
        i = _id(k)
        images[i] = rng.integers(0, 256, (18, 16, 3), dtype=np.uint8)
        labels[i] = random_instances(rng, 18, 16, 3)
        write_image(root / "stage2_test_final", i, images[i])
        if usage == "Ignored":
            rows.append({"ImageId": i, "EncodedPixels": "1 1", "Height": 18, "Width": 16, "Usage": usage})
        else:
            rows += solution_rows(i, labels[i], usage)
    write_image(root / "stage2_test_final", _id(24), images[_id(20)])  # an image with no CSV rows
    pd.DataFrame(rows).to_csv(root / "stage2_solution_final.csv", index=False)
    return root, labels, images


def test_stage1_train_masks_are_unions_and_images_are_centred(bbbc):
    root, labels, images = bbbc
    ds = BBBC038v1(root, "stage1_train")
    assert len(ds) == 4 and ds.ids == sorted(ds.ids)
    for k in range(4):
        item = ds[k]
        i = ds.ids[k]
        assert set(item) == {"image", "target", "target_mask", "meta"}
        assert item["image"].shape == (3, *labels[i].shape) and item["image"].dtype == torch.float32
        assert torch.equal(item["target"][0], torch.from_numpy(labels[i] > 0).float())
        assert item["target_mask"].all()
        rgb = torch.from_numpy(images[i]).permute(2, 0, 1).float() / 255  # alpha dropped, grey repeated
        assert torch.allclose(item["image"], rgb - rgb.mean() + 0.5, atol=1e-6)
        assert float(item["image"].mean()) == pytest.approx(0.5, abs=1e-6)
        assert item["meta"]["id"] == i
    raw = BBBC038v1(root, "stage1_train", mean=None)[2]["image"]  # the grey image: 3 equal channels
    assert torch.equal(raw[0], raw[1]) and torch.equal(raw[1], raw[2]) and 0 <= raw.min() and raw.max() <= 1


def test_test_splits_from_solution_csvs(bbbc):
    root, labels, _ = bbbc
    s1 = BBBC038v1(root, "stage1_test")
    assert s1.ids == [_id(10), _id(11)]
    for k, i in enumerate(s1.ids):
        assert torch.equal(s1[k]["target"][0].bool(), torch.from_numpy(labels[i] > 0))
    s2 = BBBC038v1(root, "stage2_test")
    assert s2.ids == [_id(20), _id(22)]  # 'Ignored' rows dropped, unlisted images left out
    for k, i in enumerate(s2.ids):
        assert torch.equal(s2.mask(k), torch.from_numpy(labels[i] > 0))
    assert len(BBBC038v1(root, "stage2_test", usage=None)) == 4


def test_real_dsb_image_through_the_kaggle_layout(tmp_path):
    image, instances = refdata.dsb2018_image_and_instances()
    assert image.shape == instances.shape == (512, 512) and len(np.unique(instances)) - 1 == 125
    assert image.max() <= 255  # stored as uint16 but 8-bit data, as the DSB PNGs
    rgb = np.repeat(image.astype(np.uint8)[..., None], 3, axis=-1)
    root, i = tmp_path / "dsb", "d" * 64
    write_image(root / "stage1_train", i, rgb)
    write_masks(root / "stage1_train", i, instances)
    assert len(list((root / "stage1_train" / i / "masks").glob("*.png"))) == 125
    write_image(root / "stage1_test", i, rgb)
    pd.DataFrame(solution_rows(i, instances, "Public")).to_csv(root / "stage1_solution.csv", index=False)
    truth = torch.from_numpy(instances > 0)
    from_pngs = BBBC038v1(root, "stage1_train")[0]
    from_rles = BBBC038v1(root, "stage1_test")[0]
    assert torch.equal(from_pngs["target"][0].bool(), truth)
    assert torch.equal(from_rles["target"][0].bool(), truth)
    assert torch.equal(from_pngs["image"], from_rles["image"])
    x = torch.from_numpy(image.astype(np.float32) / 255)
    assert torch.allclose(from_pngs["image"][1], x - x.mean() + 0.5, atol=1e-6)
    # the paper's training pipeline on the real image
    train = BBBC038v1(root, "stage1_train", transform=bbbc038_train_transform())
    item = train[(0, 123)]
    assert item["image"].shape == (3, 256, 256) and item["target"].shape == (1, 256, 256)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.5
    again = train[(0, 123)]  # the same key gives the same augmented sample
    assert torch.equal(again["image"], item["image"]) and torch.equal(again["target"], item["target"])
    assert not torch.equal(train[(0, 124)]["image"], item["image"])


def test_crop_and_flip_move_image_and_mask_together(bbbc):
    root, labels, _ = bbbc
    # make the image encode its own mask, then check they stay aligned through crop + flip
    for i in BBBC038v1(root, "stage1_train").ids:
        m = ((labels[i] > 0) * 255).astype(np.uint8)
        write_image(root / "stage1_train", i, np.repeat(m[..., None], 3, -1))
    ds = BBBC038v1(root, "stage1_train", mean=None, transform=Compose([RandomCrop(12), RandomFlip4()]))
    for seed in range(12):
        item = ds[(seed % 4, seed)]
        assert item["image"].shape == (3, 12, 12)
        assert torch.equal(item["image"][0], item["target"][0])
    padded = BBBC038v1(root, "stage1_train", mean=None, transform=RandomCrop(30))[(2, 0)]  # 18x18 -> 30x30
    assert padded["image"].shape == (3, 30, 30)
    assert int(padded["target_mask"].sum()) == 18 * 18  # padding is marked unlabelled
    assert torch.equal(padded["image"][0], padded["target"][0])


def test_flip_and_noise_probabilities():
    item = {"image": torch.arange(4.0).view(1, 2, 2)}
    seen = {}
    for s in range(800):
        out = random_flip4(item, torch.Generator().manual_seed(s))["image"].flatten().tolist()
        seen[tuple(out)] = seen.get(tuple(out), 0) + 1
    assert sorted(seen) == sorted([(0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0)])
    assert all(150 <= n <= 250 for n in seen.values()), seen  # 200 expected each
    flat = {"image": torch.full((1, 64, 64), 0.5)}
    applied, stds = 0, []
    for s in range(400):
        out = random_noise(flat, torch.Generator().manual_seed(s))["image"]
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        if not torch.equal(out, flat["image"]):
            applied += 1
            stds.append(float((out - 0.5).std()))
    assert 0.75 <= applied / 400 <= 0.85  # p = 0.8
    assert 0.09 <= min(stds) and max(stds) <= 0.205  # N(0,1) / U(5, 10): std in [0.1, 0.2]
    assert np.mean(stds) == pytest.approx(np.mean(1 / np.random.default_rng(0).uniform(5, 10, 100_000)), abs=0.01)


def test_same_seed_same_batches_with_any_number_of_workers(bbbc):
    root, _, _ = bbbc
    ds = BBBC038v1(root, "stage1_train", transform=bbbc038_train_transform(size=16))

    def epoch(seed, workers):
        loader = make_loader(ds, 3, train=True, seed=seed, num_workers=workers)
        return [(b["meta"]["id"], b["image"], b["target"]) for b in loader]

    a, b, c = epoch(5, 0), epoch(5, 2), epoch(6, 0)
    assert len(a) == 2  # 4 images, batch 3
    for (ia, xa, ya), (ib, xb, yb) in zip(a, b):
        assert ia == ib and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(xa, xc) for (_, xa, _), (_, xc, _) in zip(a, c))
    loader = make_loader(ds, 3, train=True, seed=5, num_workers=0)
    first, second = [torch.cat([b["image"] for b in loader]) for _ in range(2)]
    assert not torch.equal(first, second)  # a new epoch draws new crops


def test_eval_loader_full_size_batch_one(bbbc):
    root, labels, _ = bbbc
    ds = BBBC038v1(root, "stage1_test")
    batches = list(make_loader(ds, 1, train=False, num_workers=0))
    assert [tuple(b["image"].shape) for b in batches] == [(1, 3, 16, 20)] * 2
    assert torch.equal(batches[0]["target"][0, 0].bool(), torch.from_numpy(labels[_id(10)] > 0))


def test_paper_train_val_split_sizes(bbbc):
    first, second = split_indices(670, 0.7, seed=0)
    assert (len(first), len(second)) == (468, 202)
    root, _, _ = bbbc
    a, b = split_indices(4, 0.5, seed=1)
    assert sorted(BBBC038v1(root, indices=a).ids + BBBC038v1(root, indices=b).ids) == BBBC038v1(root).ids


# ---------------------------------------------------------------- bad input


def test_rle_off_the_image_names_file_and_row(bbbc):
    root, _, _ = bbbc
    frame = pd.read_csv(root / "stage1_solution.csv")
    frame.loc[2, "EncodedPixels"] = "300 50"  # 16 x 20 = 320 pixels
    frame.to_csv(root / "stage1_solution.csv", index=False)
    ds = BBBC038v1(root, "stage1_test")
    k = ds.ids.index(frame.loc[2, "ImageId"])
    with pytest.raises(ValueError, match=r"stage1_solution\.csv, row 2: RLE run \(300, 50\) ends at pixel 349, past the image's 320 pixels"):
        ds[k]


def test_size_disagreeing_with_csv_names_row(bbbc):
    root, _, _ = bbbc
    frame = pd.read_csv(root / "stage1_solution.csv")
    frame.loc[1, "Width"] = 21
    frame.to_csv(root / "stage1_solution.csv", index=False)
    with pytest.raises(ValueError, match=r"stage1_solution\.csv, row 1: Width 21 but image .* has size \(16, 20\)"):
        BBBC038v1(root, "stage1_test")[0]


def test_missing_and_corrupt_images(bbbc):
    root, _, _ = bbbc
    (root / "stage1_test" / _id(11) / "images" / f"{_id(11)}.png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{_id(11)}\.png \(ImageId of .*stage1_solution\.csv row \d+\)"):
        BBBC038v1(root, "stage1_test")
    bad = root / "stage1_train" / _id(1) / "images" / f"{_id(1)}.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=rf"cannot read image .*{_id(1)}\.png"):
        BBBC038v1(root, "stage1_train")[1]
    m = next((root / "stage1_train" / _id(0) / "masks").glob("*.png"))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(m)
    with pytest.raises(ValueError, match=rf"mask .*{m.name} has size \(5, 5\) but its image has \(20, 24\)"):
        BBBC038v1(root, "stage1_train")[0]
    for f in (root / "stage1_train" / _id(3) / "masks").glob("*.png"):
        f.unlink()
    with pytest.raises(ValueError, match="no nucleus masks"):
        BBBC038v1(root, "stage1_train")[3]


def test_csv_without_expected_columns(bbbc):
    root, _, _ = bbbc
    pd.read_csv(root / "stage1_solution.csv").rename(columns={"EncodedPixels": "Pixels"}).to_csv(
        root / "stage1_solution.csv", index=False
    )
    with pytest.raises(ValueError, match=r"stage1_solution\.csv lacks the columns \['EncodedPixels'\]"):
        BBBC038v1(root, "stage1_test")
    with pytest.raises(ValueError, match="unknown split"):
        BBBC038v1(root, "stage3")
    with pytest.raises(FileNotFoundError, match="stage2_test_final"):
        BBBC038v1(root / "elsewhere", "stage2_test")
