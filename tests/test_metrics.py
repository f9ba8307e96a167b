import math

import numpy as np
import pytest
import torch

from explainfix import ConfusionMatrix, dice, mcc, multilabel_auc, roc_auc, study_auc
from explainfix.train.metrics import BinaryCounts, binary_counts, dice_per_image

NAN = float("nan")


def brute_force_auc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(4))
def test_auc_equals_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=60), 1)  # many ties
    labels = (rng.random(60) < 0.3 + 0.1 * seed).astype(int)
    assert math.isclose(roc_auc(scores, labels), brute_force_auc(scores, labels), rel_tol=1e-12)
    assert math.isclose(roc_auc(torch.from_numpy(scores).float(), torch.from_numpy(labels)),
                        brute_force_auc(scores.astype(np.float32), labels), rel_tol=1e-12)


def test_auc_known_values():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([5, 5, 5, 5], [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.2, 0.2, 0.9], [0, 1, 1]) == 0.75


def test_auc_single_class_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="only negative labels"):
        assert math.isnan(roc_auc([0.1, 0.2], [0, 0], name="Edema"))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])


@pytest.mark.filterwarnings("ignore:ROC AUC of .* is undefined")
def test_multilabel_auc_ignores_uncertain_and_counts_missing_as_negative():
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.3], [0.7, 0.6, 0.1], [0.4, 0.3, 0.2], [0.1, 0.9, 0.5]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [-1, NAN, 0], [NAN, 0, 0], [1, 1, -1]])
    with pytest.warns(RuntimeWarning, match="ROC AUC of c is undefined: only negative"):
        result = multilabel_auc(scores, labels, tasks=["a", "b", "c"])
    # task a: rows 0,1,3,4 -> scores .9 .2 .4 .1 labels 1 0 0 1
    assert result.per_task[0] == brute_force_auc([0.9, 0.2, 0.4, 0.1], [1, 0, 0, 1]) == 0.5
    # task b: all rows, missing row 2 negative
    assert result.per_task[1] == brute_force_auc(scores[:, 1], [0, 1, 0, 0, 1]) == 1.0
    assert result.counts == ((2, 2), (2, 3), (0, 4))
    assert math.isnan(result.per_task[2])  # only negatives (row 4 uncertain)
    assert result.mean == 0.75
    assert result.as_dict() == {"a": 0.5, "b": 1.0, "c": result.per_task[2], "mean": 0.75}
    masked = multilabel_auc(scores, labels, mask=np.array([[0, 1, 1]] + [[1, 1, 1]] * 4, dtype=bool))
    assert masked.per_task[0] == brute_force_auc([0.2, 0.4, 0.1], [0, 0, 1])


def test_study_auc_takes_max_over_views():
    # studies: s1 (2 views), s2 (1), s3 (2), s4 (1)
    ids = ["s1", "s1", "s2", "s3", "s3", "s4"]
    scores = np.array([[0.1], [0.7], [0.5], [0.2], [0.3], [0.6]])
    labels = np.array([[1], [1], [0], [0], [-1], [1]])
    result = study_auc(scores, labels, ids)
    # per study: s1 .7/1, s2 .5/0, s3 .3/0, s4 .6/1 -> AUC 1.0; image level would be lower
    assert result.per_task == (1.0,)
    assert result.counts == ((2, 2),)
    image_level = multilabel_auc(scores, labels).per_task[0]
    assert image_level == brute_force_auc([0.1, 0.7, 0.5, 0.2, 0.6], [1, 1, 0, 0, 1])
    # a study whose views are all uncertain is ignored for that task
    res2 = study_auc(scores, np.array([[1], [1], [-1], [0], [-1], [1]]), ids)
    assert res2.counts == ((2, 1),)


def test_mcc_matches_closed_form_and_phi_coefficient():
    counts = BinaryCounts(tp=5, fp=2, tn=6, fn=1)
    assert math.isclose(counts.mcc, (5 * 6 - 2 * 1) / math.sqrt(7 * 6 * 8 * 7))
    rng = np.random.default_rng(2)
    target = rng.random(200) < 0.5
    pred = np.where(rng.random(200) < 0.7, target, rng.random(200) < 0.4)
    phi = np.corrcoef(pred.astype(float), target.astype(float))[0, 1]
    assert phi > 0.3
    assert math.isclose(mcc(torch.from_numpy(pred), torch.from_numpy(target)), phi, rel_tol=1e-10)
    # undefined (constant prediction) -> 0
    assert mcc(torch.zeros(5, dtype=torch.bool), torch.tensor([0, 1, 0, 1, 1])) == 0.0


def test_dice_pooled_and_per_image():
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]], [[-1.0, -1.0], [-1.0, -1.0]], [[1.0, 1.0], [-1.0, -1.0]]])
    target = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [1, 1]]])
    assert binary_counts(logits, target) == BinaryCounts(tp=1, fp=3, tn=5, fn=3)
    assert dice(logits, target) == 2 / (2 + 3 + 3)
    per_image = dice_per_image(logits, target)
    assert per_image.tolist() == [2 * 1 / (2 + 1 + 1), 1.0, 0.0]  # empty-empty image -> 1
    assert dice(torch.full((1, 4, 4), -1.0), torch.zeros(1, 4, 4)) == 1.0
    assert dice(torch.tensor([0.0, 0.1]), torch.tensor([1.0, 1.0])) == 2 / 3  # logit > 0 strictly


def test_confusion_matrix_accumulates_like_one_batch():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 1, 8, 8, generator=rng)
    target = torch.rand(6, 1, 8, 8, generator=rng) > 0.6
    cm = ConfusionMatrix()
    for i in range(0, 6, 2):
        cm.update(logits[i : i + 2], target[i : i + 2])
    assert cm.counts == binary_counts(logits, target)
    assert cm.counts.total == 6 * 64
    assert cm.dice == dice(logits, target) and cm.mcc == mcc(logits, target)
    cm.reset()
    assert cm.counts == BinaryCounts()
    with pytest.raises(ValueError, match="shape"):
        cm.update(logits, target[:3])
