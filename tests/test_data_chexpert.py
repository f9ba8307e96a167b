import gzip
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from explainfix.data import (
    TASKS,
    CheXpert,
    aggregate_by_study,
    as_xy,
    chexpert_splits,
    make_loader,
    resolve_chexpert_path,
    split_indices,
    study_id,
)
import refdata

PREFIX = "CheXpert-v1.0-small"
NAN = float("nan")
# (patient, study, view, height, width, labels for the five TASKS)
TRAIN_ROWS = [
    (1, 1, 1, 24, 20, (1, 0, -1, NAN, 1)),
    (2, 1, 1, 30, 26, (NAN, NAN, NAN, NAN, NAN)),
    (2, 2, 1, 20, 20, (-1, -1, -1, -1, -1)),
    (2, 2, 2, 22, 18, (0, 1, 0, 1, 0)),
    (3, 1, 1, 26, 22, (1, 1, 1, 1, 1)),
    (4, 1, 1, 21, 23, (0, NAN, -1, 1, NAN)),
]
VALID_ROWS = [
    (64541, 1, 1, 22, 20, (1, 0, 0, 1, 0)),
    (64541, 1, 2, 18, 24, (1, 0, 0, 1, 0)),
    (64542, 1, 1, 20, 20, (0, 1, 0, 0, 1)),
]


def _rel(split, p, s, v):
    return f"{split}/patient{p:05d}/study{s}/view{v}_frontal.jpg"


def write_chexpert(root, rows=TRAIN_ROWS, valid_rows=VALID_ROWS):
    """Tiny images in the exact CheXpert-v1.0-small layout, CSVs with the real columns."""
    rng = np.random.default_rng(0)
    for split, table in (("train", rows), ("valid", valid_rows)):
        records = []
        for p, s, v, h, w, labels in table:
            rel = _rel(split, p, s, v)
            f = root / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(f, quality=95)
            rec = {"Path": f"{PREFIX}/{rel}", "Sex": "Female", "Age": 60, "Frontal/Lateral": "Frontal", "AP/PA": "AP"}
            rec.update(dict(zip(TASKS, labels)))
            records.append(rec)
        pd.DataFrame(records).to_csv(root / f"{split}.csv", index=False)
    return root


@pytest.fixture
def root(tmp_path):
    return write_chexpert(tmp_path / PREFIX)


# ---------------------------------------------------------------- the real train.csv


@pytest.fixture(scope="module")
def real_csv(tmp_path_factory):
    data = refdata.chexpert_train_csv_gz()
    path = tmp_path_factory.mktemp("chexpert") / "train.csv.gz"
    path.write_bytes(data)
    return path


def test_real_train_csv_split_gives_the_papers_sizes(real_csv):
    splits = chexpert_splits(real_csv.parent, csv_file=real_csv)
    assert len(splits.train) + len(splits.val) == 223_414
    assert (len(splits.train), len(splits.val)) == (156_389, 67_025)
    assert splits.test is None  # no valid.csv next to it
    # same permutation as calling torch's random_split directly with the paper's generator
    direct = torch.utils.data.random_split(range(223_414), [156_389, 67_025], generator=torch.Generator().manual_seed(138))
    train_rows = splits.train._rows
    assert train_rows[:5].tolist() == direct[0].indices[:5]
    assert np.array_equal(train_rows, direct[0].indices) and np.array_equal(splits.val._rows, direct[1].indices)
    assert len(np.intersect1d(train_rows, splits.val._rows)) == 0
    # the split is by CSV row: the same rows every time
    assert split_indices(223_414, 0.7, 138)[0][:3] == train_rows[:3].tolist()


def test_real_train_csv_label_encoding_and_policies(real_csv):
    raw = pd.read_csv(real_csv)
    assert list(raw.columns[:5]) == ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
    assert raw["Path"].iloc[0] == "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    values = set(np.unique(raw[list(TASKS)].to_numpy()[~raw[list(TASKS)].isna().to_numpy()]))
    assert values == {-1.0, 0.0, 1.0}  # plus empty cells
    ignore = CheXpert(real_csv.parent, csv_file=real_csv)
    assert len(ignore) == 223_414
    # counts of the CSV's 1.0 / -1.0 per task, in TASKS order
    positives = [33_376, 27_000, 14_783, 52_246, 86_187]
    uncertain = [33_739, 8_087, 27_742, 12_984, 11_628]
    assert ignore.targets.sum(0).long().tolist() == positives
    assert (~ignore.target_masks).sum(0).tolist() == uncertain
    ones = CheXpert(real_csv.parent, csv_file=real_csv, label_policy="u-ones")
    assert ones.targets.sum(0).long().tolist() == [p + u for p, u in zip(positives, uncertain)]
    assert bool(ones.target_masks.all())
    zeros = CheXpert(real_csv.parent, csv_file=real_csv, label_policy="u-zeros")
    assert zeros.targets.sum(0).long().tolist() == positives and bool(zeros.target_masks.all())
    assert ignore.image_file(0) == real_csv.parent / "train/patient00001/study1/view1_frontal.jpg"
    assert ignore.studies[1] == "patient00002/study2"


