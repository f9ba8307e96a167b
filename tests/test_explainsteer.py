"""ExplainSteer over whole models, its result, pictures, and the sanity checks of Sec. 4.4."""
import json

import pytest
import torch
from torch import nn

from explainfix import NoSpatialConvError, explainsteer, spatial_saliency, spectra
from explainfix.explain import ExplainSteerResult
from explainfix.explain.plot import plot_ed_heatmap, plot_explainsteer, plot_spectra_lines, save_figure


class MixedNet(nn.Module):
    """7x7 stem, 3x3 and 5x5 convs (one depthwise), a 1x1, a transposed conv and a 3x5 conv."""

    def __init__(self, width=8):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 7, padding=3)
        self.a = nn.Conv2d(width, width, 3, padding=1)
        self.dw = nn.Conv2d(width, width, 5, padding=2, groups=width)
        self.pw = nn.Conv2d(width, width, 1)
        self.up = nn.ConvTranspose2d(width, 4, 3, stride=2, padding=1, output_padding=1)
        self.odd = nn.Conv2d(4, 4, (3, 5), padding=(1, 2))
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.pw(self.dw(torch.relu(self.a(x)))))
        x = self.b(torch.relu(self.odd(self.up(x))))
        return self.head(x.mean((2, 3)))


def loader(n=2, classes=3):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, classes, (2,), generator=g))
            for _ in range(n)]


@pytest.fixture
def net():
    return MixedNet().double()


def test_layers_shapes_and_values_without_saliency(net):
    result = explainsteer(net)
    assert isinstance(result, ExplainSteerResult)
    assert [l.name for l in result.layers] == ["stem", "a", "dw", "up", "odd", "b"]
    assert [l.kernel_shape for l in result.layers] == [(7, 7), (3, 3), (5, 5), (3, 3), (3, 5), (3, 3)]
    assert [l.n_kernels for l in result.layers] == [8, 64, 8, 32, 16, 16]
    assert [l.layer_type for l in result.layers][3] == "ConvTranspose2d"
    assert result.kernel_shapes == ((7, 7), (3, 3), (5, 5), (3, 5))
    assert [l.name for l in result.by_shape()[(3, 3)]] == ["a", "up", "b"]
    assert result.saliency is None and result.n_batches is None
    for layer in result.layers:
        module = dict(net.named_modules())[layer.name]
        ref = spectra(module.weight.detach().reshape(-1, *layer.kernel_shape))
        torch.testing.assert_close(layer.spectra.ed, ref.ed)
        torch.testing.assert_close(layer.spectra.e1, ref.e1)
        assert layer.spectra.ed.device.type == "cpu"
    assert result.layer("odd").spectra.e0 is None
    with pytest.raises(KeyError, match="nope"):
        result.layer("nope")


def test_with_saliency_weights_kernels_by_their_scores(net):
    result = explainsteer(net, loader(), max_batches=1, progress=False)
    scores = spatial_saliency(net, loader()[:1], progress=False)
    assert result.saliency == "grad_x_weight" and result.n_batches == 1
    for layer in result.layers:
        module = dict(net.named_modules())[layer.name]
        ref = spectra(module.weight.detach().reshape(-1, *layer.kernel_shape), scores[layer.name].reshape(-1))
        torch.testing.assert_close(layer.spectra.ed, ref.ed)
    grad = explainsteer(net, loader(), method="grad", progress=False)
    assert grad.saliency == "grad" and grad.n_batches == 2


def test_global_spectra_sum_layers_and_dict_is_json(net):
    result = explainsteer(net)
    three = result.by_shape()[(3, 3)]
    torch.testing.assert_close(result.global_e0((3, 3)), sum(l.spectra.e0 for l in three))
    torch.testing.assert_close(result.global_e1([3, 3], skip=["a"]), three[1].spectra.e1 + three[2].spectra.e1)
    assert result.global_e0((3, 5)) is None
    E, names = result.ed_matrix((3, 3), skip=["up"])
    assert names == ["a", "b"] and E.shape == (9, 2)
    torch.testing.assert_close(E[:, 1], result.layer("b").spectra.ed)
    data = json.loads(json.dumps(result.to_dict()))
    assert [l["name"] for l in data["layers"]] == ["stem", "a", "dw", "up", "odd", "b"]
    assert data["global"]["3x3"]["n_layers"] == 3 and data["global"]["3x3"]["n_kernels"] == 112
    assert data["global"]["3x5"]["e0"] is None
    assert data["layers"][1]["ed"] == pytest.approx(result.layers[1].spectra.ed.tolist())
    with pytest.raises(KeyError, match="4, 4"):
        result.ed_matrix((4, 4))
    with pytest.raises(ValueError, match="skipped"):
        result.global_e0((7, 7), skip=["stem"])


