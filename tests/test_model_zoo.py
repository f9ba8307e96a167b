"""Model-zoo sweep: every init method on several torchvision CNNs (2-D and 3-D)."""
import copy
import math
from functools import lru_cache

import pytest
import torch
import torchvision
from torchvision.models import video

from explainfix import dct_basis, initialize, list_inits, spatial_convs

pytestmark = pytest.mark.slow

# methods rotate across architectures; Psine (the slowest) goes to models with few spatial kernels
ARCHS = {
    "resnet18": (torchvision.models.resnet18, (2, 3, 32, 32), ("ghaar", "dct2")),
    "resnext50_32x4d": (torchvision.models.resnext50_32x4d, (2, 3, 32, 32), ("ones", "unchanged")),
    "densenet121": (torchvision.models.densenet121, (2, 3, 32, 32), ("guided_steer", "dct2")),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, (2, 3, 32, 32), ("psine", "guided_steer")),
    "mobilenet_v2": (torchvision.models.mobilenet_v2, (2, 3, 32, 32), ("psine", "ones")),
    "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small, (2, 3, 32, 32), ("guided_steer", "ghaar")),
    "regnet_x_400mf": (torchvision.models.regnet_x_400mf, (2, 3, 32, 32), ("unchanged", "psine")),
    "convnext_tiny": (torchvision.models.convnext_tiny, (2, 3, 32, 32), ("dct2", "ghaar")),
    "shufflenet_v2_x0_5": (torchvision.models.shufflenet_v2_x0_5, (2, 3, 32, 32), ("psine", "unchanged")),
    "r3d_18": (video.r3d_18, (2, 3, 4, 32, 32), ("ones", "ghaar")),
}
CASES = [(arch, method) for arch, (_, _, methods) in ARCHS.items() for method in methods]


@lru_cache(maxsize=1)  # cases of one architecture run one after the other
def build(arch):
    torch.manual_seed(0)
    return ARCHS[arch][0](weights=None, num_classes=3)


def test_every_method_runs_on_at_least_two_architectures():
    for method in list_inits():
        assert sum(m == method for _, m in CASES) >= 2, method


@pytest.mark.parametrize("arch,method", CASES, ids=[f"{a}-{m}" for a, m in CASES])
def test_initialize_fix_forward_backward(arch, method):
    _, input_shape, _ = ARCHS[arch]
    model = copy.deepcopy(build(arch))
    before = {n: m.weight.detach().clone() for n, m in spatial_convs(model)}
    # guide: the random (Kaiming) init of the same architecture
    options = {"guide": copy.deepcopy(model)} if method == "guided_steer" else {}
    report = initialize(model, method, seed=0, **options)
    assert report.layers == tuple(before) and report.fixed

    for name, m in spatial_convs(model):
        w = m.weight.detach()
        if method == "ones":
            assert torch.equal(w, torch.ones_like(w)), name
        elif method == "unchanged":
            assert torch.equal(w, before[name]), name
        elif method == "dct2":
            k = tuple(w.shape[2:])
            flat = w.reshape(-1, math.prod(k)).double()
            B = dct_basis(k, dtype=torch.float64).reshape(math.prod(k), -1)
            torch.testing.assert_close(flat, B[(flat @ B.T).abs().argmax(1)], atol=1e-6, rtol=0)
        elif method == "psine":
            norms = w.reshape(w.shape[0] * w.shape[1], -1).norm(dim=1)
            torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)
        else:
            assert not torch.equal(w, before[name]), name

    model.train()
    x = torch.randn(*input_shape)
    out = model(x)
    assert out.shape == (input_shape[0], 3) and torch.isfinite(out).all()
    out.square().mean().backward()

    spatial = {id(m.weight) for _, m in spatial_convs(model)} | {
        id(m.bias) for _, m in spatial_convs(model) if m.bias is not None
    }
    learned = 0
    for name, p in model.named_parameters():
        if id(p) in spatial:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None, name
            learned += int(p.grad.abs().sum() > 0)
    assert learned > 0