# ---------------------------------------------------------------- generated images


def test_items_images_and_labels(root):
    ds = CheXpert(root, "train")
    assert len(ds) == len(TRAIN_ROWS)
    item = ds[0]
    assert set(item) == {"image", "target", "target_mask", "meta"}
    x = item["image"]
    assert x.dtype == torch.float32 and x.shape == (1, 24, 20)
    expected = np.asarray(Image.open(root / _rel("train", 1, 1, 1)).convert("L"), np.float32) / 255
    np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-7)
    assert item["target"].tolist() == [1, 0, 0, 0, 1]
    assert item["target_mask"].tolist() == [True, True, False, True, True]  # u-ignore masks the -1
    assert item["meta"] == {"row": 0, "path": f"{PREFIX}/{_rel('train', 1, 1, 1)}", "study": "patient00001/study1"}
    ones = CheXpert(root, "train", label_policy="u-ones")[2]
    assert ones["target"].tolist() == [1] * 5 and ones["target_mask"].all()
    zeros = CheXpert(root, "train", label_policy="u-zeros")[5]
    assert zeros["target"].tolist() == [0, 0, 0, 1, 0] and zeros["target_mask"].all()
    assert ds[-1]["meta"]["row"] == 5
    with pytest.raises(IndexError):
        ds[6]


def test_path_resolution(tmp_path):
    assert resolve_chexpert_path(tmp_path, "CheXpert-v1.0-small/valid/p/s/v.jpg") == tmp_path / "valid/p/s/v.jpg"
    assert resolve_chexpert_path(tmp_path, "CheXpert-v1.0/train/p/s/v.jpg") == tmp_path / "train/p/s/v.jpg"
    assert resolve_chexpert_path(tmp_path, "train/p/s/v.jpg") == tmp_path / "train/p/s/v.jpg"
    assert resolve_chexpert_path(tmp_path, "/abs/train/p/s/v.jpg").as_posix() == "/abs/train/p/s/v.jpg"
    assert study_id("CheXpert-v1.0-small/valid/patient64541/study1/view2_frontal.jpg") == "patient64541/study1"


def test_training_crop_and_padding(root):
    splits = chexpert_splits(root, crop_size=16, train_fraction=0.5, seed=138)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 3, 3)
    for k in range(len(splits.train)):
        crop = splits.train[(k, 5 + k)]["image"][0]
        full = CheXpert(root, "train")[splits.train[k]["meta"]["row"]]["image"][0]
        assert crop.shape == (16, 16)
        windows = full.unfold(0, 16, 1).unfold(1, 16, 1)  # every 16x16 window of the full image
        assert bool((windows == crop).all(-1).all(-1).any()), "crop is not a window of the image"
    # a crop larger than the image zero-pads it (centred: the only window that fits)
    big = chexpert_splits(root, crop_size=32, train_fraction=0.5).train
    item = big[0]
    full = CheXpert(root, "train")[item["meta"]["row"]]["image"]
    h, w = full.shape[-2:]
    top, left = (32 - h) // 2, (32 - w) // 2
    assert item["image"].shape == (1, 32, 32)
    assert torch.equal(item["image"][:, top : top + h, left : left + w], full)
    assert float(item["image"].sum()) == pytest.approx(float(full.sum()), rel=1e-6)


def test_eval_batches_are_zero_padded_to_the_largest_image(root):
    test = CheXpert(root, "valid")
    batch = next(iter(make_loader(test, batch_size=3, train=False, num_workers=0)))
    x = batch["image"]
    assert x.shape == (3, 1, 22, 24)  # max height 22, max width 24
    for i, (h, w) in enumerate([(22, 20), (18, 24), (20, 20)]):
        top, left = (22 - h) // 2, (24 - w) // 2
        assert torch.equal(x[i, :, top : top + h, left : left + w], test[i]["image"])
        inner = torch.zeros_like(x[i], dtype=torch.bool)
        inner[:, top : top + h, left : left + w] = True
        assert float(x[i][~inner].abs().sum()) == 0.0
    assert batch["target"].shape == (3, 5) and batch["target_mask"].dtype == torch.bool
    assert batch["meta"]["study"] == ["patient64541/study1", "patient64541/study1", "patient64542/study1"]


