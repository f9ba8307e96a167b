import math

import pytest
import torch
from torch import nn

import explainfix
from explainfix import InitReport, NoSpatialConvError, dct_basis, initialize, list_inits, spatial_convs
from explainfix import kernels as K
from explainfix.init import InitPlan, get_init, registry

METHODS = ["dct2", "ghaar", "guided_steer", "ones", "psine", "unchanged"]
RANDOM = ["dct2", "ghaar", "psine", "guided_steer"]


class Net(nn.Module):
    """3x3, depthwise 5x5, non-square grouped, 1x1, BN, Linear."""

    def __init__(self):
        super().__init__()
        self.c3 = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 8, 1)
        self.ns = nn.Conv2d(8, 4, (3, 5), padding=(1, 2), groups=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.pw(torch.relu(self.dw(torch.relu(self.bn(self.c3(x))))))
        return self.fc(self.ns(y).mean((2, 3)))


class Layouts(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1d = nn.Conv1d(3, 4, 5)
        self.c3d = nn.Conv3d(2, 3, 3)
        self.up = nn.ConvTranspose2d(4, 6, 3, groups=2)  # weight (in, out/groups, k, k) = (4, 3, 3, 3)
        self.up3d = nn.ConvTranspose3d(2, 2, (2, 3, 3))


def options(method, model_cls=Net):
    if method == "guided_steer":
        torch.manual_seed(123)
        return {"guide": model_cls()}
    return {}


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), k


def test_list_inits_has_the_six_methods():
    assert list_inits() == METHODS
    assert explainfix.list_inits is list_inits


def test_unknown_method_and_options_are_clear_errors():
    model = Net()
    with pytest.raises(ValueError, match="unknown init method 'gaussian'.*dct2, ghaar, guided_steer, ones, psine"):
        initialize(model, "gaussian")
    with pytest.raises(ValueError, match="unknown option.*frequency.*normalize"):
        initialize(model, "ghaar", frequency=3)
    with pytest.raises(ValueError, match="needs option.*guide"):
        initialize(model, "guided_steer")
    with pytest.raises(ValueError, match="seed"):
        initialize(model, "ghaar", seed=-1)


def test_model_without_spatial_conv_raises():
    with pytest.raises(NoSpatialConvError):
        initialize(nn.Sequential(nn.Conv2d(2, 2, 1), nn.Linear(2, 2)), "ones")


@pytest.mark.parametrize("method", RANDOM)
def test_same_seed_same_weights_different_seed_differs(method):
    torch.manual_seed(0)
    a, b, c = Net(), Net(), Net()
    initialize(a, method, seed=7, **options(method))
    torch.manual_seed(99)  # the global RNG must not matter
    initialize(b, method, seed=7, **options(method))
    initialize(c, method, seed=8, **options(method))
    for (name, la), (_, lb), (_, lc) in zip(spatial_convs(a), spatial_convs(b), spatial_convs(c)):
        assert torch.equal(la.weight, lb.weight), name
        assert not torch.equal(la.weight, lc.weight), name


def test_seed_none_reports_a_seed_that_reproduces():
    a, b = Net(), Net()
    report = initialize(a, "psine")
    assert isinstance(report.seed, int)
    initialize(b, "psine", seed=report.seed)
    assert torch.equal(a.c3.weight, b.c3.weight)
    assert not torch.equal(a.c3.weight, Net().c3.weight)


def test_report_fields():
    model = Net()
    report = initialize(model, "ghaar", seed=1)
    assert isinstance(report, InitReport)
    assert report.method == "ghaar" and report.seed == 1 and report.fixed
    assert report.layers == ("c3", "dw", "ns")
    assert report.kernels == 8 * 2 + 8 * 1 + 4 * 4
    assert report.parameters == 16 * 9 + 8 * 25 + 16 * 15
    assert 0 <= report.seconds < 60
    with pytest.raises(Exception):
        report.method = "x"  # frozen


@pytest.mark.parametrize("method", METHODS)
def test_initialize_sets_weights_and_fixes(method):
    model = Net()
    before = state(model)
    report = initialize(model, method, seed=0, **options(method))
    for name, m in spatial_convs(model):
        assert not m.weight.requires_grad
        assert m.bias is None or (not m.bias.requires_grad and torch.equal(m.bias, before[f"{name}.bias"]))
        w = m.weight.detach()
        k = tuple(w.shape[2:])
        flat = w.reshape(-1, math.prod(k)).double()
        if method == "ones":
            assert torch.equal(w, torch.ones_like(w))
        elif method == "unchanged":
            assert torch.equal(w, before[f"{name}.weight"])
        elif method == "dct2":
            B = dct_basis(k, dtype=torch.float64).reshape(math.prod(k), -1)
            idx = (flat @ B.T).abs().argmax(1)
            torch.testing.assert_close(flat, B[idx], atol=1e-6, rtol=0)
        elif method == "psine":
            torch.testing.assert_close(flat.norm(dim=1), torch.ones(flat.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)
            # min-max normalised (default): each kernel spans a symmetric range [-c, c]
            torch.testing.assert_close(flat.amin(1), -flat.amax(1), atol=1e-5, rtol=0)
        else:
            assert not torch.equal(w, before[f"{name}.weight"])
    assert model.pw.weight.requires_grad and model.fc.weight.requires_grad and model.bn.weight.requires_grad
    assert report.fixed


def test_fix_false_leaves_requires_grad():
    model = Net()
    report = initialize(model, "ones", fix=False)
    assert not report.fixed and model.c3.weight.requires_grad
    assert torch.equal(model.c3.weight, torch.ones_like(model.c3.weight))


@pytest.mark.parametrize("method", METHODS)
def test_fixed_weights_bit_identical_after_adam_while_others_learn(method):
    torch.manual_seed(0)
    model = Net()
    initialize(model, method, seed=3, **options(method))
    fixed = {n: m.weight.detach().clone() for n, m in spatial_convs(model)}
    learn = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)  # frozen params included on purpose
    x, y = torch.randn(2, 2, 16, 16), torch.tensor([0, 2])
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for name, m in spatial_convs(model):
        assert m.weight.grad is None
        assert torch.equal(m.weight, fixed[name]), name
    for name, p in model.named_parameters():
        if name in learn:
            assert not torch.equal(p, learn[name]), name
    assert {"pw.weight", "bn.weight", "fc.weight", "bn.bias"} <= set(learn)


@pytest.mark.parametrize("method", METHODS)
def test_layouts_conv1d_conv3d_and_transposed(method):
    model = Layouts()
    report = initialize(model, method, seed=0, **options(method, Layouts))
    assert report.layers == ("c1d", "c3d", "up", "up3d")
    assert report.kernels == 4 * 3 + 3 * 2 + 4 * 3 + 2 * 2
    for name, m in spatial_convs(model):
        kshape = tuple(m.weight.shape[2:])
        kernels = m.weight.detach().reshape(-1, *kshape)
        if method == "dct2":
            B = dct_basis(kshape).reshape(len(kernels) and math.prod(kshape), -1)
            idx = (kernels.flatten(1) @ B.T).abs().argmax(1)
            torch.testing.assert_close(kernels.flatten(1), B[idx], atol=1e-6, rtol=0)
            counts = torch.bincount(idx, minlength=B.shape[0])
            assert counts.max() - counts.min() <= 1  # evenly over the layer's kernels
        if method == "psine":
            torch.testing.assert_close(kernels.flatten(1).norm(dim=1), torch.ones(len(kernels)), atol=1e-5, rtol=0)


def test_psine_and_ghaar_per_layer_match_the_generators():
    # every kernel comes from the generator with the layer's kernel shape, in layer order
    model = Layouts()
    initialize(model, "ghaar", seed=5)
    g = torch.Generator().manual_seed(5)
    for _, m in spatial_convs(model):
        n = m.weight.numel() // math.prod(m.weight.shape[2:])
        ref = K.ghaar_kernels(n, tuple(m.weight.shape[2:]), generator=g)
        assert torch.equal(m.weight.detach(), ref.reshape(m.weight.shape))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["ghaar", "psine", "dct2", "guided_steer"])
