"""Fixed filters under autocast and other dtypes (no gradient buffers for fixed weights)."""
import torch
import torchvision

from explainfix import channelprune, initialize, spatial_convs, spatial_saliency


def _model():
    torch.manual_seed(0)  # same non-spatial weights on every call
    model = torchvision.models.resnet18(num_classes=3)
    initialize(model, "psine", seed=0)
    return model


def test_forward_backward_under_bfloat16_autocast():
    model = _model()
    x = torch.rand(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    for _, conv in spatial_convs(model):
        assert conv.weight.grad is None and not conv.weight.requires_grad
    assert model.fc.weight.grad is not None and torch.isfinite(model.fc.weight.grad).all()


def test_to_dtype_keeps_fixed_filters_fixed_and_saliency_matches():
    model = _model().eval()
    double = _model().eval().to(torch.float64)
    assert all(not c.weight.requires_grad for _, c in spatial_convs(double))
    batches = [(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 2]))]
    single = spatial_saliency(model, batches, progress=False)
    wide = spatial_saliency(double, [(x.double(), y) for x, y in batches], progress=False)
    for name, score in single.items():
        assert wide[name].dtype == torch.float64
        torch.testing.assert_close(score.double(), wide[name], rtol=2e-3, atol=1e-6 * wide[name].max().item())


def test_pruning_keeps_dtype():
    model = _model().eval().to(torch.float64)
    report = channelprune(model, 0.95, scores={n: c.weight.abs().sum((2, 3)) for n, c in spatial_convs(model)},
                          example_inputs=torch.rand(1, 3, 32, 32, dtype=torch.float64), progress=False)
    assert report.params_after < report.params_before
    assert all(p.dtype == torch.float64 for p in model.parameters())