def test_epoch_sampler_draws_with_replacement_and_is_seeded(root):
    ds = chexpert_splits(root, crop_size=16, train_fraction=0.5).train  # 3 images
    def rows(seed):
        loader = make_loader(ds, 4, train=True, num_samples=15, replacement=True, seed=seed, num_workers=0)
        assert len(loader) == math.ceil(15 / 4)
        out = [r for b in loader for r in b["meta"]["row"].tolist()]
        assert len(out) == 15 and len(set(out)) <= 3  # 15 draws from 3 images: repeats
        return out, torch.cat([b["image"] for b in loader])
    a, xa = rows(7)
    b, xb = rows(7)
    c, _ = rows(8)
    assert a == b and torch.equal(xa, xb) and a != c


def test_study_level_aggregation(root):
    test = CheXpert(root, "valid")
    scores = torch.tensor([[0.2, 0.9], [0.6, 0.1], [0.3, 0.3]])
    studies, agg = aggregate_by_study(scores, test.studies)
    assert studies == ["patient64541/study1", "patient64542/study1"]
    assert torch.equal(agg, torch.tensor([[0.6, 0.9], [0.3, 0.3]]))
    _, mean = aggregate_by_study(scores, test.studies, reduce="mean")
    assert torch.allclose(mean, torch.tensor([[0.4, 0.5], [0.3, 0.3]]))
    _, labels = aggregate_by_study(test.targets, test.studies)
    assert labels.tolist() == [[1, 0, 0, 1, 0], [0, 1, 0, 0, 1]]
    _, masks = aggregate_by_study(test.target_masks, test.studies)
    assert masks.dtype == torch.bool
    with pytest.raises(ValueError, match="3 rows of values but 2 study ids"):
        aggregate_by_study(scores, ["a", "b"])


def test_as_xy_batches(root):
    x, y = next(iter(make_loader(as_xy(CheXpert(root, "valid")), 2, train=False, num_workers=0)))
    assert x.shape == (2, 1, 22, 24) and y.shape == (2, 5)


# ---------------------------------------------------------------- bad input


def test_missing_image_names_file_and_row(root):
    (root / _rel("train", 2, 2, 1)).unlink()
    ds = CheXpert(root, "train")
    with pytest.raises(FileNotFoundError, match=r"patient00002/study2/view1_frontal\.jpg \(.*train\.csv row 2\)"):
        ds[2]


def test_corrupt_image_names_file_and_row(root):
    (root / _rel("train", 3, 1, 1)).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*patient00003/study1/view1_frontal\.jpg \(.*train\.csv row 4\)"):
        CheXpert(root, "train")[4]
    # a truncated file (valid header, data cut off) fails too instead of giving a grey image
    f = root / _rel("train", 1, 1, 1)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(f, quality=95)
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(ValueError, match="row 0"):
        CheXpert(root, "train")[0]


def test_csv_without_expected_columns(root):
    frame = pd.read_csv(root / "train.csv").drop(columns=["Edema"])
    frame.to_csv(root / "train.csv", index=False)
    with pytest.raises(ValueError, match=r"train\.csv lacks the columns \['Edema'\]"):
        CheXpert(root, "train")


@pytest.mark.parametrize("value, shown", [(2.0, "2.0"), ("maybe", "'maybe'"), (0.5, "0.5")])
def test_unexpected_label_value_names_row_and_column(root, value, shown):
    frame = pd.read_csv(root / "train.csv")
    frame["Cardiomegaly"] = frame["Cardiomegaly"].astype(object)
    frame.loc[3, "Cardiomegaly"] = value
    frame.to_csv(root / "train.csv", index=False)
    with pytest.raises(ValueError, match=rf"row 3 \(line 5, Path .*view2_frontal\.jpg'\), column 'Cardiomegaly': unexpected label value .*{shown}"):
        CheXpert(root, "train")


def test_bad_arguments(root, tmp_path):
    with pytest.raises(ValueError, match="unknown label policy 'u-maybe'"):
        CheXpert(root, "train", label_policy="u-maybe")
    with pytest.raises(FileNotFoundError, match="CheXpert-v1.0-small folder"):
        CheXpert(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="split must be"):
        CheXpert(root, "test")


def test_gzip_csv_is_read_like_plain(root):
    plain = CheXpert(root, "train")
    gz = root / "labels.csv.gz"
    gz.write_bytes(gzip.compress((root / "train.csv").read_bytes()))
    zipped = CheXpert(root, "train", csv_file=gz)
    assert torch.equal(plain.targets, zipped.targets) and plain.paths == zipped.paths


def test_batches_feed_spatial_saliency_as_dicts_and_as_xy(root):
    import explainfix

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5)
    )
    ds = CheXpert(root, "valid")
    from_dicts = explainfix.spatial_saliency(model, make_loader(ds, 3, train=False, num_workers=0), progress=False)
    from_xy = explainfix.spatial_saliency(model, make_loader(as_xy(ds), 3, train=False, num_workers=0), progress=False)
    assert from_dicts["0"].shape == (4, 1) and float(from_dicts["0"].sum()) > 0
    assert torch.equal(from_dicts["0"], from_xy["0"])
