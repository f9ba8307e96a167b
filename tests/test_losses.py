import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explainfix import ChexpertFocalBCE, PixelBCE
from explainfix.train.losses import u_ignore

NAN = float("nan")
# 6 training images x 3 tasks: 1 pos, 0 neg, -1 uncertain, NaN missing
TRAIN = np.array(
    [
        [1, 0, NAN],
        [0, 1, -1],
        [NAN, 1, 1],
        [1, -1, 0],
        [-1, NAN, NAN],
        [0, 1, 0],
    ]
)


def reference_loss(logits, labels, c_pos, c_neg, gamma=1.0):
    """Eqs. 7-11 written out in numpy, loops where the paper sums."""
    n_tasks = len(c_pos)
    a_pos, a_neg = np.zeros(n_tasks), np.zeros(n_tasks)
    for t in range(n_tasks):
        c = np.array([c_pos[t], c_neg[t]], dtype=float)
        x = c.max() / c  # standard class balancing weights ...
        x = x / x.sum()  # ... normalised
        a_pos[t], a_neg[t] = x
        assert math.isclose(a_pos[t], 1 / (1 + c_pos[t] / c_neg[t]))  # Eq. 8
        assert math.isclose(a_neg[t], 1 / (1 + c_neg[t] / c_pos[t]))  # Eq. 9
    c_task = np.asarray(c_pos, float) + np.asarray(c_neg, float)  # Eq. 10
    w_task = np.array([1 / (1 + c_task[t] * sum(1 / c_task[i] for i in range(n_tasks) if i != t)) for t in range(n_tasks)])
    m = (labels != -1).astype(float)
    y = np.where(labels == 1, 1.0, 0.0)  # missing -> negative
    yhat = 0.99999 / (1 + np.exp(-logits)) + 0.000005
    w_pos = a_pos * (1 - yhat) ** gamma
    w_neg = a_neg * yhat**gamma
    L = -m * w_task * (w_pos * y * np.log(yhat) + w_neg * (1 - y) * np.log(1 - yhat))  # Eq. 7
    return L.sum(1).mean(), L, a_pos, a_neg, w_task


def test_from_labels_counts_u_ignore():
    loss = ChexpertFocalBCE.from_labels(TRAIN)
    # task 0: pos rows 0,3; neg rows 1, 2 (missing), 5; row 4 uncertain. task 1: neg rows 0, 4 (missing)
    assert loss.c_pos.tolist() == [2, 3, 1]
    assert loss.c_neg.tolist() == [3, 2, 4]
    mask = np.ones_like(TRAIN, dtype=bool)
    mask[0, 0] = False
    assert ChexpertFocalBCE.from_labels(TRAIN, mask).c_pos.tolist() == [1, 3, 1]


def test_weights_closed_form():
    loss = ChexpertFocalBCE([1, 3], [3, 1])
    assert loss.a_pos.tolist() == [0.75, 0.25]
    assert loss.a_neg.tolist() == [0.25, 0.75]
    assert loss.w_task.tolist() == [0.5, 0.5]
    w = ChexpertFocalBCE([1, 2], [1, 4]).w_task  # c_t = 2, 6: w_0 = 1/(1 + 2/6), w_1 = 1/(1 + 6/2)
    torch.testing.assert_close(w, torch.tensor([0.75, 0.25]))


@pytest.mark.parametrize("gamma", [1.0, 0.0, 2.0])
def test_matches_numpy_reference_of_eqs_7_to_11(gamma):
    loss_fn = ChexpertFocalBCE.from_labels(TRAIN, gamma=gamma).double()
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4, 3))
    logits[0, 0] = 40.0  # saturated sigmoid stays finite thanks to the rescaling
    batch = np.array([[1, 0, -1], [0, NAN, 1], [-1, 1, 0], [1, 1, NAN]])
    expected, L, a_pos, a_neg, w_task = reference_loss(
        logits, batch, loss_fn.c_pos.numpy(), loss_fn.c_neg.numpy(), gamma
    )
    np.testing.assert_allclose(loss_fn.a_pos.numpy(), a_pos, rtol=1e-6)
    np.testing.assert_allclose(loss_fn.a_neg.numpy(), a_neg, rtol=1e-6)
    np.testing.assert_allclose(loss_fn.w_task.numpy(), w_task, rtol=1e-6)
    got_L = loss_fn.unreduced(torch.from_numpy(logits), torch.from_numpy(batch))
    np.testing.assert_allclose(got_L.numpy(), L, rtol=1e-6, atol=1e-12)
    got = loss_fn(torch.from_numpy(logits), torch.from_numpy(batch))
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    assert got_L[0, 2] == 0 and got_L[2, 0] == 0  # uncertain labels give no loss


def test_masked_entries_get_no_gradient_and_float32_works():
    loss_fn = ChexpertFocalBCE.from_labels(TRAIN)
    logits = torch.randn(3, 3, requires_grad=True)
    labels = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, NAN], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, True], [True, True, True], [False, True, True]])
    loss = loss_fn(logits, labels, mask)
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[2, 0] == 0
    assert (logits.grad[0, 0] < 0) and (logits.grad[0, 2] > 0)  # push positive up, negative down
    assert torch.isfinite(loss) and loss.dtype == torch.float32


def test_gamma_zero_balanced_is_scaled_bce():
    loss_fn = ChexpertFocalBCE([5, 5], [5, 5], gamma=0.0)  # a = 0.5, w = 0.5
    logits = torch.randn(4, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (4, 2)).double()
    yhat = 0.99999 * torch.sigmoid(logits) + 0.000005
    bce = F.binary_cross_entropy(yhat, y, reduction="none")
    torch.testing.assert_close(loss_fn.double()(logits, y), (0.25 * bce).sum(1).mean())


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"tasks \[1\] have no labelled"):
        ChexpertFocalBCE([1, 0], [1, 0])
    with pytest.raises(ValueError, match="must be 1 .*got \\[2.0\\]"):
        ChexpertFocalBCE.from_labels(np.array([[1, 2], [0, 1]]))
    loss_fn = ChexpertFocalBCE([1, 1], [1, 1])
    with pytest.raises(ValueError, match=r"logits must be \(N, 2\)"):
        loss_fn(torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="labels shape"):
        loss_fn(torch.zeros(3, 2), torch.zeros(2, 2))
    # one-sided counts take the limit of Eqs. 8-9
    one_sided = ChexpertFocalBCE([0, 2], [3, 2])
    assert one_sided.a_pos.tolist() == [1.0, 0.5] and one_sided.a_neg.tolist() == [0.0, 0.5]


def test_u_ignore():
    y, m = u_ignore(torch.tensor([[1.0, 0.0, -1.0, NAN]]))
    assert y.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    assert m.tolist() == [[True, True, False, True]]


def test_pixel_bce_reference():
    logits = torch.randn(2, 1, 5, 4, dtype=torch.float64)
    target = torch.rand(2, 1, 5, 4) > 0.5
    p = torch.sigmoid(logits)
    t = target.double()
    expected = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    torch.testing.assert_close(PixelBCE()(logits, target), expected)
    with pytest.raises(ValueError, match="target shape"):
        PixelBCE()(logits, target[:, :, :4])
