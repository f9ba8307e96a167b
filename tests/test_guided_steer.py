import math

import pytest
import scipy.stats
import torch
from torch import nn

from explainfix import initialize, spatial_convs
from explainfix.init.guided_steer import (
    guide_filters,
    guided_steer_kernels,
    kde_bandwidth,
    sample_steering_weights,
    steering_basis,
    steering_weights,
)


def structured_filters(c, scales, mean_scale=0.0, seed=0):
    """c 3x3 filters with different spread along 9 random orthonormal directions and a non-zero mean."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(9, 9, generator=g, dtype=torch.float64))
    z = torch.randn(c, 9, generator=g, dtype=torch.float64) * torch.as_tensor(scales, dtype=torch.float64)
    z = z + 0.5 * torch.rand(c, 9, generator=g, dtype=torch.float64) ** 3  # skewed, not Gaussian
    mean = mean_scale * torch.linspace(-1, 1, 9, dtype=torch.float64)
    return (z @ Q.T + mean).reshape(c, 3, 3)


class Two(nn.Module):
    """Two 3x3 layers with very different filter distributions, and one 5x5."""

    def __init__(self, width=32, seed=0):
        super().__init__()
        self.a = nn.Conv2d(width, width, 3, bias=False)
        self.b = nn.Conv2d(width, width, 3, bias=False)
        self.c = nn.Conv2d(4, 4, 5, bias=False)
        with torch.no_grad():
            n = width * width
            self.a.weight.copy_(structured_filters(n, torch.linspace(0.1, 1.0, 9), 0.5, seed).reshape(self.a.weight.shape))
            self.b.weight.copy_(structured_filters(n, torch.linspace(2.0, 0.2, 9), -3.0, seed + 1).reshape(self.b.weight.shape))


def test_steering_basis_is_svd_of_guide_and_decorrelates():
    G = structured_filters(500, torch.linspace(0.1, 2, 9), 1.0).reshape(500, 9)
    B, mean = steering_basis(G)
    torch.testing.assert_close(B @ B.T, torch.eye(9, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(mean, torch.zeros(9, dtype=torch.float64))
    _, S, Vh = torch.linalg.svd(G, full_matrices=False)
    torch.testing.assert_close(B.abs(), Vh.abs(), atol=1e-8, rtol=0)  # same right singular vectors up to sign
    P = steering_weights(G, B)
    torch.testing.assert_close(P.T @ P, torch.diag(S**2), atol=1e-8, rtol=1e-10)
    Bc, mc = steering_basis(G, centered=True)
    torch.testing.assert_close(mc, G.mean(0))
    Pc = steering_weights(G, Bc, mc)
    cov = Pc.T @ Pc
    torch.testing.assert_close(cov - torch.diag(torch.diag(cov)), torch.zeros(9, 9, dtype=torch.float64), atol=1e-8, rtol=0)


@pytest.mark.parametrize("c", [2, 7, 300])
def test_kde_bandwidth_matches_scipy(c):
    values = torch.randn(c, 3, dtype=torch.float64) * torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    bw = kde_bandwidth(values)
    for i in range(3):
        kde = scipy.stats.gaussian_kde(values[:, i].numpy())
        assert math.isclose(float(bw[i]), math.sqrt(kde.covariance[0, 0]), rel_tol=1e-10)


def test_samplers_follow_the_column_distributions():
    values = torch.stack([torch.randn(400, dtype=torch.float64) * 2 + 5, torch.rand(400, dtype=torch.float64)], 1)
    g = torch.Generator().manual_seed(0)
    kde = sample_steering_weights(values, 200_000, sampler="kde", generator=g)
    normal = sample_steering_weights(values, 200_000, sampler="normal", generator=g)
    torch.testing.assert_close(kde.mean(0), values.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(normal.mean(0), values.mean(0), atol=0.02, rtol=0)
    expected_kde_var = values.var(0, correction=0) + kde_bandwidth(values) ** 2
    torch.testing.assert_close(kde.var(0), expected_kde_var, rtol=0.02, atol=0)
    torch.testing.assert_close(normal.var(0), values.var(0), rtol=0.02, atol=0)
    # KDE keeps the shape of a uniform distribution (flat, bounded); the normal does not
    assert kde[:, 1].min() > -0.3 and normal[:, 1].min() < -0.5
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_steering_weights(values, 3, sampler="gmm")


def _expected_std(P, sampler):
    if sampler == "normal":
        return P.std(0)
    return (P.var(0, correction=0) + kde_bandwidth(P) ** 2).sqrt()


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("basis", ["global", "layer"])
@pytest.mark.parametrize("sampler", ["kde", "normal"])
def test_sampled_steering_weights_follow_the_guide_layer(sampler, basis, centered):
    guide = Two()
    target = Two(width=48, seed=5)  # more kernels than the guide
    report = initialize(target, "guided_steer", seed=0, guide=guide, basis=basis, sampler=sampler, centered=centered)
    assert dict(report.details) == {"a": "a", "b": "b", "c": "c"}
    all3 = torch.cat([guide.a.weight, guide.b.weight]).detach().reshape(-1, 3, 3)
    for name in ("a", "b"):
        G = getattr(guide, name).weight.detach().reshape(-1, 3, 3)
        B, mean = steering_basis(all3 if basis == "global" else G, centered=centered)
        P = steering_weights(G, B, mean)
        F = getattr(target, name).weight.detach().reshape(-1, 3, 3)
        assert F.shape[0] == 48 * 48
        W = steering_weights(F, B, mean)
        std = _expected_std(P, sampler)
        n = W.shape[0]
        # mean within 5 standard errors, std within 8 %
        assert ((W.mean(0) - P.mean(0)).abs() <= 5 * std / math.sqrt(n) + 1e-6).all(), name
        torch.testing.assert_close(W.std(0), std, rtol=0.08, atol=1e-6)
        # the filters themselves have the guide layer's mean filter
        torch.testing.assert_close(F.mean(0), G.mean(0).float(), atol=float(5 * G.std(0).max() / math.sqrt(n)), rtol=0)


def test_layer_distributions_differ_between_layers():
    guide, target = Two(), Two(seed=3)
    initialize(target, "guided_steer", seed=0, guide=guide)
    t, g = target.state_dict(), guide.state_dict()
    assert abs(float(t['a.weight'].mean() - g['a.weight'].mean())) < 0.05
    assert abs(float(t['b.weight'].mean() - g['b.weight'].mean())) < 0.1
    assert float(t['b.weight'].std()) > 2 * float(t['a.weight'].std())


def test_guided_steer_kernels_function_matches_distribution_and_count():
    G = structured_filters(100, torch.linspace(0.1, 1, 9), 0.5)
    out = guided_steer_kernels(5000, G, sampler="normal", centered=True, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert out.shape == (5000, 3, 3)
    torch.testing.assert_close(out.mean(0), G.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(out.reshape(5000, 9).T.cov(), G.reshape(100, 9).T.cov(), atol=0.06, rtol=0.15)


def test_guide_with_fewer_layers_and_kernels_matches_by_position():
    guide = nn.ModuleDict({"g0": nn.Conv2d(2, 3, 3), "g1": nn.Conv2d(3, 2, 3)})  # 6 kernels each
    layers = {f"t{i}": nn.Conv2d(8, 8, 3) for i in range(4)} | {"t4": nn.Conv2d(1, 1, 3)}  # 64 and 1 kernels
    target = nn.ModuleDict(layers)
    report = initialize(target, "guided_steer", seed=0, guide=guide)
    # proportional position floor(p * 2 / 5)
    assert report.details == (("t0", "g0"), ("t1", "g0"), ("t2", "g0"), ("t3", "g1"), ("t4", "g1"))
    assert all(torch.isfinite(m.weight).all() for _, m in spatial_convs(target))


def test_name_match_wins_over_position():
    guide = nn.ModuleDict({"x": nn.Conv2d(2, 2, 3), "y": nn.Conv2d(2, 2, 3)})
    target = nn.ModuleDict({"y": nn.Conv2d(2, 2, 3), "z": nn.Conv2d(2, 2, 3)})
    report = initialize(target, "guided_steer", seed=0, guide=guide)
    assert report.details == (("y", "y"), ("z", "y"))


def test_state_dict_guide_equals_module_guide():
    guide = Two()
    sd = guide.state_dict()
    sd["bn.weight"] = torch.ones(4)  # 1-D: not a filter
    sd["fc.weight"] = torch.ones(3, 4)  # Linear: not a filter
    sd["pw.weight"] = torch.ones(4, 4, 1, 1)  # 1x1: not spatial
    assert [n for n, _ in guide_filters(sd)] == ["a", "b", "c"]
    a, b = Two(seed=1), Two(seed=1)
    initialize(a, "guided_steer", seed=4, guide=guide, basis="layer")
    initialize(b, "guided_steer", seed=4, guide=sd, basis="layer")
    for (_, la), (_, lb) in zip(spatial_convs(a), spatial_convs(b)):
        assert torch.equal(la.weight, lb.weight)


def test_guide_may_be_the_target_itself():
    model = Two()
    before = model.a.weight.detach().clone()
    initialize(model, "guided_steer", seed=0, guide=model)
    after = model.a.weight.detach()
    assert not torch.equal(after, before)
    assert abs(float(after.mean() - before.mean())) < 0.05


def test_bad_guides_are_clear_errors_and_leave_model_unchanged():
    target = Two()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    only5 = nn.Conv2d(2, 2, 5)
    with pytest.raises(ValueError, match=r"\(7x7\) match none of the model's \(3x3, 5x5\)"):
        initialize(target, "guided_steer", guide=nn.Conv2d(2, 2, 7))
    with pytest.raises(ValueError, match=r"no filters of the kernel shape of these layers: c \(5x5\)"):
        initialize(target, "guided_steer", guide=nn.Conv2d(2, 2, 3))
    with pytest.raises(ValueError, match=r"a \(3x3\), b \(3x3\)"):
        initialize(target, "guided_steer", guide=only5)
    with pytest.raises(ValueError, match="no spatial filters"):
        initialize(target, "guided_steer", guide=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="nn.Module or a state_dict"):
        initialize(target, "guided_steer", guide=torch.randn(4, 3, 3))
    with pytest.raises(ValueError, match="unknown basis"):
        initialize(target, "guided_steer", guide=Two(), basis="local")
    with pytest.raises(ValueError, match="unknown sampler"):
        initialize(target, "guided_steer", guide=Two(), sampler="gmm")
    bad = Two()
    with torch.no_grad():
        bad.b.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'b' has non-finite"):
        initialize(target, "guided_steer", guide=bad)
    for k, v in target.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.requires_grad for p in target.parameters())


def test_guided_steer_3d_and_single_kernel_guide():
    guide = nn.Conv3d(1, 1, 3)  # a single guide kernel: zero spread, samples equal it
    target = nn.Conv3d(2, 3, 3)
    initialize(target, "guided_steer", seed=0, guide=guide, sampler="kde")
    expected = guide.weight.detach().reshape(1, 3, 3, 3).expand(6, 3, 3, 3)
    torch.testing.assert_close(target.weight.detach().reshape(6, 3, 3, 3), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("c", [16, 64])
def test_kde_energy_exceeds_the_guide_by_the_bandwidth_variance(c):
    # documented: E||f||^2 = mean_j ||g_j||^2 + c^(-2/5) sum_i var(g_i) (non-centered, any orthonormal B);
    # the normal sampler keeps the guide's energy up to the ddof=1 factor c / (c - 1) on the variance
    G = structured_filters(c, torch.linspace(0.2, 2.0, 9), 0.3, seed=3).reshape(c, 9)
    guide_energy = G.pow(2).sum(1).mean().item()
    variance = G.var(dim=0, correction=1).sum().item()
    n = 400_000
    energies = {}
    for sampler in ("kde", "normal"):
        out = guided_steer_kernels(n, G.reshape(c, 3, 3), sampler=sampler, generator=torch.Generator().manual_seed(1),
                                   dtype=torch.float64)
        energies[sampler] = out.reshape(n, 9).pow(2).sum(1).mean().item()
    assert energies["kde"] == pytest.approx(guide_energy + c ** (-0.4) * variance, rel=0.01)
    assert energies["normal"] == pytest.approx(guide_energy + variance / c, rel=0.01)
    assert energies["kde"] / guide_energy > (1.15 if c == 16 else 1.1)


def test_guided_steer_kernels_bad_guide_is_named():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"guide must be a tensor of filters .* got \(9,\)"):
        guided_steer_kernels(4, torch.randn(9), generator=gen)
    with pytest.raises(ValueError, match=r"guide must be a tensor of filters .* got \(0, 3, 3\)"):
        guided_steer_kernels(4, torch.randn(0, 3, 3), generator=gen)
    nan = torch.randn(5, 3, 3)
    nan[1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="guide has non-finite"):
        guided_steer_kernels(4, nan, generator=gen)
    with pytest.raises(ValueError, match="basis_filters has non-finite"):
        guided_steer_kernels(4, torch.randn(5, 3, 3), basis_filters=nan, generator=gen)