def test_one_and_three_dimensional_models():
    net = nn.Sequential(nn.Conv1d(2, 3, 5), nn.Conv3d(1, 2, (3, 3, 3)))
    result = explainsteer(net)
    assert result.kernel_shapes == ((5,), (3, 3, 3))
    assert result.layers[0].spectra.e0.shape == (5,) and result.layers[1].spectra.e1.shape == (9,)


def test_errors_and_model_untouched(net):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    with pytest.raises(ValueError, match="need a loader"):
        explainsteer(net, method="grad")
    with pytest.raises(ValueError, match="no batch"):
        explainsteer(net, [], progress=False)
    with pytest.raises(NoSpatialConvError):
        explainsteer(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Linear(2, 2)))
    assert flags == [p.requires_grad for p in net.parameters()] and net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_integer_dtype_is_refused_not_truncated_to_zero_spectra():
    # weight.to(torch.int64) would round every weight of a Kaiming-initialised conv to 0
    net = nn.Conv2d(1, 2, 3)
    with pytest.raises(ValueError, match="dtype must be a floating point"):
        explainsteer(net, dtype=torch.int64)
    s = explainsteer(net, dtype=torch.float64).layers[0].spectra
    assert s.ed.dtype == torch.float64 and float(s.ed.sum()) > 0


def test_reported_method_is_the_saliency_default():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 1, 8, 8))
    batches = [(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))]
    assert explainsteer(net, batches, progress=False).saliency == "grad_x_weight"


# ---------------------------------------------------------------- pictures


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_heatmap_panels_skip_log_and_formats(net, tmp_path):
    result = explainsteer(net, loader(1), progress=False)
    fig = plot_explainsteer(result, skip=["stem"], log=True, title="MixedNet")
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 3  # 3x3, 5x5, 3x5: the skipped stem was the only 7x7 layer
    assert [im.get_array().shape for ax in heatmaps for im in ax.images] == [(9, 3), (25, 1), (15, 1)]
    paths = save_figure(fig, tmp_path / "ed", ["png", "pdf", "svg"])
    assert [p.suffix for p in paths] == [".png", ".pdf", ".svg"]
    w, h = png_size(paths[0])
    assert w > 400 and h > 400
    assert paths[1].read_bytes()[:4] == b"%PDF" and b"<svg" in paths[2].read_bytes()[:1000]
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files
    with pytest.raises(ValueError, match="jpg"):
        save_figure(fig, tmp_path / "ed", ["jpg"])
    with pytest.raises(ValueError, match="skipped"):
        plot_explainsteer(result, skip=[l.name for l in result.layers])


def test_shared_scale_and_explicit_limits(net):
    result = explainsteer(net)
    fig = plot_explainsteer(result, share_scale=True)
    norms = [im.norm for ax in fig.axes for im in ax.images]
    top = max(float(l.spectra.ed.max()) for l in result.layers)
    assert len(norms) == 4 and all(n.vmax == pytest.approx(top) and n.vmin == 0 for n in norms)
    fig = plot_explainsteer(result, shapes=[(3, 3)], vmin=0.1, vmax=0.2)
    (im,) = [im for ax in fig.axes for im in ax.images]
    assert (im.norm.vmin, im.norm.vmax) == (0.1, 0.2)


@pytest.mark.parametrize("log", [False, True])
def test_all_zero_maps_do_not_crash(log, tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    result = explainsteer(net)
    assert float(result.layers[0].spectra.ed.abs().sum()) == 0.0
    fig = plot_explainsteer(result, log=log, share_scale=True)
    save_figure(fig, tmp_path / "zero", ["png"])
    fig = plot_spectra_lines({"zero": result}, (3, 3))
    assert [list(line.get_ydata()) for line in fig.axes[0].get_lines()] == [[0.0, 0.0, 0.0]]


def test_heatmap_into_given_axes(net):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert plot_ed_heatmap(explainsteer(net), (3, 3), ax=ax) is fig
    assert ax.images[0].get_array().shape == (9, 3)
    assert plot_ed_heatmap(explainsteer(net)).axes[0].images[0].get_array().shape == (9, 3)  # most layers


def test_spectra_lines_normalised(net):
    a, b = explainsteer(net), explainsteer(net, loader(1), progress=False)
    fig = plot_spectra_lines({"uniform": a, "saliency": b, "layer a": a.layer("a").spectra}, (3, 3))
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3
    for line in lines:
        assert sum(line.get_ydata()) == pytest.approx(1.0)
    fig = plot_spectra_lines({"uniform": a}, (3, 3), which="e1", normalize="max")
    assert max(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx(1.0)
    assert len(fig.axes[0].get_lines()[0].get_ydata()) == 6
    with pytest.raises(ValueError, match="9x9"):
        plot_spectra_lines({"uniform": a}, (9, 9))
    with pytest.raises(ValueError, match="which"):
        plot_spectra_lines({"uniform": a}, which="e2")


# ---------------------------------------------------------------- sanity checks of Sec. 4.4 / App. G


def tiny_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 5, padding=2, groups=32),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3),
    )