def test_weight_dtype_is_respected(method, dtype):
    model = Net().to(dtype)
    opts = options(method)
    initialize(model, method, seed=0, **opts)
    assert all(m.weight.dtype == dtype for _, m in spatial_convs(model))
    assert all(torch.isfinite(m.weight).all() for _, m in spatial_convs(model))


def test_float64_and_float32_agree():
    a, b = Net(), Net().double()
    initialize(a, "psine", seed=2)
    initialize(b, "psine", seed=2)
    torch.testing.assert_close(a.ns.weight.double(), b.ns.weight, atol=1e-5, rtol=0)


def test_failure_midway_leaves_model_bit_identical(monkeypatch):
    model = Net()
    model.c3.weight.requires_grad_(True)
    before = state(model)
    calls = []
    real = K.psine_kernels

    def flaky(n, shape, **kw):
        calls.append(shape)
        if len(calls) == 3:
            raise RuntimeError("out of memory (simulated)")
        return real(n, shape, **kw)

    monkeypatch.setattr(K, "psine_kernels", flaky)
    with pytest.raises(RuntimeError, match="simulated"):
        initialize(model, "psine", seed=0)
    assert len(calls) == 3  # two layers had been computed already
    assert_same_state(model, before)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_plan_is_refused_before_anything_is_written(monkeypatch):
    def broken(layers, *, generator):
        weights = {name: torch.zeros_like(m.weight) for name, m in layers}
        weights["ns"] = torch.zeros(3, 3)
        return InitPlan(weights)

    monkeypatch.setitem(registry._REGISTRY, "broken", broken)
    model = Net()
    before = state(model)
    with pytest.raises(RuntimeError, match="layer 'ns'"):
        initialize(model, "broken")
    assert_same_state(model, before)
    assert model.c3.weight.requires_grad


def test_register_init_adds_a_method(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_init("halves")
    def halves(layers, *, generator, value: float = 0.5):
        return InitPlan({n: torch.full_like(m.weight, value) for n, m in layers})

    assert "halves" in list_inits() and get_init("halves") is halves
    model = Net()
    initialize(model, "halves", value=0.25)
    assert torch.equal(model.dw.weight, torch.full_like(model.dw.weight, 0.25))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_init("halves")(lambda layers, *, generator: InitPlan({}))


def test_non_finite_plan_is_refused(monkeypatch):
    def nanny(layers, *, generator):
        weights = {name: torch.ones_like(m.weight) for name, m in layers}
        weights["dw"][0, 0, 2, 2] = float("inf")
        return InitPlan(weights)

    monkeypatch.setitem(registry._REGISTRY, "nanny", nanny)
    model = Net().half()
    before = state(model)
    with pytest.raises(RuntimeError, match="non-finite weights for layer 'dw'"):
        initialize(model, "nanny")
    assert_same_state(model, before)


def test_parametrized_weight_is_refused_not_silently_kept():
    # copy_ into a weight_norm weight writes to a temporary: the layer would keep its weights
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(nn.Conv2d(1, 2, 3), weight_norm(nn.Conv2d(2, 2, 3)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"spatial conv '1' is computed .*cannot be initialized"):
        initialize(model, "ones", seed=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in model.parameters())
