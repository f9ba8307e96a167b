"""channelprune's API: validation, transactions, zeroing, FillZero, report."""
from __future__ import annotations

import copy
import importlib
import json
import math

import pytest
import torch
import torchvision
from torch import nn

import explainfix
from explainfix.prune import PruneReport, channelprune, fill_zeros, weight_scores, zero_kernels
from explainfix.spatial import NoSpatialConvError, fix_spatial

X = torch.randn(1, 3, 32, 32)


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 4, 1),
    ).eval()


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [id(p) for p in model.parameters()],
        [id(m) for m in model.modules()],
        {n: p.requires_grad for n, p in model.named_parameters()},
        {n: m.training for n, m in model.named_modules()},
        repr(model),
    )


def assert_unchanged(model, snap):
    state, pids, mids, flags, training, text = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k in state:
        assert torch.equal(now[k], state[k]), k
    assert [id(p) for p in model.parameters()] == pids
    assert [id(m) for m in model.modules()] == mids
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert {n: m.training for n, m in model.named_modules()} == training
    assert repr(model) == text


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 90, 1.5, True, float("nan"), "0.9"])
def test_bad_ratio(ratio):
    model = small_net()
    with pytest.raises(ValueError, match="ratio"):
        channelprune(model, ratio, scores=weight_scores(model), example_inputs=X, progress=False)


