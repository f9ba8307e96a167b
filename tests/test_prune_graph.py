"""ChannelPrune's central invariant: the pruned model computes exactly what the zeroed one does.

All in float64, eval mode, fill="none": output of the pruned model vs the zeroed but
unpruned model, relative max difference <= 1e-10, with real channels removed.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from explainfix.prune import channelprune, weight_scores, zero_kernels
from explainfix.prune import plan as graph
from explainfix.spatial import fix_spatial

TOL = 1e-10


def concentrated_scores(model: nn.Module, seed: int = 0, power: float = 4.0) -> dict[str, torch.Tensor]:
    """Random scores that concentrate on a few rows / columns per layer (as saliency does)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, s in weight_scores(model).items():
        a = torch.rand(s.shape[0], 1, generator=g, dtype=torch.float64) ** power
        b = torch.rand(1, s.shape[1], generator=g, dtype=torch.float64) ** power
        out[name] = (a * b) / (a * b).max()
    return out


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def check_invariant(model, ratio, x, *, mode="exact", scores=None, round_to=None, min_removed=1):
    model = model.double().eval()
    x = x.double()
    scores = concentrated_scores(model) if scores is None else scores
    zeroed = copy.deepcopy(model)
    zero_kernels(zeroed, scores, ratio)
    before = n_params(model)
    report = channelprune(model, ratio, scores=scores, fill="none", mode=mode, example_inputs=x,
                          round_to=round_to, progress=False, seed=0)
    ref, out = run(zeroed, x), run(model, x)
    assert ref.abs().max() > 0, "degenerate test: the zeroed model outputs only zeros"
    assert out.shape == ref.shape
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel <= TOL, f"pruned != zeroed: relative difference {rel:.3g}"
    assert n_params(model) == report.params_after
    assert before - report.params_after >= min_removed, "no parameter was removed"
    if min_removed:
        assert report.macs_after < report.macs_before
    return model, report


