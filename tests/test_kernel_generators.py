import math

import numpy as np
import pytest
import torch

from explainfix import dct2_kernels, dct_basis, ghaar_kernels, ones_kernels, psine_kernels
from explainfix import kernels as K

GENERATORS = [ones_kernels, dct2_kernels, ghaar_kernels, psine_kernels]
SHAPES = [(3, 3), (5, 5), (7, 7), (3, 5), (3,), (3, 3, 3), (2, 3, 4)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("fn", GENERATORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", SHAPES)
def test_generators_shape_dtype_and_finite(fn, shape):
    k = fn(11, shape, generator=gen(), dtype=torch.float64)
    assert k.shape == (11, *shape) and k.dtype == torch.float64
    assert torch.isfinite(k).all()
    assert fn(0, shape, generator=gen()).shape == (0, *shape)
    half = fn(4, shape, generator=gen(), dtype=torch.float16)
    assert half.dtype == torch.float16


@pytest.mark.parametrize("fn", [dct2_kernels, ghaar_kernels, psine_kernels], ids=lambda f: f.__name__)
def test_generators_reproducible_from_the_generator(fn):
    a = fn(50, (3, 3), generator=gen(1))
    b = fn(50, (3, 3), generator=gen(1))
    c = fn(50, (3, 3), generator=gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("fn", GENERATORS, ids=lambda f: f.__name__)
def test_generators_reject_bad_input(fn):
    with pytest.raises(ValueError, match="non-negative integer"):
        fn(-1, (3, 3))
    with pytest.raises(ValueError, match="positive sizes"):
        fn(2, (3, 0))
    with pytest.raises(ValueError, match="floating point"):
        fn(2, (3, 3), dtype=torch.int64)


def test_ones_kernels_are_constant_one():
    k = ones_kernels(7, (3, 5), dtype=torch.float64)
    assert torch.equal(k, torch.ones(7, 3, 5, dtype=torch.float64))


def _basis_index(kernels, shape):
    """Index of the basis filter each kernel equals; asserts equality to 1e-12."""
    B = dct_basis(shape, dtype=torch.float64).reshape(math.prod(shape), -1)
    F = kernels.reshape(kernels.shape[0], -1).to(torch.float64)
    idx = (F @ B.T).abs().argmax(dim=1)
    torch.testing.assert_close(F, B[idx], atol=1e-12, rtol=0)
    return idx


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (3, 5), (3, 3, 3), (4,)])
@pytest.mark.parametrize("n", [1, 8, 9, 100, 1000])
def test_dct2_kernels_are_basis_filters_used_evenly(shape, n):
    m = math.prod(shape)
    k = dct2_kernels(n, shape, generator=gen(), dtype=torch.float64)
    counts = torch.bincount(_basis_index(k, shape), minlength=m)
    assert counts.sum() == n
    assert counts.min() >= n // m and counts.max() <= -(-n // m)


def test_dct2_energy_spectrum_is_flat():
    # the paper's sanity check: |F B^T| summed over kernels is the same for every basis filter
    shape, n = (3, 3), 9 * 40
    k = dct2_kernels(n, shape, generator=gen(3), dtype=torch.float64).reshape(n, -1)
    B = dct_basis(shape, dtype=torch.float64).reshape(9, -1)
    ed = (k @ B.T).abs().sum(0)
    torch.testing.assert_close(ed, torch.full((9,), 40.0, dtype=torch.float64))


def test_dct2_which_filters_get_the_remainder_is_random():
    picks = {tuple(torch.bincount(K.dct2_indices(10, 9, generator=gen(s)), minlength=9).tolist()) for s in range(20)}
    assert len(picks) > 1


def test_ghaar_2d_closed_form_by_hand():
    # f = 1 on 3x3: x = (0, pi/2, pi), cos(x) = (1, 0, -1)
    params = K.GHaarParams(torch.tensor([1.0], dtype=torch.float64), torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64))
    expected = torch.tensor([[2.0, 2, 2], [0, 0, 0], [-2, -2, -2]], dtype=torch.float64)
    torch.testing.assert_close(K.ghaar_from_params(params, (3, 3))[0], expected, atol=1e-12, rtol=0)
    params = K.GHaarParams(params.frequencies, torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64))
    b = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    expected = 0.5 * b[None, :].expand(3, 3) + torch.outer(b, b)
    torch.testing.assert_close(K.ghaar_from_params(params, (3, 3))[0], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (3, 5), (20, 20)])
