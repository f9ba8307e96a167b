"""Fig. 12 / Fig. G.2 without saliency: how each fixed initialization steers one architecture.

One random-init model (default DenseNet121, 1 channel in, 5 out) is spatially re-initialized
with each fixed initialization - ``ones``, ``dct2``, ``unchanged``, ``ghaar``, ``psine`` and
``guided_steer`` (guided by the ``unchanged`` model, i.e. a random-init model of the same
architecture: the paper's guide was ImageNet-pretrained) - and ExplainSteer draws its ``e^(d)``
heatmap over layers without saliency (every kernel weighs 1/n), plus the ``e^(0)`` spectra of
all initializations side by side. The printed table states the sanity checks of Sec. 4.4 /
App. G numerically:

* DCT2 is flat: ``flatness`` (entropy of the global ``e^(d)`` / log m) is 1;
* GuidedSteer looks like its guide: ``dist_to_guide`` (relative Frobenius distance of the
  ``e^(d)`` heatmaps) is small, far below that of the other initializations - with the random
  ``unchanged`` model as guide (flat spectrum) and with the ``ghaar`` model as guide (not flat);
* GHaar and Psine prioritize low frequencies: ``low_high`` (mean energy of the lower half of
  the non-constant basis filters over that of the upper half) is > 1.

    .venv/bin/python experiments/fig12_explainsteer.py [--model densenet121] [--quick]

Fig. 12 itself (and Figs. G.1, G.2) shows *saliency-weighted* spectra of models trained on
CheXpert; those need the dataset and a training loop.
"""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import explainfix as ef  # noqa: E402
from _common import make_parser, save_figure, setup, write_table  # noqa: E402

NAME = "fig12_explainsteer"
INITS = ("ones", "dct2", "unchanged", "ghaar", "psine", "guided_steer")
GUIDE = "unchanged"
STRUCTURED_GUIDE = "ghaar"
QUICK_MODEL = "mobilenet_v3_small"

#: thresholds of the numerical sanity checks
FLAT_MIN = 0.99  # DCT2: normalized entropy of e^(d)
GUIDE_MAX = 0.25  # GuidedSteer: relative distance to the guide's heatmap
LOW_HIGH_MIN = 1.0  # GHaar, Psine: low- over high-frequency energy


def build(model_name: str, init: str, seed: int, guide=None):
    """A fresh random-init model, spatially re-initialized with ``init`` and fixed."""
    torch.manual_seed(seed)
    model = ef.create_model(model_name, in_chans=1, num_classes=5)
    options = {"guide": guide} if init == "guided_steer" else {}
    ef.initialize(model, init, seed=seed, **options)
    return model


def single_layer_shapes(result) -> list[str]:
    """Layers whose kernel shape no other layer has (e.g. a 7x7 stem): left out of the heatmaps, as in App. G."""
    return [layers[0].name for layers in result.by_shape().values() if len(layers) == 1]


def main_shape(result, skip) -> tuple[int, ...]:
    """The kernel shape with the most layers."""
    counts = {s: sum(l.name not in skip for l in ls) for s, ls in result.by_shape().items()}
    return max(counts, key=counts.get)


def _shape_distance(E: torch.Tensor, G: torch.Tensor) -> float:
    """Relative Frobenius distance of two heatmaps, each scaled to total energy 1 (compares shapes,
    as heatmaps drawn on their own colour scales do)."""
    E, G = E / E.sum(), G / G.sum()
    return (torch.linalg.norm(E - G) / torch.linalg.norm(G)).item()


def metrics(result, guide_result, shape, skip) -> dict:
    """Numbers behind the sanity checks, on the kernels of ``shape``."""
    E, _ = result.ed_matrix(shape, skip)
    E = E.double()
    total = E.sum(0).sum()
    glob = E.sum(1)
    p = glob / glob.sum() if glob.sum() > 0 else glob
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    m = p.numel()
    rest = p[1:]  # the non-constant basis filters, low -> high frequency
    half = rest.numel() // 2
    low, high = rest[:half].mean().item(), rest[-half:].mean().item()
    structured = rest.sum().item() > 1e-6  # else only round-off beside the constant filter
    e0 = result.global_e0(shape, skip)
    G, _ = guide_result.ed_matrix(shape, skip)
    G = G.double()
    return {
        "flatness": entropy / math.log(m),
        "dc_share": p[0].item(),
        "low_high": (low / high if high > 0 else math.inf) if structured else None,
        "e0_lowest_share": None if e0 is None else (e0[0] / e0.sum()).item(),
        "dist_to_guide": _shape_distance(E, G),
        "energy_vs_guide": (total / G.sum()).item(),
        "energy_per_layer": (total / E.shape[1]).item(),
        "global_ed": p.tolist(),
    }


def check(init: str, row: dict) -> tuple[str, bool | None]:
    """The sanity check of Sec. 4.4 / App. G that applies to ``init``."""
    if init == "dct2":
        return f"flat (flatness >= {FLAT_MIN})", row["flatness"] >= FLAT_MIN
    if init.startswith("guided_steer"):
        return f"looks like its guide (dist_to_guide <= {GUIDE_MAX})", row["dist_to_guide"] <= GUIDE_MAX
    if init in ("ghaar", "psine"):
        return f"low frequencies first (low_high > {LOW_HIGH_MIN})", row["low_high"] > LOW_HIGH_MIN
    if init == "ones":
        return "constant filter only (dc_share > 0.99)", row["dc_share"] > 0.99
    if init == GUIDE:
        return "the guide (random init)", None
    return "", None


