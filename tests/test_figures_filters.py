import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from explainfix import kernels as K  # noqa: E402
from explainfix.cli import main  # noqa: E402
from explainfix.figures import (  # noqa: E402
    plot_dct_basis,
    plot_filter_grid,
    plot_ghaar_basis,
    plot_ghaar_filters,
    plot_guided_steer_filters,
    plot_psine_filters,
    plot_psine_steering,
    render_filter_figures,
)


def images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def assert_symmetric_shared_scale(ims):
    clims = {im.get_clim() for im in ims}
    assert len(clims) == 1
    lo, hi = clims.pop()
    assert lo == -hi and hi > 0
    assert all(im.get_cmap().name == "RdBu_r" for im in ims)


@pytest.mark.parametrize("shape", [(3, 3), (5, 5)])
def test_dct_basis_figure_numbers_filters_in_frequency_order(shape):
    h, w = shape
    fig = plot_dct_basis(shape)
    ims = images(fig)
    assert len(ims) == h * w + h + w  # basis filters + 1-D vectors along the first row and column
    assert_symmetric_shared_scale(ims)
    axes = np.array([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]).reshape(h + 1, w + 1)
    order = K.frequency_order(shape)
    basis = K.dct_basis(shape, dtype=torch.float64)
    for r in range(h):
        for c in range(w):
            ax = axes[r + 1, c + 1]
            assert ax.get_title() == str(order.index(r * w + c))
            np.testing.assert_allclose(ax.get_images()[0].get_array(), basis[r * w + c].numpy())
    # the first column holds the 1-D vector of each row index
    np.testing.assert_allclose(axes[2, 0].get_images()[0].get_array()[:, 0], K.dct_basis_1d(h, dtype=torch.float64)[1])
    if shape == (3, 3):
        assert [axes[1 + i // 3, 1 + i % 3].get_title() for i in range(9)] == ["0", "1", "3", "2", "5", "6", "4", "7", "8"]


def test_ghaar_basis_figure_is_haar_then_ghaar():
    fig = plot_ghaar_basis()
    arrays = [np.asarray(im.get_array()) for im in images(fig)]
    assert len(arrays) == 6
    np.testing.assert_allclose(arrays[0], [[1, 1], [-1, -1]], atol=1e-12)
    np.testing.assert_allclose(arrays[2], [[1, -1], [-1, 1]], atol=1e-12)
    np.testing.assert_allclose(arrays[4], [[1, 0, -1]] * 3, atol=1e-12)


def test_ghaar_filters_high_resolution_uses_the_same_parameters():
    fig = plot_ghaar_filters(4, (3, 3), hires=20, seed=2)
    ims = images(fig)
    assert len(ims) == 8
    assert_symmetric_shared_scale(ims)
    p = K.ghaar_params(4, (3, 3), generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(ims[0].get_array(), K.ghaar_from_params(p, (3, 3))[0].numpy())
    np.testing.assert_allclose(ims[4].get_array(), K.ghaar_from_params(p, (20, 20))[0].numpy())
    assert ims[4].get_array().shape == (20, 20)


def test_psine_figures():
    fig = plot_psine_filters(5, seed=1)
    ims = images(fig)
    assert len(ims) == 10 and ims[5].get_array().shape == (20, 20)
    assert_symmetric_shared_scale(ims[:5])  # one scale per row: whitened 3x3 and 20x20 differ per pixel
    assert_symmetric_shared_scale(ims[5:])
    fig = plot_psine_steering((4, 9, 30), size=12)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert len(titles) == 6
    for t in titles[:3]:
        ell, p = int(t.split("ℓ=")[1].split(",")[0]), int(t.split("max p=")[1])
        assert ell >= 2 * p + 1
    for t in titles[3:]:
        ell, p = int(t.split("ℓ=")[1].split(",")[0]), int(t.split("max p=")[1])
        assert ell < 2 * p + 1


def test_guided_steer_figure_with_small_guide():
    guide = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 5))
    fig = plot_guided_steer_filters(guide, n=6, shape=(5, 5), seed=0)
    ims = images(fig)
    assert len(ims) == 12 and ims[0].get_array().shape == (5, 5)
    assert "layer 1" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="no \\(7, 7\\) filters"):
        plot_guided_steer_filters(guide, shape=(7, 7))
    # an out-of-range layer is named, not an IndexError
    with pytest.raises(ValueError, match=r"layer must index one of the guide's 1 layers with \(5, 5\) filters, got 1"):
        plot_guided_steer_filters(guide, n=2, shape=(5, 5), layer=1)
    assert "layer 1" in plot_guided_steer_filters(guide, n=2, shape=(5, 5), layer=-1)._suptitle.get_text()


def test_plot_into_given_figure_and_all_zero_panels():
    from matplotlib.figure import Figure

    fig = Figure()
    out = plot_filter_grid([torch.zeros(2, 3, 3)], fig=fig)
    assert out is fig
    assert images(fig)[0].get_clim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match="share"):
        plot_filter_grid([torch.zeros(1, 3, 3)], share="column")


def test_cli_filters_writes_files(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["filters", "--out", str(out), "--format", "png", "--format", "svg", "--seed", "3"]) == 0
    printed = capsys.readouterr().out.split()
    names = {
        "dct_basis_3x3", "dct_basis_5x5", "ghaar_basis", "ghaar_filters",
        "psine_filters", "psine_steering", "guided_steer_filters",
    }
    expected = {str(out / f"{n}.{ext}") for n in names for ext in ("png", "svg")}
    assert set(printed) == expected
    for path in expected:
        data = open(path, "rb").read()
        assert len(data) > 2000
        assert data.startswith(b"\x89PNG") if path.endswith(".png") else b"<svg" in data[:2000]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_render_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unsupported figure format"):
        render_filter_figures(tmp_path, formats=("bmp",))
    with pytest.raises(SystemExit):
        main(["filters", "--out", str(tmp_path), "--format", "bmp"])