def test_ghaar_from_params_matches_formula(shape):
    p = K.ghaar_params(6, shape, generator=gen(4))
    ours = K.ghaar_from_params(p, shape).numpy()
    for i in range(6):
        f = float(p.frequencies[i])
        h, v, d = p.weights[i].tolist()
        xr, xc = np.linspace(0, np.pi, shape[0]), np.linspace(0, np.pi, shape[1])
        ref = h * np.cos(f * xr)[:, None] + v * np.cos(f * xc)[None, :] + d * np.outer(np.cos(f * xr), np.cos(f * xc))
        np.testing.assert_allclose(ours[i], ref, atol=1e-12)


def test_ghaar_3d_uses_every_nonempty_subset():
    subsets = K.ghaar_subsets(3)
    assert len(subsets) == 7 and (False, False, False) not in subsets and len(set(subsets)) == 7
    f = torch.tensor([0.7], dtype=torch.float64)
    w = torch.zeros(1, 7, dtype=torch.float64)
    w[0, subsets.index((True, False, True))] = 1.0
    k = K.ghaar_from_params(K.GHaarParams(f, w), (3, 4, 5))[0]
    c = [torch.cos(0.7 * torch.linspace(0, math.pi, n, dtype=torch.float64)) for n in (3, 4, 5)]
    torch.testing.assert_close(k, torch.einsum("i,j,k->ijk", c[0], torch.ones(4, dtype=torch.float64), c[2]))


def test_ghaar_parameter_ranges_and_generator_uses_them():
    p = K.ghaar_params(5000, (3, 5), generator=gen())
    assert p.frequencies.min() >= 0 and p.frequencies.max() < 2 * (5 - 1)
    assert p.frequencies.max() > 7.5  # uses the range up to 2(N-1) with N = max(shape)
    assert p.weights.abs().max() <= 1 and p.weights.shape == (5000, 3)
    k = ghaar_kernels(20, (3, 3), generator=gen(9), dtype=torch.float64)
    ref = K.ghaar_from_params(K.ghaar_params(20, (3, 3), generator=gen(9)), (3, 3))
    torch.testing.assert_close(k, ref, atol=0, rtol=0)


