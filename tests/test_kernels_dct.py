import numpy as np
import pytest
import scipy.fft
import torch

from explainfix import dct_basis, frequency_order
from explainfix.kernels import basis_frequencies, dct_basis_1d


def scipy_basis(shape):
    """Basis filters from scipy: the DCT-II of a delta at x is column x of the basis."""
    m = int(np.prod(shape))
    deltas = np.eye(m).reshape(m, *shape)
    coeffs = scipy.fft.dctn(deltas, norm="ortho", axes=tuple(range(1, len(shape) + 1)))
    # coeffs[x, k...] = basis_k(x); transpose to basis_k(x) with k first
    return coeffs.reshape(m, m).T.reshape(m, *shape)


@pytest.mark.parametrize("shape", [(3,), (5,), (3, 3), (5, 5), (7, 7), (2, 3), (3, 5), (3, 3, 3), (2, 3, 4)])
def test_dct_basis_matches_scipy(shape):
    ours = dct_basis(shape, dtype=torch.float64).numpy()
    np.testing.assert_allclose(ours, scipy_basis(shape), atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_dct_basis_1d_matches_scipy_dct(n):
    ref = scipy.fft.dct(np.eye(n), norm="ortho", axis=0)
    np.testing.assert_allclose(dct_basis_1d(n, dtype=torch.float64).numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (3, 5), (3, 3, 3), (4,)])
def test_dct_basis_orthonormal(shape):
    b = dct_basis(shape, dtype=torch.float64).reshape(int(np.prod(shape)), -1)
    torch.testing.assert_close(b @ b.T, torch.eye(b.shape[0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_dct_basis_dtype_device_and_raster_order():
    b = dct_basis((2, 3), dtype=torch.float16)
    assert b.dtype == torch.float16 and b.shape == (6, 2, 3)
    # basis index 1 is k=(0,1): constant along dim 0, one half-cosine along dim 1
    b64 = dct_basis((2, 3), dtype=torch.float64)
    assert torch.allclose(b64[1][0], b64[1][1])
    assert b64[1][0][0] > 0 > b64[1][0][2]
    assert basis_frequencies((2, 3)).tolist()[1] == [0, 1]


def test_frequency_order_3x3_matches_appendix_f():
    assert frequency_order((3, 3)) == [0, 1, 3, 2, 6, 4, 5, 7, 8]


def test_frequency_order_5x5_diagonals_edges_first():
    order = frequency_order((5, 5))
    assert sorted(order) == list(range(25))
    freqs = basis_frequencies((5, 5))[order]
    sums = freqs.sum(1).tolist()
    assert sums == sorted(sums)
    # on the diagonal k1+k2=4: (0,4), (4,0) edges first, then (1,3), (3,1), then (2,2)
    diag = [tuple(f) for f in freqs.tolist() if sum(f) == 4]
    assert diag == [(0, 4), (4, 0), (1, 3), (3, 1), (2, 2)]


def test_frequency_order_non_square_and_3d():
    # 3x5: physical frequency k/N, so (0,1)=1/5 precedes (1,0)=1/3
    order = frequency_order((3, 5))
    assert order[:3] == [0, 1, 5]
    o3 = frequency_order((3, 3, 3))
    assert o3[0] == 0 and sorted(o3) == list(range(27))
    f3 = basis_frequencies((3, 3, 3))[o3].tolist()
    assert f3[1:4] == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
    # on the diagonal of total 2, pure (0,0,2)-type edges come before mixed (0,1,1)
    diag = [tuple(f) for f in f3 if sum(f) == 2]
    assert diag[:3] == [(0, 0, 2), (0, 2, 0), (2, 0, 0)]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="kernel shape"):
        dct_basis((3, 0))
    with pytest.raises(ValueError, match="kernel shape"):
        frequency_order(())


@pytest.mark.parametrize("bad", [(3.5, 3), "33", None, (3, "3"), torch.tensor([2.5, 3.0])])
def test_non_integer_shapes_are_refused_not_truncated(bad):
    # (3.5, 3) used to become (3, 3) and "33" the shape (3, 3)
    with pytest.raises(ValueError, match=r"positive sizes \(integers\)"):
        dct_basis(bad)


def test_integer_like_shapes_are_accepted():
    ref = dct_basis((3, 5))
    for shape in [[3, 5], torch.Size([3, 5]), torch.tensor([3, 5]), np.array([3, 5]), (3.0, 5.0)]:
        assert torch.equal(dct_basis(shape), ref)
    assert dct_basis(np.int64(4)).shape == (4, 4) and dct_basis(torch.tensor(4)).shape == (4, 4)
