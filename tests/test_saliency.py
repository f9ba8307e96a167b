"""Saliency of spatial kernels (Eq. 4): reference values, targets, loaders, and no side effects."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from explainfix import NoSpatialConvError, fix_spatial, spatial_saliency
from explainfix.explain.saliency import as_target


def small_net(out_classes=4, batchnorm=True, dropout=False):
    layers = [nn.Conv2d(1, 3, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(3))
    layers += [nn.ReLU(), nn.Conv2d(3, 2, 3), nn.Conv2d(2, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(2, out_classes))
    return nn.Sequential(*layers).double()


def batches(n=3, size=2, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, classes, (size,), generator=g))
        for _ in range(n)
    ]


def reference_saliency(model, loader, method="grad_x_weight"):
    """Eq. 4 literally: gradient of sum_i y_i^T (yhat_i / yhat_i') per minibatch, |. o f| summed."""
    model = copy.deepcopy(model).eval()
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)}
    total = {name: 0 for name in convs}
    for m in convs.values():
        m.weight.requires_grad_(True)
    for x, y in loader:
        out = model(x)
        y = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
        objective = (y * (out / out.detach())).sum()
        grads = torch.autograd.grad(objective, [m.weight for m in convs.values()])
        for (name, m), g in zip(convs.items(), grads):
            s = (g * m.weight).abs() if method == "grad_x_weight" else g.abs()
            total[name] = total[name] + s.detach().sum((2, 3))
    return total


@pytest.mark.parametrize("method", ["grad_x_weight", "grad"])
def test_matches_literal_eq4(method):
    model, loader = small_net(), batches()
    got = spatial_saliency(model, loader, method=method, progress=False)
    ref = reference_saliency(model, loader, method)
    assert list(got) == ["0", "3"]
    for name in ref:
        assert got[name].shape == ref[name].shape
        torch.testing.assert_close(got[name], ref[name], rtol=1e-10, atol=1e-12)
        assert bool((got[name] > 0).all())


def test_closed_form_single_linear_conv():
    # yhat_i = <w, x_i> (3x3 input, 3x3 kernel, no bias), y = 1: d(yhat/yhat')/dw = x_i / yhat_i
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 1, 3, bias=False), nn.Flatten()).double()
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    y = torch.ones(5, 1, dtype=torch.float64)
    w = model[0].weight.detach().numpy()[0]
    yhat = np.einsum("ncij,cij->n", x.numpy(), w)
    g = np.einsum("ncij,n->cij", x.numpy(), 1 / yhat)
    expected = np.abs(g * w).sum((1, 2))[None]
    got = spatial_saliency(model, [(x, y)], progress=False)["0"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    got = spatial_saliency(model, [(x, y)], method="grad", progress=False)["0"]
    np.testing.assert_allclose(got.numpy(), np.abs(g).sum((1, 2))[None], rtol=1e-10)


def test_sums_over_minibatches_and_max_batches():
    model, loader = small_net(), batches(3)
    parts = [spatial_saliency(model, [b], progress=False) for b in loader]
    whole = spatial_saliency(model, loader, progress=False)
    first2 = spatial_saliency(model, iter(loader), max_batches=2, progress=False)  # no len()
    for name in whole:
        torch.testing.assert_close(whole[name], sum(p[name] for p in parts))
        torch.testing.assert_close(first2[name], parts[0][name] + parts[1][name])


def test_exact_zero_output_gives_finite_scores():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Flatten()).double()
    x = torch.randn(3, 1, 3, 3, dtype=torch.float64)
    x[1] = 0.0  # output exactly 0 for sample 1
    y = torch.ones(3, 2, dtype=torch.float64)
    scores = spatial_saliency(model, [(x, y)], progress=False)["0"]
    assert bool(torch.isfinite(scores).all())
    # a zero output contributes its unscaled gradient (zero here, since x = 0)
    ref = spatial_saliency(model, [(x[[0, 2]], y[[0, 2]])], progress=False)["0"]
    torch.testing.assert_close(scores, ref)


