"""Reference tests of the ExplainSteer spectra (Eqs. 3, 5, 6)."""
import itertools
import math

import numpy as np
import pytest
import scipy.fft
import torch

from explainfix import Spectra, spectra
from explainfix.explain import spectra_from_energy
from explainfix.kernels import dct_basis, frequency_order

SHAPES = [(3, 3), (5, 5), (7, 7), (3, 5), (4,), (9,), (3, 3, 3), (2, 3, 4)]


def reference(F: np.ndarray, w: np.ndarray, shape):
    """Straightforward numpy/scipy version: dctn projections and explicit loops."""
    d = len(shape)
    P = np.stack([scipy.fft.dctn(f, norm="ortho").reshape(-1) for f in F])  # raster order
    ed = w @ np.abs(P)
    e1 = [np.zeros(n) for n in shape]
    for i, k in enumerate(itertools.product(*(range(n) for n in shape))):
        for j, kj in enumerate(k):
            e1[j][kj] += ed[i] ** (1.0 / d)
    e0 = np.mean(np.stack(e1), axis=0) if len(set(shape)) == 1 else None
    return ed, np.concatenate(e1), e0


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_scipy_reference(shape):
    g = torch.Generator().manual_seed(1)
    F = torch.randn(11, *shape, generator=g, dtype=torch.float64)
    w = torch.rand(11, generator=g, dtype=torch.float64)
    s = spectra(F, w)
    ed, e1, e0 = reference(F.numpy(), w.numpy(), shape)
    np.testing.assert_allclose(s.ed_raster.numpy(), ed, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.ed.numpy(), ed[frequency_order(shape)], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.e1.numpy(), e1, rtol=1e-12, atol=1e-12)
    if e0 is None:
        assert s.e0 is None
    else:
        np.testing.assert_allclose(s.e0.numpy(), e0, rtol=1e-12, atol=1e-12)
    assert s.shape == shape and s.order == tuple(frequency_order(shape))
    assert s.ed.shape == (math.prod(shape),) and s.e1.shape == (sum(shape),)
    assert s.ed.dtype == torch.float64


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (3, 5), (6,), (2, 3, 4)])
def test_single_basis_filter_is_one_hot(shape):
    B = dct_basis(shape, dtype=torch.float64)
    m, d = B.shape[0], len(shape)
    for i in [0, 1, m // 2, m - 1]:
        s = spectra(B[[i]])
        expected = torch.zeros(m, dtype=torch.float64)
        expected[i] = 1.0
        torch.testing.assert_close(s.ed_raster, expected, atol=1e-12, rtol=0)
        q = s.order.index(i)
        assert s.ed.argmax().item() == q and s.ed[q].item() == pytest.approx(1.0, abs=1e-12)
        # e1: one at the 1-D frequency of each dimension the filter is built from
        k = np.unravel_index(i, shape)
        e1 = torch.zeros(sum(shape), dtype=torch.float64)
        offsets = np.cumsum((0,) + shape[:-1])
        for j in range(d):
            e1[offsets[j] + k[j]] = 1.0
        # Eq. 5 takes d-th roots, which lift round-off ~1e-16 of the zero entries to ~1e-16^(1/d)
        torch.testing.assert_close(s.e1, e1, atol=m * 1e-15 ** (1 / d), rtol=0)


def test_two_dimensional_e1_sums_of_square_roots():
    g = torch.Generator().manual_seed(2)
    ed = torch.rand(15, generator=g, dtype=torch.float64)
    s = spectra_from_energy(ed, (3, 5))
    grid = ed.reshape(3, 5).sqrt()
    torch.testing.assert_close(s.e1[:3], grid.sum(1))
    torch.testing.assert_close(s.e1[3:], grid.sum(0))
    assert s.e0 is None
    assert [t.shape[0] for t in s.e1_per_dim()] == [3, 5]


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf")])
def test_energy_must_be_finite_and_nonnegative(bad):
    # a negative energy would become NaN under the d-th root of Eq. 5
    ed = torch.ones(9, dtype=torch.float64)
    ed[4] = bad
    with pytest.raises(ValueError, match="finite and nonnegative"):
        spectra_from_energy(ed, (3, 3))
    ok = spectra_from_energy(ed.clamp(0, 1).nan_to_num(0.0), (3, 3))
    assert torch.isfinite(ok.e1).all() and float(ok.e0.sum()) > 0


def test_e0_is_mean_over_dimensions_not_sum():
    g = torch.Generator().manual_seed(3)
    s = spectra(torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64))
    E1 = s.e1.reshape(3, 3)
    torch.testing.assert_close(s.e0, E1.mean(0))
    torch.testing.assert_close(3 * s.e0, E1.sum(0))