def draw(results: dict, shape, skip, out: Path, model_name: str) -> list[Path]:
    """One e^(d) heatmap per init (G.2 style), a grid of all of them, and the e^(0) lines (Fig. 12b)."""
    from matplotlib.figure import Figure

    from explainfix.explain.plot import plot_ed_heatmap, plot_explainsteer, plot_spectra_lines

    paths = []
    for init, result in results.items():
        fig = plot_explainsteer(result, skip=skip, title=f"{model_name}, {init} (without saliency)")
        stem = re.sub(r"[^A-Za-z0-9]+", "_", init).strip("_")
        paths.append(save_figure(fig, out / f"fig12a_ed_{stem}.png"))
    n = len(results)
    cols = 2
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * 9.0, rows * 3.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (init, result) in zip(axes, results.items()):
        plot_ed_heatmap(result, shape, skip=skip, ax=ax, max_names=0, title=init)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"ExplainSteer $e^{{(d)}}$ without saliency, {model_name}, {'x'.join(map(str, shape))} kernels")
    paths.append(save_figure(fig, out / "fig12a_ed_all_inits.png"))
    fig = plot_spectra_lines(results, shape, which="e0",
                             title=f"$e^{{(0)}}$ without saliency, {model_name}, {'x'.join(map(str, shape))}")
    paths.append(save_figure(fig, out / "fig12b_e0_by_init.png"))
    return paths


def run(model_name: str, inits: list[str], seed: int, out: Path | None = None, figures: bool = True):
    guide = build(model_name, GUIDE, seed)
    guide_result = ef.explainsteer(guide)
    skip = single_layer_shapes(guide_result)
    shape = main_shape(guide_result, skip)
    results, models = {}, {}
    for init in inits:
        models[init] = guide if init == GUIDE else build(model_name, init, seed, guide=guide)
        results[init] = guide_result if init == GUIDE else ef.explainsteer(models[init])
    guides = {init: guide_result for init in results}
    if "guided_steer" in inits and STRUCTURED_GUIDE in inits:
        # a guide with a non-flat spectrum makes "GuidedSteer looks like its guide" a real test
        label = f"guided_steer (guide: {STRUCTURED_GUIDE})"
        steered = build(model_name, "guided_steer", seed, guide=models[STRUCTURED_GUIDE])
        results[label] = ef.explainsteer(steered)
        guides[label] = results[STRUCTURED_GUIDE]
    rows = []
    for init, result in results.items():
        row = {"init": init, "model": model_name, "kernel_shape": "x".join(map(str, shape)),
               **metrics(result, guides[init], shape, skip)}
        row["sanity_check"], row["passes"] = check(init, row)
        rows.append(row)
    paths = draw(results, shape, skip, out, model_name) if figures and out is not None else []
    return rows, results, skip, paths


COLUMNS = ("init", "kernel_shape", "flatness", "dc_share", "low_high", "e0_lowest_share", "dist_to_guide",
           "energy_vs_guide", "energy_per_layer", "sanity_check", "passes")

NOTES = """\
ExplainSteer without saliency (every kernel of a layer weighs 1/n) of one random-init model per
fixed initialization; statistics over the {shape} kernels of all layers (left out: {skip}).
`flatness`: entropy of the global e^(d) (summed over layers, normalized) / log(m), 1 = all basis
filters equal; `dc_share`: share of the constant basis filter; `low_high`: mean energy of the
lower half of the non-constant basis filters (frequency order of App. F) over that of the upper
half; `e0_lowest_share`: share of the lowest 1-D frequency in e^(0) (1/N when flat);
`dist_to_guide`: ||E - E_guide||_F / ||E_guide||_F of the e^(d) heatmaps, each first scaled to
total energy 1 (the shape of the heatmap, as drawn on its own colour scale), the guide being the
`unchanged` model (for `guided_steer (guide: ghaar)`: the `ghaar` model, a guide whose spectrum
is not flat); `energy_vs_guide`: total energy over the guide's; `energy_per_layer`: mean column sum of the heatmap.

Differences to the paper: the paper's Unchanged / GuidedSteer guide is ImageNet-pretrained and its
Fig. 12 / G.1 / G.2 heatmaps are saliency-weighted after training on CheXpert. Here the guide is a
random (Kaiming) initialization, whose spectrum is flat like DCT2's, so "GuidedSteer looks like
its guide" is also checked with the GHaar model as guide, whose spectrum favours low
frequencies. Saliency-weighted heatmaps of trained models need the data."""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_parser(NAME, __doc__)
    parser.add_argument("--model", default=None, help="registered model (default: densenet121; --quick: "
                        f"{QUICK_MODEL})")
    parser.add_argument("--inits", nargs="+", default=list(INITS), choices=ef.list_inits(), help="initializations")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    out = setup(args)
    model_name = args.model or (QUICK_MODEL if args.quick else "densenet121")
    rows, results, skip, paths = run(model_name, list(args.inits), args.seed, out, figures=not args.no_figures)
    shape = rows[0]["kernel_shape"] if rows else ""
    extra = {"spectra": {init: r.to_dict()["global"] for init, r in results.items()}, "skipped_layers": skip,
             "figures": [p.name for p in paths]}
    write_table(out, NAME, rows, title=f"ExplainSteer sanity checks without saliency ({model_name})",
                notes=NOTES.format(shape=shape, skip=", ".join(skip) or "none"), columns=COLUMNS,
                settings=vars(args), extra=extra)
    for p in paths:
        print(f"wrote {p}")
    return rows


if __name__ == "__main__":
    main()