def test_ghaar_normalize_option():
    raw = ghaar_kernels(100, (5, 5), generator=gen(), dtype=torch.float64).reshape(100, -1)
    assert raw.mean(1).abs().max() > 0.05  # not normalized by default
    k = ghaar_kernels(100, (5, 5), generator=gen(), normalize=True, dtype=torch.float64).reshape(100, -1)
    torch.testing.assert_close(k.mean(1), torch.zeros(100, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(k.norm(dim=1), torch.ones(100, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (7, 7), (3, 5), (3, 3, 3), (7,)])
def test_psine_kernels_whitened_option(shape):
    k = psine_kernels(300, shape, generator=gen(), dtype=torch.float64, normalize="whiten").reshape(300, -1)
    torch.testing.assert_close(k.mean(1), torch.zeros(300, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(k.norm(dim=1), torch.ones(300, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (3, 5), (3, 3, 3)])
def test_psine_kernels_minmax_default_spans_its_range_then_unit_norm(shape):
    raw = psine_kernels(300, shape, generator=gen(), dtype=torch.float64).reshape(300, -1)
    scale = raw.norm(dim=1, keepdim=True)
    torch.testing.assert_close(scale.squeeze(1), torch.ones(300, dtype=torch.float64))
    # before the norm the kernel spans exactly [-1, 1]: its min and max are -c and +c for c = 1 / norm
    c = raw.amax(1)
    torch.testing.assert_close(raw.amin(1), -c)
    assert raw.mean(1).abs().max() > 0.05, "min-max keeps a DC component (unlike whitening)"
    same = psine_kernels(300, shape, generator=gen(), dtype=torch.float64, normalize="minmax").reshape(300, -1)
    assert torch.equal(raw, same)
    with pytest.raises(ValueError, match="normalize"):
        psine_kernels(2, shape, generator=gen(), normalize="zscore")


def test_psine_parameters_satisfy_full_steering_constraint():
    p = K.psine_params(5000, (3, 3), generator=gen())
    assert p.terms.min() >= 4 and p.terms.max() <= K.PSINE_MAX_TERMS
    assert p.terms.max() > 50  # L = int(3 + 2**(6u)) reaches high
    assert bool(p.full_steering.all())
    assert torch.equal(p.terms >= 2 * p.powers.amax(1) + 1, p.full_steering)
    mask = p.mask
    assert (p.powers[mask] >= 1).all() and (p.powers[~mask] == 0).all() and (p.weights[~mask] == 0).all()
    # the largest allowed power occurs: p in 1..floor((L-1)/2)
    assert bool((p.powers.amax(1) == (p.terms - 1) // 2).any())
    # w = 2 U / sum(U) - 1 sums to 2 - L per kernel
    torch.testing.assert_close(p.weights.sum(1), (2 - p.terms).to(p.weights.dtype))
    fmax = p.frequencies.amax(dim=(1, 2))
    assert fmax.max() <= 5 and p.phases.max() <= 2 * math.pi


def test_psine_constraint_can_be_detected_when_broken():
    p = K.psine_params(3, (3, 3), terms=torch.tensor([4, 5, 9]), generator=gen())
    broken = K.PsineParams(p.terms, torch.where(p.mask, p.powers + 2, 0), p.frequencies, p.phases, p.weights)
    assert p.full_steering.all() and not broken.full_steering.any()
    with pytest.raises(ValueError, match=">= 3"):
        K.psine_params(2, (3, 3), terms=torch.tensor([2, 5]))


def test_psine_from_params_matches_formula():
    shape = (3, 4)
    p = K.psine_params(3, shape, generator=gen(5))
    ours = K.psine_from_params(p, shape, normalize="whiten").numpy()
    minmax = K.psine_from_params(p, shape).numpy()
    x = [np.linspace(0, np.pi, n) for n in shape]
    for i in range(3):
        acc = np.zeros(shape)
        for t in range(int(p.terms[i])):
            f, ph = p.frequencies[i, t].numpy(), p.phases[i, t].numpy()
            outer = np.outer(np.sin(f[0] * x[0] + ph[0]), np.sin(f[1] * x[1] + ph[1]))
            acc += float(p.weights[i, t]) * outer ** int(p.powers[i, t])
        scaled = 2 * (acc - acc.min()) / (acc.max() - acc.min()) - 1
        np.testing.assert_allclose(minmax[i], scaled / np.linalg.norm(scaled), atol=1e-10)
        acc -= acc.mean()
        np.testing.assert_allclose(ours[i], acc / np.linalg.norm(acc), atol=1e-10)


def test_psine_high_resolution_of_same_parameters_is_smooth_version():
    p = K.psine_params(4, (3, 3), generator=gen())
    small, big = K.psine_from_params(p, (3, 3), normalize="whiten"), K.psine_from_params(p, (5, 5), normalize="whiten")
    # 5x5 samples x = (0, pi/4, pi/2, 3pi/4, pi): every other sample is the 3x3 grid
    corr = torch.nn.functional.cosine_similarity(
        (big[:, ::2, ::2] - big[:, ::2, ::2].mean((1, 2), keepdim=True)).flatten(1), small.flatten(1)
    )
    torch.testing.assert_close(corr, torch.ones(4, dtype=corr.dtype))


@pytest.mark.parametrize("fn", [ghaar_kernels, psine_kernels], ids=lambda f: f.__name__)
def test_chunked_generation_fills_every_kernel(fn, monkeypatch):
    monkeypatch.setattr(K, "_CHUNK_ELEMENTS", 2000)  # many small chunks
    k = fn(997, (3, 3), generator=gen(), dtype=torch.float64).reshape(997, -1)
    assert torch.isfinite(k).all()
    if fn is psine_kernels:
        torch.testing.assert_close(k.norm(dim=1), torch.ones(997, dtype=torch.float64))
    if fn is ghaar_kernels:
        assert (k.abs().amax(1) > 0).all()
    assert len({tuple(r) for r in k.round(decimals=9).tolist()}) > 990