def test_one_dimensional_e0_equals_e1_equals_ed_raster():
    F = torch.randn(4, 5, dtype=torch.float64)
    s = spectra(F)
    torch.testing.assert_close(s.e0, s.e1)
    torch.testing.assert_close(s.e1, s.ed_raster)


def test_parseval_and_invariances():
    g = torch.Generator().manual_seed(4)
    f = torch.randn(1, 5, 5, generator=g, dtype=torch.float64)
    s = spectra(f, torch.ones(1, dtype=torch.float64))
    # orthonormal basis: the projection keeps the kernel's norm
    assert torch.linalg.vector_norm(s.ed).item() == pytest.approx(torch.linalg.vector_norm(f).item(), rel=1e-12)
    F = torch.randn(6, 3, 3, generator=g, dtype=torch.float64)
    w = torch.rand(6, generator=g, dtype=torch.float64)
    base = spectra(F, w)
    torch.testing.assert_close(spectra(-F, w).ed, base.ed)  # sign-blind
    torch.testing.assert_close(spectra(2.5 * F, w).ed, 2.5 * base.ed)  # positively homogeneous
    torch.testing.assert_close(spectra(F, 3 * w).ed, 3 * base.ed)  # linear in w
    perm = torch.randperm(6, generator=g)
    torch.testing.assert_close(spectra(F[perm], w[perm]).ed, base.ed)  # kernel order is irrelevant
    # e^(d) of a union of kernel sets is the sum of their e^(d)
    a, b = spectra(F[:2], w[:2]), spectra(F[2:], w[2:])
    torch.testing.assert_close(a.ed_raster + b.ed_raster, base.ed_raster)
    torch.testing.assert_close(spectra_from_energy(a.ed_raster + b.ed_raster, (3, 3)).e1, base.e1)


def test_default_weights_are_uniform():
    F = torch.randn(7, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(spectra(F).ed, spectra(F, torch.full((7,), 1 / 7, dtype=torch.float64)).ed)
    # uniform weights: e^(d) is the mean absolute projection
    P = F.reshape(7, 9) @ dct_basis((3, 3), dtype=torch.float64).reshape(9, 9).T
    torch.testing.assert_close(spectra(F).ed_raster, P.abs().mean(0))


def test_flattened_and_leading_dimensions():
    W = torch.randn(4, 3, 3, 5, dtype=torch.float64)  # a conv weight (out, in, kh, kw)
    w = torch.rand(4, 3, dtype=torch.float64)
    ref = spectra(W.reshape(12, 3, 5), w.reshape(12))
    torch.testing.assert_close(spectra(W, w, shape=(3, 5)).ed, ref.ed)
    torch.testing.assert_close(spectra(W.reshape(12, 15), w.reshape(12), shape=(3, 5)).ed, ref.ed)
    torch.testing.assert_close(spectra(W.reshape(12, 15), shape=[3, 5]).e1, spectra(W.reshape(12, 3, 5)).e1)


def test_dtypes():
    F = torch.randn(3, 3, 3)
    assert spectra(F).ed.dtype == torch.float32
    assert spectra(F.double()).e1.dtype == torch.float64
    half = spectra(F.half())
    assert half.ed.dtype == torch.float32
    torch.testing.assert_close(half.ed, spectra(F.half().float()).ed)


def test_result_is_frozen_and_serialisable():
    s = spectra(torch.randn(2, 3, 3))
    assert isinstance(s, Spectra)
    with pytest.raises(Exception):
        s.ed = None
    d = s.to_dict()
    assert d["shape"] == [3, 3] and len(d["ed"]) == 9 and len(d["e1"]) == 6 and len(d["e0"]) == 3
    assert spectra(torch.randn(2, 3, 4)).to_dict()["e0"] is None


@pytest.mark.parametrize(
    "F, w, shape, match",
    [
        (torch.zeros(0, 3, 3), None, None, "no kernels"),
        (torch.randn(4, 3, 3), -torch.ones(4), None, "nonnegative"),
        (torch.randn(4, 3, 3), torch.tensor([1.0, float("nan"), 1.0, 1.0]), None, "finite"),
        (torch.randn(4, 3, 3), torch.ones(5), None, r"\(4,\)"),
        (torch.randn(4, 10), None, (3, 3), "does not hold kernels"),
        (torch.randn(9), None, None, "shape"),
        (torch.randn(4, 3, 3), None, (0, 3), "positive"),
    ],
)
def test_bad_input(F, w, shape, match):
    with pytest.raises(ValueError, match=match):
        spectra(F, w, shape)
