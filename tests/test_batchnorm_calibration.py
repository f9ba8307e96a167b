import pytest
import torch
from torch import nn

from explainfix import calibrate_batchnorm, create_model, initialize, spatial_saliency


def _batches(n=3, size=32, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(2, channels, size, size, generator=g), torch.tensor([0, 1])) for _ in range(n)]


def test_calibration_matches_batch_statistics_and_restores_modes():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    x = torch.randn(8, 1, 10, 10) * 5 + 3
    assert calibrate_batchnorm(model, [x]) == 1
    features = model[0](x).detach()
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, features.mean((0, 2, 3)))
    torch.testing.assert_close(bn.running_var, features.var((0, 2, 3), unbiased=True))
    assert model.training and bn.momentum == 0.1  # flags and momentum restored


def test_calibration_makes_reinitialized_densenet_explainable():
    # unnormalised GHaar filters through 58 eval-mode layers with default statistics overflow
    model = create_model("densenet121", in_chans=1, num_classes=2)
    initialize(model, "ghaar", seed=0)
    model.eval()
    batches = _batches(n=2, size=64, channels=1)
    with pytest.raises(ValueError, match="not finite.*calibrate_batchnorm"):
        spatial_saliency(model, batches, progress=False)
    calibrate_batchnorm(model, batches)
    assert not model.training
    scores = spatial_saliency(model, batches, progress=False)
    assert all(torch.isfinite(s).all() and s.sum() > 0 for s in scores.values())


def test_empty_loader_raises_and_keeps_statistics():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    model[1].running_mean.fill_(0.25)
    with pytest.raises(ValueError, match="no batch"):
        calibrate_batchnorm(model, [])
    assert torch.equal(model[1].running_mean, torch.full((2,), 0.25))