class SkipNet(nn.Module):
    """ConvTranspose, concat and add skips, depthwise, a grouped conv, SE-style mul, pool/upsample."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 24, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(24)
        self.grouped = nn.Conv2d(24, 24, 3, padding=1, groups=4, bias=False)
        self.grouped_bn = nn.BatchNorm2d(24)
        self.down = nn.Conv2d(24, 32, 3, stride=2, padding=1, bias=False)
        self.up = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.up_bn = nn.BatchNorm2d(16)
        self.fuse = nn.Conv2d(16 + 24, 16, 3, padding=1, bias=False)
        self.res = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.se = nn.Conv2d(16, 16, 1)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        d = F.relu6(self.dw_bn(self.dw(x)))
        p = self.pw_bn(self.pw(d))
        g = F.relu(self.grouped_bn(self.grouped(p)))
        h = F.hardswish(self.down(g))
        u = self.up_bn(self.up(h))
        f = F.silu(self.fuse(torch.cat([u, p], 1)))
        f = f + F.gelu(self.res(f))
        f = F.interpolate(F.max_pool2d(f, 2), scale_factor=2)
        f = f * torch.sigmoid(self.se(f.mean((2, 3), keepdim=True)))
        return self.head(F.pad(f, (1, 1, 1, 1)))


def test_custom_net_exact():
    torch.manual_seed(1)
    model, report = check_invariant(SkipNet(), 0.8, torch.randn(2, 3, 32, 32))
    # the grouped (non-depthwise) conv and everything coupled to it stays whole
    assert (model.grouped.in_channels, model.grouped.out_channels) == (24, 24)
    assert report.refused.get("grouped conv", 0) >= 1 and report.groups_pruned >= 2
    assert model.pw.out_channels == 24
    # the model's input and output channels stay
    assert model.stem.in_channels == 3 and model.head.out_channels == 2
    # channels went through the depthwise conv, the transposed conv and the concat
    assert model.dw.out_channels < 16 and model.dw.groups == model.dw.out_channels
    assert model.up.out_channels < 16 and model.fuse.in_channels == model.up.out_channels + 24
    assert report.channels["up"] == (16, model.up.out_channels)


def test_custom_net_paper_mode_drops_ghost_biases_only():
    torch.manual_seed(1)
    model = SkipNet().double().eval()
    with torch.no_grad():  # "trained" BatchNorm: shifts and running stats not zero
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    scores = concentrated_scores(model)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    exact, paper = copy.deepcopy(model), copy.deepcopy(model)
    zeroed = copy.deepcopy(model)
    zero_kernels(zeroed, scores, 0.8)
    r_exact = channelprune(exact, 0.8, scores=scores, fill="none", mode="exact", example_inputs=x, progress=False)
    r_paper = channelprune(paper, 0.8, scores=scores, fill="none", mode="paper", example_inputs=x, progress=False)
    ref = run(zeroed, x)
    # exact mode never changes the output, even with non-zero BatchNorm shifts
    assert ((run(exact, x) - ref).abs().max() / ref.abs().max()).item() <= TOL
    # paper mode removes more and drops ghost biases (so the output does change) ...
    assert r_paper.params_after < r_exact.params_after
    assert r_paper.ghost_biases_dropped > 0
    assert (run(paper, x) - ref).abs().max() > 1e-6
    # ... but equals the zeroed model with those ghost biases dropped (checked inside, before FillZero)
    assert r_paper.max_rel_diff <= TOL
    assert torch.equal(paper.head.bias, model.head.bias)  # a model output keeps its bias


def test_resnet18_exact_099():
    check_invariant(torchvision.models.resnet18(num_classes=10), 0.99, torch.randn(1, 3, 64, 64), min_removed=10**6)


def test_resnet18_paper_default_bn_is_exact():
    # random-init BatchNorm (beta = 0, running mean = 0): the paper's mode is exact too
    model, report = check_invariant(torchvision.models.resnet18(num_classes=10), 0.9, torch.randn(1, 3, 64, 64),
                                    mode="paper")
    assert report.ghost_biases_dropped == 0


def test_fixed_model_prunes_stem():
    """Frozen spatial weights must not make the tracer drop layers (stem included)."""
    model = torchvision.models.resnet18(num_classes=10)
    fix_spatial(model)
    scores = concentrated_scores(model)
    scores["conv1"] = scores["conv1"] * 1e-6  # make stem filters the least salient
    scores["conv1"][:4] = 1.0
    model, report = check_invariant(model, 0.9, torch.randn(1, 3, 64, 64), scores=scores)
    assert model.conv1.out_channels < 64 and model.bn1.num_features == model.conv1.out_channels
    assert report.channels["conv1"] == (64, model.conv1.out_channels)
    assert not model.conv1.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad
    assert model.fc.weight.requires_grad


def test_mobilenet_v3_small():
    check_invariant(torchvision.models.mobilenet_v3_small(num_classes=10), 0.9, torch.randn(1, 3, 64, 64))


def test_unet_d():
    from explainfix.models import create_model

    model = create_model("unet_d")  # a registry without unet_d is a failure, not a skip
    model, report = check_invariant(model, 0.7, torch.randn(1, 3, 64, 64))
    assert model.head.out_channels == 1


def test_round_to_keeps_multiples():
    model, report = check_invariant(torchvision.models.resnet18(num_classes=10), 0.99, torch.randn(1, 3, 64, 64),
                                    round_to=8)
    changed = [n for n, (b, a) in report.channels.items() if b != a]
    assert changed
    for name in changed:
        assert report.channels[name][1] % 8 == 0, name


def test_keeps_one_channel_per_layer():
    model = SkipNet()
    scores = {n: torch.ones(s.shape) for n, s in weight_scores(model).items()}
    scores["stem"][0, 0] = 2.0
    model = model.double().eval()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    channelprune(model, 0.999, scores=scores, fill="none", mode="paper", example_inputs=x, progress=False)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            assert m.in_channels >= 1 and m.out_channels >= 1
    assert run(model, x).shape == (1, 2, 18, 18)


class Mixing(nn.Module):
    """Channel-mixing ops, a GroupNorm and a constant add: all must be left alone or handled."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(2, 8)
        self.c = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.d = nn.Conv2d(8, 4, 3, padding=1, bias=False)

    def forward(self, x):
        a = F.relu(self.a(x))
        a = a + a.mean(1, keepdim=True)  # mixes channels
        b = self.gn(self.b(a))
        c = F.relu(self.c(b)) + 1.0  # constant add: not zero-preserving
        return self.d(c.transpose(2, 3))


