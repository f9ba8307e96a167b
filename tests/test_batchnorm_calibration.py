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


def test_failing_loader_restores_momentum_modes_and_statistics():
    # torch's update_bn sets momentum to None and puts it back only when it succeeds
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, momentum=0.3))
    model[1].running_mean.fill_(0.25)
    model.eval()

    def failing():
        yield torch.rand(2, 1, 8, 8)
        raise RuntimeError("broken batch")

    with pytest.raises(RuntimeError, match="broken batch"):
        calibrate_batchnorm(model, failing())
    assert model[1].momentum == 0.3
    assert not model.training and not model[1].training
    assert torch.equal(model[1].running_mean, torch.full((2,), 0.25))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_max_batches_is_named(bad):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="max_batches"):
        calibrate_batchnorm(model, [torch.rand(2, 1, 8, 8)], max_batches=bad)
    assert model[1].momentum == 0.1


def test_model_without_parameters_calibrates_on_its_buffers_device():
    model = nn.Sequential(nn.BatchNorm2d(2, affine=False))
    x = torch.randn(4, 2, 5, 5) * 3 + 1
    assert calibrate_batchnorm(model, [x]) == 1
    torch.testing.assert_close(model[0].running_mean, x.mean((0, 2, 3)))
