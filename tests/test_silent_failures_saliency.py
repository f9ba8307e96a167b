"""Issue 13, items 1 and 8: saliency under torch.inference_mode(), and max_batches of the wrong type."""
import pytest
import torch
from torch import nn

from explainfix import calibrate_batchnorm, explainsteer, spatial_saliency


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4)).double()


def batches(n=2):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 3])) for _ in range(n)]


def test_saliency_inside_inference_mode_equals_outside():
    model, data = net(), batches()
    expected = spatial_saliency(model, data, progress=False)
    assert all(float(s.sum()) > 0 for s in expected.values())
    with torch.inference_mode():
        got = spatial_saliency(model, data, progress=False)
        made_inside = [(x.clone(), y.clone()) for x, y in data]  # inference tensors
        assert made_inside[0][0].is_inference()
        got_inside = spatial_saliency(model, made_inside, progress=False)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
        torch.testing.assert_close(got_inside[name], expected[name], rtol=0, atol=0)
    assert not any(p.requires_grad is False for p in model.parameters())  # flags restored


def test_explainsteer_inside_inference_mode_equals_outside():
    model, data = net(), batches()
    expected = explainsteer(model, data, progress=False)
    with torch.inference_mode():
        got = explainsteer(model, data, progress=False)
    for a, b in zip(expected.layers, got.layers):
        torch.testing.assert_close(a.spectra.ed, b.spectra.ed, rtol=0, atol=0)
    assert float(got.layers[0].spectra.ed.sum()) > 0


def test_model_made_in_inference_mode_is_refused_by_name():
    with torch.inference_mode():
        model = net()
    with pytest.raises(ValueError, match=r"inference tensor.*outside torch.inference_mode"):
        spatial_saliency(model, batches(), progress=False)


@pytest.mark.parametrize("bad", [1.5, "2", True, 2.0, 0])
def test_max_batches_must_be_an_int(bad):
    model, data = net(), batches(3)
    with pytest.raises(ValueError, match="max_batches must be an integer"):
        spatial_saliency(model, data, max_batches=bad, progress=False)
    with pytest.raises(ValueError, match="max_batches must be an integer"):
        explainsteer(model, data, max_batches=bad, progress=False)
    with pytest.raises(ValueError, match="max_batches must be an integer"):
        calibrate_batchnorm(model, [x for x, _ in data], max_batches=bad)


def test_numpy_int_max_batches_is_accepted():
    import numpy as np

    model, data = net(), batches(3)
    two = spatial_saliency(model, data[:2], progress=False)
    got = spatial_saliency(model, data, max_batches=np.int64(2), progress=False)
    for name in two:
        torch.testing.assert_close(got[name], two[name], rtol=0, atol=0)
