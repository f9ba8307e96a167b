"""ChannelPrune never hides a changed or degenerate model (issue 12 item 2, issue 13 items 2-4).

The report states the true change of the pruned model's output against the model handed
in after zeroing (ghost biases *not* dropped) and before zeroing, in every mode, on
trained-like BatchNorm; large changes and degenerate results are warned about; the
float64 self-check holds for fp16/bf16 models; tied weights are refused by name.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision
from torch import nn

from explainfix.prune import PruneWarning, channelprune, weight_scores, zero_kernels
from explainfix.prune import plan as planning


def trained_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm as after training: non-trivial running mean/var, weight and bias."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def rel(ref: torch.Tensor, out: torch.Tensor) -> float:
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def run(model, x):
    with torch.no_grad():
        return model(x)


def prune_recording(model, ratio, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = channelprune(model, ratio, progress=False, seed=0, **kw)
    return report, [str(w.message) for w in caught if issubclass(w.category, PruneWarning)]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("mode", ["paper", "exact"])
def test_report_states_true_change_on_trained_bn(name, mode):
    torch.manual_seed(0)
    model = trained_bn(getattr(torchvision.models, name)(num_classes=10)).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    scores = weight_scores(model)
    original = copy.deepcopy(model)
    zeroed = copy.deepcopy(model)
    zero_kernels(zeroed, scores, 0.9)  # the user's model after zeroing: ghost biases kept
    report, caught = prune_recording(model, 0.9, scores=scores, fill="none", mode=mode, example_inputs=x)
    out = run(model, x)
    true_zeroed, true_original = rel(run(zeroed, x), out), rel(run(original, x), out)
    assert report.change_vs_zeroed == pytest.approx(true_zeroed, rel=1e-6, abs=1e-12)
    assert report.change_vs_original == pytest.approx(true_original, rel=1e-6, abs=1e-12)
    assert report.max_rel_diff <= 1e-9  # the self-check (vs zeroed with ghosts dropped) holds
    assert report.params_after < report.params_before
    text = report.summary()
    assert f"{report.change_vs_zeroed:.2e}" in text and f"{report.change_vs_original:.2e}" in text
    d = report.to_dict()
    assert d["change_vs_zeroed"] == report.change_vs_zeroed and d["warnings"] == list(report.warnings)
    if mode == "exact":
        assert true_zeroed <= 1e-10 and report.ghost_biases_dropped == 0
        assert not any("differs from the zeroed" in w for w in caught)
    else:  # trained BN: the paper's ghost biases change the output, and the report says so
        assert report.ghost_biases_dropped > 0 and true_zeroed > 1e-3
        assert any("differs from the zeroed" in w for w in caught)
        assert any("differs from the zeroed" in w for w in report.warnings)
        assert "ghost biases dropped" in text and f"output change {report.change_vs_zeroed:.2e}" in text


def test_change_warning_threshold_is_user_settable():
    torch.manual_seed(0)
    base = trained_bn(torchvision.models.resnet18(num_classes=10)).double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    scores = weight_scores(base)
    r_quiet, caught = prune_recording(copy.deepcopy(base), 0.9, scores=scores, fill="none", example_inputs=x,
                                      warn_change=10.0)
    assert r_quiet.change_vs_zeroed > 1e-3
    assert not any("differs from the zeroed" in w for w in caught)
    r_loud, caught = prune_recording(copy.deepcopy(base), 0.9, scores=scores, fill="none", example_inputs=x,
                                     warn_change=0.0)
    assert any("differs from the zeroed" in w for w in caught)
    with pytest.raises(ValueError, match="warn_change"):
        channelprune(copy.deepcopy(base), 0.9, scores=scores, example_inputs=x, progress=False, warn_change=-1)


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 5, padding=2)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x))
        x = torch.relu(self.c(x))
        return self.head(x.mean((2, 3)))


def test_dead_output_and_emptied_layer_are_warned_and_reported():
    torch.manual_seed(0)
    model = Chain().double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    scores = weight_scores(model)
    scores["b"] = torch.zeros_like(scores["b"])  # a whole layer scored exactly 0 (as timm's zero_init_last)
    report, caught = prune_recording(model, 0.45, scores=scores, fill="none", example_inputs=x)
    assert any("scored exactly 0" in w and "b" in w for w in report.warnings)
    assert any("lost all their spatial kernels: b" in w for w in report.warnings)
    assert any("no longer depends on its input" in w for w in report.warnings)  # b zero -> constant output
    assert set(report.warnings) <= set(caught)
    assert all(f"WARNING: {w}" in report.summary() for w in report.warnings)


def test_healthy_prune_has_no_warnings():
    torch.manual_seed(0)
    model = Chain().double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    report, caught = prune_recording(model, 0.3, scores=weight_scores(model), fill="none", example_inputs=x)
    assert report.warnings == () and caught == []


def test_weight_scores_are_fair_across_kernel_sizes():
    """Kaiming-initialised 3x3 and 7x7 layers of the same fan-in channels score alike (default norm)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Conv2d(64, 64, 7))
    fair = weight_scores(model)
    ratio = (fair["1"].median() / fair["0"].median()).item()
    assert 0.8 < ratio < 1.25
    # a global ratio 0.5 then zeroes about half of each layer, not all 3x3 kernels first
    zero_kernels(model, fair, 0.5)
    for conv in model:
        frac = conv.weight.flatten(2).eq(0).all(-1).double().mean().item()
        assert 0.35 < frac < 0.65
    plain = weight_scores(nn.Sequential(nn.Conv2d(64, 64, 3), nn.Conv2d(64, 64, 7)), norm="l1")
    assert (plain["1"].median() / plain["0"].median()).item() > 1.5  # the unfair plain L1 norm
    with pytest.raises(ValueError, match="norm"):
        weight_scores(model, norm="l2")


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.b = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.a(x)))
        return self.head(torch.relu(self.b(x)).mean((2, 3)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_verified_in_float64(dtype, monkeypatch):
    torch.manual_seed(0)
    model = trained_bn(BNNet()).eval().to(dtype)
    x = torch.randn(2, 3, 16, 16).to(dtype)
    scores = weight_scores(model)
    # the report's numbers are float64 ones: equal to pruning the float64 model
    ref64 = BNNet().double().eval()
    ref64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    r64 = channelprune(ref64, 0.5, scores=scores, fill="none", example_inputs=x.double(), progress=False, seed=0,
                       warn_change=1.0)
    r, _ = prune_recording(model, 0.5, scores=scores, fill="none", example_inputs=x, warn_change=1.0)
    assert model.a.weight.dtype == dtype and model.bn.running_var.dtype == dtype
    assert r.params_after == r64.params_after
    assert r.change_vs_zeroed == pytest.approx(r64.change_vs_zeroed, rel=1e-9, abs=1e-12)
    assert r.max_rel_diff <= 1e-9

    # a pruned model 1e-3 away from its reference is refused (the old fp16 tolerance was 9.8)
    victim = trained_bn(BNNet()).eval().to(dtype)
    before = copy.deepcopy(victim.state_dict())
    real_apply = planning.apply_plan

    def off_by_a_little(work, plan):
        real_apply(work, plan)
        with torch.no_grad():
            work.head.bias.add_(1e-3 * work.head.bias.abs().max().clamp_min(1e-3))

    monkeypatch.setattr(planning, "apply_plan", off_by_a_little)
    with pytest.raises(RuntimeError, match="differ"):
        channelprune(victim, 0.5, scores=weight_scores(victim), example_inputs=x, progress=False, seed=0)
    for k, v in victim.state_dict().items():
        assert torch.equal(v, before[k]), k


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_tied_conv_weights_are_refused_by_name():
    model = Tied().eval()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"'a' and 'b' share one weight Parameter"):
        channelprune(model, 0.5, scores=weight_scores(model), example_inputs=torch.randn(1, 4, 8, 8),
                     progress=False)
    assert model.a.weight is model.b.weight
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