def test_bad_scores_name_the_layer():
    model = small_net()
    snap = snapshot(model)
    scores = weight_scores(model)
    missing = dict(scores)
    del missing["3"]
    with pytest.raises(ValueError, match="'3'"):
        channelprune(model, 0.5, scores=missing, example_inputs=X, progress=False)
    with pytest.raises(ValueError, match="'nope'"):
        channelprune(model, 0.5, scores={**scores, "nope": torch.ones(1, 1)}, example_inputs=X, progress=False)
    with pytest.raises(ValueError, match=r"'0'.*\(8, 3\)"):
        channelprune(model, 0.5, scores={**scores, "0": torch.ones(3, 8)}, example_inputs=X, progress=False)
    bad = dict(scores)
    bad["0"] = bad["0"].clone()
    bad["0"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="'0'"):
        channelprune(model, 0.5, scores=bad, example_inputs=X, progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        channelprune(model, 0.5, example_inputs=X, progress=False)
    with pytest.raises(ValueError, match="mode"):
        channelprune(model, 0.5, scores=scores, mode="fast", example_inputs=X, progress=False)
    with pytest.raises(ValueError, match="fill"):
        channelprune(model, 0.5, scores=scores, fill="zeros", example_inputs=X, progress=False)
    with pytest.raises(ValueError, match="round_to"):
        channelprune(model, 0.5, scores=scores, round_to=0, example_inputs=X, progress=False)
    assert_unchanged(model, snap)


def test_no_spatial_conv():
    with pytest.raises(NoSpatialConvError):
        channelprune(nn.Sequential(nn.Conv2d(3, 4, 1)), 0.5, scores={}, example_inputs=X, progress=False)


@pytest.mark.parametrize("step", ["apply_plan", "fill_zeros", "count_macs_and_params"])
def test_failure_part_way_leaves_model_untouched(monkeypatch, step):
    model = torchvision.models.resnet18(num_classes=3).eval()
    fix_spatial(model)
    model.layer1.train()
    snap = snapshot(model)
    scores = weight_scores(model)
    mod = importlib.import_module("explainfix.prune.channelprune")
    graph = importlib.import_module("explainfix.prune.plan")

    def boom(*args, **kwargs):
        if step == "apply_plan":  # fail after half of the cuts were made
            plan = args[1]
            half = graph.ChannelPlan(plan.removals[: len(plan.removals) // 2], plan.ghosts, folds=plan.folds)
            real_apply(args[0], half)
        raise RuntimeError("injected failure")

    real_apply = graph.apply_plan
    if step == "apply_plan":
        monkeypatch.setattr(graph, "apply_plan", boom)
    elif step == "fill_zeros":
        monkeypatch.setattr(mod, "fill_zeros", boom)
    else:
        monkeypatch.setattr(graph, "count_macs_and_params", boom)
    if step == "count_macs_and_params":  # a counter failure is reported, not fatal
        report = channelprune(model, 0.99, scores=scores, example_inputs=X, progress=False)
        assert report.macs_before is None and report.params_after < report.params_before
        return
    with pytest.raises(RuntimeError, match="injected"):
        channelprune(model, 0.99, scores=scores, example_inputs=X, progress=False)
    assert_unchanged(model, snap)


def test_zero_kernels_count_and_ties():
    model = small_net()
    scores = {n: torch.ones(s.shape) for n, s in weight_scores(model).items()}  # all tied
    k, total = zero_kernels(model, scores, 0.25)
    assert total == 8 * 3 + 8 * 8 and k == math.floor(0.25 * total) == 22
    dead = model[0].weight.flatten(2).eq(0).all(-1)
    assert dead.sum() == 22  # ties broken by position: the first 22 kernels, all in layer "0"
    assert dead.flatten()[:22].all()


def test_zero_kernels_global_threshold_matches_sort():
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    scores = {n: torch.rand(s.shape) for n, s in weight_scores(model).items()}
    k, total = zero_kernels(model, scores, 0.3)
    flat = torch.cat([s.flatten() for s in scores.values()])
    threshold = flat.sort().values[k - 1]
    for name, conv in model.named_modules():
        if name in scores:
            dead = conv.weight.flatten(2).eq(0).all(-1)
            assert torch.equal(dead, scores[name] <= threshold), name


def test_fillzero_variants():
    conv = nn.Conv2d(64, 64, 3, bias=False)
    with torch.no_grad():
        conv.weight[:10] = 0  # entire kernels
        conv.weight[20:, :, 0, 0] = 0  # single zeros inside kernels
    net = nn.Sequential(conv)
    none = copy.deepcopy(net)
    assert fill_zeros(none, "none") == 0 and torch.equal(none[0].weight, conv.weight)
    reset = copy.deepcopy(net)
    fill_zeros(reset, "reset", generator=torch.Generator().manual_seed(0))
    w = reset[0].weight
    assert not w.flatten(2).eq(0).all(-1).any()
    bound = 1 / math.sqrt(64 * 9)  # kaiming_uniform_(a=sqrt(5)) bound of PyTorch's conv init
    assert w[:10].abs().max() <= bound and w[:10].abs().max() > 0.9 * bound
    assert torch.equal(w[20:, :, 0, 0], torch.zeros(44, 64))  # partial zeros stay with "reset"
    full = copy.deepcopy(net)
    fill_zeros(full, "fillzero", generator=torch.Generator().manual_seed(0))
    w = full[0].weight
    assert w.ne(0).all()
    # a partly zero kernel's zeros get N(mean, var) of that kernel: standardised values ~ N(0, 1)
    src = conv.weight[20:].flatten(2)
    z = (w[20:, :, 0, 0] - src.mean(-1)) / src.var(-1, unbiased=False).sqrt()
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05
    again = copy.deepcopy(net)
    fill_zeros(again, "fillzero", generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0].weight, w)


def test_report_and_side_effects():
    model = torchvision.models.resnet18(num_classes=3).eval()
    calls = []
    model.layer4.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    layer4 = model.layer4
    scores = weight_scores(model)
    report = channelprune(model, 0.99, scores=scores, example_inputs=X, progress=False, seed=3)
    assert isinstance(report, PruneReport) and report.seed == 3
    assert model.layer4 is layer4 and not model.training
    calls.clear()
    model(X)
    assert len(calls) == 1  # the caller's hook survives
    assert report.params_after == sum(p.numel() for p in model.parameters()) < report.params_before
    assert report.macs_after < report.macs_before
    assert report.kernels_zeroed == math.floor(0.99 * report.kernels_total)
    assert 0.98 < report.kernels_zeroed_fraction < 0.991
    assert report.channels["fc"] == (3, 3) and report.channels["conv1"][0] == 64
    assert set(report.seconds) >= {"zero", "graph", "prune", "verify", "fillzero", "count"}
    d = json.loads(json.dumps(report.to_dict()))
    assert d["params_after"] == report.params_after and d["input_shape"] == [1, 3, 32, 32]
    text = report.summary()
    assert "99.0%" in text and "parameters" in text
    assert explainfix.channelprune is channelprune and explainfix.PruneReport is PruneReport


def test_fillzero_applied_and_seeded():
    model = torchvision.models.resnet18(num_classes=3).eval()
    other = copy.deepcopy(model)
    scores = weight_scores(model)
    channelprune(model, 0.9, scores=scores, example_inputs=X, progress=False, seed=1)
    channelprune(other, 0.9, scores=scores, example_inputs=X, progress=False, seed=1)
    for (n, a), b in zip(model.named_parameters(), other.parameters()):
        assert torch.equal(a, b), n
    spatial = [m.weight for n, m in model.named_modules() if n in scores]
    assert all(w.ne(0).all() for w in spatial)  # no zero left after FillZero


def test_loader_uses_saliency():
    model = torchvision.models.resnet18(num_classes=3).eval()
    batches = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))]
    reference = copy.deepcopy(model)
    report = channelprune(model, 0.9, loader=batches, example_inputs=X, progress=False, fill="none")
    assert report.kernels_zeroed == math.floor(0.9 * report.kernels_total)
    assert report.params_after <= report.params_before
    # the loader's batches go through Eq. 4 saliency: the same as passing those scores
    from explainfix.explain.saliency import spatial_saliency

    scores = spatial_saliency(copy.deepcopy(reference), batches, progress=False)
    by_scores = channelprune(reference, 0.9, scores=scores, example_inputs=X, progress=False, fill="none")
    assert report.channels == by_scores.channels and report.params_after == by_scores.params_after
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_parametrized_weight_is_refused_before_any_change():
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    weight_norm(model[2])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="computed.*cannot be pruned"):
        channelprune(model, 0.5, scores=weight_scores(model), progress=False)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