def test_channel_mixing_ops_stay_exact():
    torch.manual_seed(0)
    model = Mixing()
    scores = {n: torch.ones(s.shape) for n, s in weight_scores(model).items()}
    for name in ("a", "b", "c", "d"):
        scores[name][1::2] = 0  # every other output channel's kernels go
    model, report = check_invariant(model, 0.5, torch.randn(1, 3, 16, 16), scores=scores, min_removed=0)
    assert report.groups_pruned == 0 and report.refused
    assert model.a.out_channels == 8  # its channels feed a channel mean
    assert model.b.out_channels == 8  # GroupNorm group stays whole
    assert model.d.out_channels == 4  # output


def test_pruned_model_trains():
    model = torchvision.models.resnet18(num_classes=3)
    fix_spatial(model)
    channelprune(model, 0.95, scores=concentrated_scores(model), example_inputs=torch.randn(1, 3, 64, 64),
                 progress=False, seed=0)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    before = model.fc.weight.detach().clone()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.fc.weight)
    assert model.conv1.weight.grad is None  # still fixed


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,ratio",
    [("resnet50", 0.99), ("densenet121", 0.9), ("efficientnet_b0", 0.9), ("mobilenet_v2", 0.9),
     ("regnet_x_400mf", 0.99), ("shufflenet_v2_x0_5", 0.9), ("squeezenet1_0", 0.9), ("mnasnet0_5", 0.9)],
)
def test_model_zoo_exact(name, ratio):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    check_invariant(model, ratio, torch.randn(1, 3, 32, 32))  # float64 depthwise convs are slow on CPU


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "densenet121", "efficientnet_b0"])
def test_model_zoo_paper_random_init(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    check_invariant(model, 0.9, torch.randn(1, 3, 32, 32), mode="paper")


class InputSkip(nn.Module):
    """A depthwise conv straight on the input and an add with the input: input channels must stay."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
        self.a = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.b = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.c = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x):
        y = x + self.a(F.relu(self.dw(x)))
        return self.c(F.relu(self.b(y)))


def test_input_channels_stay():
    model = InputSkip()
    scores = {n: torch.ones(s.shape) for n, s in weight_scores(model).items()}
    scores["dw"][0] = 0  # a whole depthwise filter on input channel 0
    scores["a"][:, 1] = 0  # every kernel reading channel 1 / writing channel 2
    scores["a"][2, :] = 0
    scores["b"][:4] = 0  # half of b's filters: those channels can go
    zeroed_fraction = sum(int((s == 0).sum()) for s in scores.values()) / sum(s.numel() for s in scores.values())
    model, report = check_invariant(model, zeroed_fraction, torch.randn(1, 3, 16, 16), scores=scores)
    assert (model.dw.in_channels, model.dw.out_channels, model.a.in_channels, model.a.out_channels) == (3, 3, 3, 3)
    assert model.b.in_channels == 3 and model.b.out_channels == 4 and model.c.in_channels == 4


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_pruned_model_jit_traces():
    model = torchvision.models.resnet18(num_classes=3).eval()
    channelprune(model, 0.99, scores=concentrated_scores(model), example_inputs=torch.randn(1, 3, 32, 32),
                 progress=False, seed=0)
    x = torch.randn(2, 3, 32, 32)
    traced = torch.jit.trace(model, x)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), rtol=1e-5, atol=1e-6)