def initialized(method, seed=0, **options):
    from explainfix import initialize

    model = tiny_cnn()
    initialize(model, method, seed=seed, **options)
    return model


def global_ed(result, shape):
    E, _ = result.ed_matrix(shape)
    ed = E.sum(1)
    return ed / ed.sum()


def test_dct2_is_flat():
    result = explainsteer(initialized("dct2"))
    for layer in result.layers:
        ed, n, m = layer.spectra.ed, layer.n_kernels, layer.spectra.ed.numel()
        # each kernel is one unit-norm basis filter: e^(d) counts them, weighted 1/n
        assert float(ed.sum()) == pytest.approx(1.0, abs=1e-6)
        counts = ed * n
        assert float((counts - counts.round()).abs().max()) < 1e-4
        # basis filters are drawn evenly: every count is within one of n / m
        assert float((counts - n / m).abs().max()) <= max(1.0, 0.05 * n / m), layer.name
        if n >= 50 * m:
            assert float(ed.max() / ed.min()) < 1.05, layer.name


def test_ghaar_weighs_low_frequencies_more():
    result = explainsteer(initialized("ghaar"))
    for layer in result.layers:
        ed, e0 = layer.spectra.ed, layer.spectra.e0
        half = ed.numel() // 2
        assert float(ed[:half].sum()) > 1.5 * float(ed[-half:].sum()), layer.name
        assert float(e0[0]) > float(e0[-1]), layer.name


@pytest.mark.parametrize("normalize", ["whiten", "minmax"])
def test_psine_weighs_low_frequencies_more(normalize):
    # whitened Psine filters (zero mean) give the constant basis filter 0 no energy, min-max
    # normalised ones keep some; among the others low frequencies dominate
    result = explainsteer(initialized("psine", normalize=normalize))
    for layer in result.layers:
        ed = layer.spectra.ed
        if normalize == "whiten":
            assert float(ed[0]) < 1e-6 * float(ed.sum())
        else:
            assert float(ed[0]) > 0.01 * float(ed.sum())
        rest = ed[1:]
        half = rest.numel() // 2
        if layer.n_kernels >= 500:
            assert float(rest[:half].sum()) > 1.1 * float(rest[-half:].sum()), layer.name
    for shape in ((3, 3), (5, 5)):
        rest = global_ed(result, shape)[1:]
        assert float(rest[: rest.numel() // 2].sum()) > 1.1 * float(rest[-(rest.numel() // 2):].sum())


def test_guided_steer_reproduces_its_guide():
    # GuidedSteer samples each steering weight independently, so the match is close but
    # not exact; a differently steered (DCT2) model is much further from the guide
    guide = initialized("ghaar", seed=1)
    model = initialized("guided_steer", seed=2, guide=guide)
    other = initialized("dct2", seed=2)
    g, r, o = explainsteer(guide), explainsteer(model), explainsteer(other)
    assert not torch.equal(guide[2].weight, model[2].weight)
    for shape in ((3, 3), (5, 5)):
        guided = float((global_ed(g, shape) - global_ed(r, shape)).abs().sum())
        unguided = float((global_ed(g, shape) - global_ed(o, shape)).abs().sum())
        assert guided < 0.25 and unguided > 1.5 * guided, shape
        e0g, e0r = g.global_e0(shape), r.global_e0(shape)
        torch.testing.assert_close(e0r / e0r.sum(), e0g / e0g.sum(), atol=0.03, rtol=0)


def test_fixed_model_spectra_unchanged_by_training():
    model = initialized("psine")
    before = explainsteer(model)
    head = model[-1].weight.detach().clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(2, 1, 12, 12, generator=g), torch.randint(0, 3, (2,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    after = explainsteer(model)
    assert not torch.equal(head, model[-1].weight)  # training did change the learned weights
    for a, b in zip(before.layers, after.layers):
        assert torch.equal(a.spectra.ed, b.spectra.ed) and torch.equal(a.spectra.e1, b.spectra.e1)