def snapshot(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "grad_ids": [id(p.grad) if p.grad is not None else None for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert after["grad_ids"] == before["grad_ids"]
    for a, b in zip(after["grads"], before["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert after["state"].keys() == before["state"].keys()
    for k in before["state"]:
        assert torch.equal(after["state"][k], before["state"][k]), k


def prepared_model():
    """Mixed flags: train mode with one eval submodule, a fixed conv, preset grads."""
    model = small_net(dropout=True)
    model.train()  # BatchNorm in train mode would update its running stats
    model[2].eval()  # a submodule in another mode than its parent
    model[0].weight.requires_grad_(False)
    model[4].bias.requires_grad_(False)
    model[3].weight.grad = torch.full_like(model[3].weight, 7.0)
    model[8].weight.grad = torch.ones_like(model[8].weight)
    return model


def test_leaves_model_exactly_as_it_was():
    model = prepared_model()
    before = snapshot(model)
    scores = spatial_saliency(model, batches(), progress=False)
    assert_unchanged(model, before)  # BatchNorm running stats untouched: eval mode was used
    assert scores["0"].shape == (3, 1) and bool((scores["0"] > 0).all())  # fixed weight still scored
    # eval mode: dropout is off, so the result is deterministic and equals the eval-mode reference
    again = spatial_saliency(model, batches(), progress=False)
    ref = reference_saliency(model, batches())
    for name in scores:
        torch.testing.assert_close(scores[name], again[name], rtol=0, atol=0)
        torch.testing.assert_close(scores[name], ref[name], rtol=1e-10, atol=1e-12)


def test_fixed_model():
    model = fix_spatial(small_net())
    scores = spatial_saliency(model, batches(1), progress=False)
    assert all(bool((s > 0).all()) for s in scores.values())
    assert not model[0].weight.requires_grad and not model[3].weight.requires_grad
    assert model[4].weight.requires_grad and model[0].weight.grad is None


@pytest.mark.parametrize(
    "loader, target, match",
    [
        ([], None, "no batch"),
        ([(torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.ones(2, 5, dtype=torch.float64))], None,
         r"\(2, 5\).*\(2, 4\)"),
        ([(torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 4]))], None, r"\[0, 4\)"),
        ([torch.randn(2, 1, 8, 8, dtype=torch.float64)], None, "without targets"),
        ([{"pixels": torch.randn(2, 1, 8, 8, dtype=torch.float64)}], None, "input"),
        ([torch.randn(2, 1, 8, 8, dtype=torch.float64)], lambda out, b: torch.ones(3, 4), r"\(3, 4\).*\(2, 4\)"),
    ],
)
def test_bad_input_raises_and_leaves_model(loader, target, match):
    model = prepared_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        spatial_saliency(model, loader, target=target, progress=False)
    assert_unchanged(model, before)


@pytest.mark.parametrize("kwargs, match", [({"method": "saliency"}, "unknown saliency method"),
                                           ({"max_batches": 0}, "max_batches")])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spatial_saliency(small_net(), batches(), progress=False, **kwargs)


def test_no_spatial_conv():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.LazyLinear(3))
    model(torch.randn(1, 1, 4, 4))
    before = snapshot(model)
    with pytest.raises(NoSpatialConvError, match="no spatial convolution"):
        spatial_saliency(model, [(torch.randn(1, 1, 4, 4), torch.tensor([0]))], progress=False)
    assert_unchanged(model, before)


def test_target_kinds_agree():
    model = small_net()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    idx = torch.tensor([1, 3])
    onehot = nn.functional.one_hot(idx, 4).double()
    ref = spatial_saliency(model, [(x, idx)], progress=False)
    # multi-hot with uncertain (-1) and missing (NaN) labels counted as negative
    uncertain = onehot.clone()
    uncertain[0, 0], uncertain[1, 2] = -1.0, float("nan")
    same = [
        spatial_saliency(model, [(x, onehot)], progress=False),
        spatial_saliency(model, [(x, uncertain)], progress=False),
        spatial_saliency(model, [{"image": x, "label": idx}], progress=False),
        spatial_saliency(model, [(x, idx, "extra")], progress=False),
        spatial_saliency(model, [x], target=lambda out, batch: onehot, progress=False),
    ]
    for other in same:
        for name in ref:
            torch.testing.assert_close(other[name], ref[name])
    soft = spatial_saliency(model, [(x, onehot * 0.5)], progress=False)
    torch.testing.assert_close(soft["0"], ref["0"] * 0.5)


def test_segmentation_masks_and_outputs():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1)).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    mask = (torch.rand(2, 1, 6, 6, generator=g) > 0.5)
    ref = spatial_saliency(model, [(x, mask.double())], progress=False)
    for y in (mask, mask[:, 0], mask[:, 0].long()):  # bool, (N, H, W) without the channel dim
        got = spatial_saliency(model, [(x, y)], progress=False)
        torch.testing.assert_close(got["2"], ref["2"])

    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return {"out": self.net(x), "aux": None}

    got = spatial_saliency(DictOut(), [(x, mask)], progress=False)
    torch.testing.assert_close(got["net.2"], ref["2"])


def test_class_index_masks_for_multiclass_segmentation():
    out = torch.zeros(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    t = as_target(y, out)
    assert t.shape == (2, 3, 4, 4)
    torch.testing.assert_close(t.argmax(1), y)
    assert t.sum().item() == 32


def test_transposed_grouped_and_3d_layers():
    model = nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1),
        nn.ConvTranspose3d(4, 6, (3, 3, 2), groups=2),
        nn.Conv3d(6, 6, 3, groups=6),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
    ).double()
    x = torch.randn(2, 2, 4, 4, 4, dtype=torch.float64)
    scores = spatial_saliency(model, [(x, torch.ones(2, 6, dtype=torch.float64))], progress=False)
    # ConvTranspose weight is (in, out / groups, ...): scores follow the weight layout
    assert {k: tuple(v.shape) for k, v in scores.items()} == {"0": (4, 2), "1": (4, 3), "2": (6, 1)}
    assert all(bool(torch.isfinite(v).all()) for v in scores.values())


def test_unused_layer_scores_zero_and_shared_weight():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)
            self.unused = nn.Conv2d(1, 2, 3)
            self.b = nn.Conv2d(2, 2, 3)
            self.b_again = self.b  # shared module: same weight under two names

        def forward(self, x):
            return self.b(self.a(x)).mean((2, 3))

    net = Net().double()
    scores = spatial_saliency(net, [(torch.randn(2, 1, 7, 7, dtype=torch.float64), torch.tensor([0, 1]))],
                              progress=False)
    assert set(scores) == {"a", "unused", "b"}  # named_modules lists a shared module once
    assert torch.count_nonzero(scores["unused"]) == 0 and bool((scores["a"] > 0).all())


def test_runs_under_no_grad_and_progress_bar(capsys):
    model = small_net()
    with torch.no_grad():
        scores = spatial_saliency(model, batches(2), progress=True)
    assert bool((scores["0"] > 0).all())


def test_parametrized_weight_is_named():
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(weight_norm(nn.Conv2d(1, 2, 3)), nn.Flatten(), nn.Linear(72, 2))
    model.train()
    with pytest.raises(ValueError, match=r"spatial conv '0' is computed .*cannot be scored"):
        spatial_saliency(model, [(torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))], progress=False)
    assert model.training and all(p.requires_grad for p in model.parameters())
