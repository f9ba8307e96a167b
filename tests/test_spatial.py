import pytest
import torch
from torch import nn

from explainfix import NoSpatialConvError, fix_spatial, spatial_convs, unfix_spatial


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.c3 = nn.Conv2d(2, 4, 3, padding=1)
        self.pw = nn.Conv2d(4, 4, 1)
        self.dw = nn.Conv2d(4, 4, (3, 5), padding=(1, 2), groups=4)
        self.thin = nn.Conv2d(4, 4, (1, 3), padding=(0, 1))
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.c1d = nn.Conv1d(2, 2, 3)
        self.c3d = nn.Conv3d(1, 1, 3)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        y = self.bn(self.thin(self.dw(self.pw(self.c3(x)))))
        y = self.up(y).mean((2, 3))
        return self.fc(y)


def test_spatial_convs_selects_kernels_larger_than_one_everywhere():
    names = [n for n, _ in spatial_convs(Mixed())]
    assert names == ["c3", "dw", "up", "c1d", "c3d"]


def test_fixed_weights_bit_identical_after_training_while_others_learn():
    torch.manual_seed(0)
    model = fix_spatial(Mixed())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 2, 8, 8)).square().mean().backward()
        opt.step()
    after = model.state_dict()
    for name in ["c3.weight", "c3.bias", "dw.weight", "up.weight", "up.bias"]:
        assert torch.equal(before[name], after[name]), name
        assert model.get_parameter(name).grad is None
    for name in ["pw.weight", "thin.weight", "bn.weight", "fc.weight"]:
        assert not torch.equal(before[name], after[name]), name


def test_unfix_restores_learning():
    model = unfix_spatial(fix_spatial(Mixed()))
    assert all(p.requires_grad for p in model.parameters())


def test_model_without_spatial_convs_raises():
    with pytest.raises(NoSpatialConvError, match="no spatial convolution"):
        fix_spatial(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Linear(2, 2)))


def _weight_normed():
    from torch.nn.utils.parametrizations import weight_norm

    return nn.Sequential(nn.Conv2d(1, 2, 3), weight_norm(nn.Conv2d(2, 2, 3)))


def test_parametrized_weight_is_named_and_nothing_changes():
    # a weight_norm weight is recomputed on every access: it has no requires_grad flag of its own
    model = _weight_normed()
    with pytest.raises(ValueError, match=r"spatial conv '1' is computed .*cannot be fixed"):
        fix_spatial(model)
    assert all(p.requires_grad for p in model.parameters())  # layer '0' was not fixed either
    with pytest.raises(ValueError, match="'1' is computed"):
        unfix_spatial(model)
