import numpy as np
import pytest
import torch

from explainfix.data import rle_decode, rle_decode_union, rle_encode
import refdata


def reference_encode(mask: np.ndarray) -> str:
    """Kaggle's definition spelled out pixel by pixel: 1-indexed, down columns first."""
    h, w = mask.shape
    pairs, start, number = [], None, 0
    for c in range(w):
        for r in range(h):
            number += 1
            if mask[r, c] and start is None:
                start = number
            elif not mask[r, c] and start is not None:
                pairs += [start, number - start]
                start = None
    if start is not None:
        pairs += [start, number + 1 - start]
    return " ".join(map(str, pairs))


def test_closed_form_examples():
    m = np.zeros((3, 3), bool)
    assert rle_encode(m) == ""
    m[0, 1] = True  # column 1, row 0 -> pixel 1*3 + 0 + 1 = 4
    assert rle_encode(m) == "4 1"
    m[1, 1] = m[2, 1] = m[0, 2] = True  # runs down column 1 into column 2
    assert rle_encode(m) == "4 4"
    assert rle_encode(np.ones((2, 5))) == "1 10"
    rect = np.zeros((2, 3), bool)
    rect[1, 0] = True
    assert rle_encode(rect) == "2 1"  # column-major: (row 1, col 0) is pixel 2, not pixel 4
    assert rle_decode("2 1", (2, 3)).nonzero() == (np.array([1]), np.array([0]))


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (5, 7), (33, 17)])
def test_encode_matches_reference_and_round_trips(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.1, 0.5, 0.9, 1.0):
        mask = rng.random(shape) < density
        text = rle_encode(mask)
        assert text == reference_encode(mask)
        back = rle_decode(text, shape)
        assert back.dtype == bool and back.shape == shape
        np.testing.assert_array_equal(back, mask)
    assert rle_encode(torch.from_numpy(mask)) == text  # tensors too


def test_union_of_overlapping_runs():
    a, b = "1 4", "3 4"  # pixels 1-4 and 3-6 of a 3x3 image
    union = rle_decode_union([a, b], (3, 3))
    expected = np.zeros(9, bool)
    expected[:6] = True
    np.testing.assert_array_equal(union, expected.reshape(3, 3, order="F"))
    assert rle_decode_union([], (2, 2)).sum() == 0
    assert rle_decode(float("nan"), (2, 2)).sum() == 0 and rle_decode("", (2, 2)).sum() == 0


def test_run_off_the_image_names_file_and_row():
    with pytest.raises(ValueError, match=r"stage1_solution\.csv, row 7: RLE run \(8, 3\) ends at pixel 10, past the image's 9 pixels"):
        rle_decode_union(["1 1", "8 3"], (3, 3), source="stage1_solution.csv", rows=[6, 7])
    rle_decode("8 2", (3, 3))  # ends exactly at the last pixel: fine


@pytest.mark.parametrize(
    "text, message",
    [("0 2", "start 0 < 1"), ("1 0", "run length 0 < 1"), ("1 2 3", "expected start/length pairs"), ("1 x", "not a list of integers")],
)
def test_malformed_rle(text, message):
    with pytest.raises(ValueError, match=f"f.csv, row 3: .*{message}"):
        rle_decode(text, (4, 4), source="f.csv", row=3)


def test_every_nucleus_of_the_real_dsb_image_round_trips():
    _, labels = refdata.dsb2018_image_and_instances()
    ids = np.unique(labels)[1:]
    assert labels.shape == (512, 512) and len(ids) == 125
    texts = []
    for k in ids:
        nucleus = labels == k
        text = rle_encode(nucleus)
        np.testing.assert_array_equal(rle_decode(text, labels.shape), nucleus)
        texts.append(text)
    assert texts[0] == reference_encode(labels == ids[0])
    np.testing.assert_array_equal(rle_decode_union(texts, labels.shape), labels > 0)
