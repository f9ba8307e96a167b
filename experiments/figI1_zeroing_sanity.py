"""Fig. I.1 in miniature: zeroing the most vs the least salient spatial kernels.

For each random-init model (1 channel in, 5 outputs), Eq. 4 saliency of every spatial kernel is
summed over synthetic minibatches (Gaussian images, random multi-hot targets); then a growing
fraction x of all spatial kernels is zeroed - the least salient, the most salient, or (as a
control) a random choice - and the relative change of the model's outputs on held-out synthetic
images is measured (eval mode):

    rel_change = ||f_zeroed(X) - f(X)||_F / ||f(X)||_F,   agreement = share of logits keeping their sign.

The paper plots test-set accuracy (ROC AUC) of models trained on CheXpert; without the data
there is no accuracy to measure, so the output change stands in for it. The sanity check holds
when zeroing the least salient kernels changes the outputs much less than zeroing the most
salient ones.

    .venv/bin/python experiments/figI1_zeroing_sanity.py [--models resnet50 ...] [--fractions 0.1 0.5 ...]
        [--batches 15] [--batch-size 4] [--size 128] [--quick]
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import explainfix as ef  # noqa: E402
from _common import make_parser, parse_with_quick, save_figure, setup, synthetic_batches, write_table  # noqa: E402
from explainfix.batches import eval_mode  # noqa: E402
from explainfix.prune import zero_kernels  # noqa: E402

NAME = "figI1_zeroing_sanity"
DEFAULT_MODELS = ("resnet50", "densenet121", "efficientnet_b0")
DEFAULT_FRACTIONS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
QUICK = {"models": ["mobilenet_v3_small"], "fractions": [0.1, 0.5, 0.9], "batches": 2, "batch_size": 2,
         "size": 32, "eval_batch": 4}
ORDERS = ("least", "random", "most")


@torch.no_grad()
def outputs(model, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        return model(x).double()


def order_scores(scores: dict, order: str, generator: torch.Generator) -> dict:
    """Scores whose lowest values are the kernels to zero first."""
    if order == "least":
        return scores
    if order == "most":
        return {n: -s for n, s in scores.items()}
    return {n: torch.rand(s.shape, generator=generator, dtype=torch.float64) for n, s in scores.items()}


def run(models, fractions, *, batches, batch_size, size, eval_batch, seed) -> list[dict]:
    rows = []
    x_eval = torch.randn(eval_batch, 1, size, size, generator=torch.Generator().manual_seed(seed + 1))
    for name in models:
        torch.manual_seed(seed)
        model = ef.create_model(name, in_chans=1, num_classes=5)
        scores = ef.spatial_saliency(model, synthetic_batches(batches, batch_size, size, seed=seed), progress=False)
        reference = outputs(model, x_eval)
        norm = torch.linalg.norm(reference).item()
        rand_scores = order_scores(scores, "random", torch.Generator().manual_seed(seed + 2))
        for fraction in fractions:
            row = {"model": name, "zeroed": fraction}
            for order in ORDERS:
                zeroed = copy.deepcopy(model)
                chosen = rand_scores if order == "random" else order_scores(scores, order, None)
                zero_kernels(zeroed, chosen, fraction)
                out = outputs(zeroed, x_eval)
                row[f"rel_change_{order}"] = torch.linalg.norm(out - reference).item() / norm
                row[f"agreement_{order}"] = ((out > 0) == (reference > 0)).double().mean().item()
            # ties only where both choices already destroyed the output (rel_change ~ 1)
            row["least_le_most"] = row["rel_change_least"] <= row["rel_change_most"]
            rows.append(row)
    return rows


def draw(rows: list[dict], out: Path) -> Path:
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(4.2 * len(models), 3.4), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, name in zip(axes, models):
        mine = [r for r in rows if r["model"] == name]
        x = [r["zeroed"] for r in mine]
        for order, style in zip(ORDERS, ("o-", "s--", "^-")):
            ax.plot(x, [r[f"rel_change_{order}"] for r in mine], style, label=f"{order} salient" if order != "random" else "random")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("fraction of spatial kernels zeroed")
        ax.set_ylabel("relative output change")
        ax.set_title(f"{name} (random init)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize="small")
    fig.suptitle("Zeroing the most vs least salient spatial kernels (synthetic data; no accuracy)")
    return save_figure(fig, out / "figI1_zeroing_sanity.png")


NOTES = """\
Random-init models (1 channel, 5 outputs, default BatchNorm statistics); Eq. 4 saliency summed
over {batches} synthetic minibatches of {batch_size} Gaussian 1x{size}x{size} images with random
multi-hot targets; outputs compared on {eval_batch} held-out synthetic images in eval mode.
`rel_change_<order>` = ||f_zeroed(X) - f(X)||_F / ||f(X)||_F after zeroing the given fraction of
all spatial kernels, chosen as the `least` salient, at `random`, or the `most` salient;
`agreement_<order>` = share of the logits that keep their sign. The paper's Fig. I.1 measures
test-set performance of models trained on CheXpert; **there is no accuracy here without the
data**, only the change of the outputs. Sanity check: zeroing the least salient kernels changes the
outputs much less than zeroing the most salient ones; `least_le_most` states least <= most (equal
only where both choices already wiped the output out, rel_change = 1). rel_change = 1 means the
output no longer depends on the input: in random-init ResNet50, for example, the 1 % most salient
kernels include all 64 of the 7x7 stem, and zeroing them leaves only the classifier's bias."""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_parser(NAME, __doc__)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered models")
    parser.add_argument("--fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS),
                        help="fractions of spatial kernels to zero, each in [0, 1)")
    parser.add_argument("--batches", type=int, default=15, help="saliency minibatches (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per minibatch (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="image side (default: %(default)s)")
    parser.add_argument("--eval-batch", type=int, default=8, help="held-out images (default: %(default)s)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parse_with_quick(parser, argv, QUICK)
    bad = [f for f in args.fractions if not 0 <= f < 1]
    if bad:
        parser.error(f"--fractions must lie in [0, 1) (fractions, not percentages), got {bad}")
    out = setup(args)
    rows = run(args.models, sorted(args.fractions), batches=args.batches, batch_size=args.batch_size,
               size=args.size, eval_batch=args.eval_batch, seed=args.seed)
    figure = None if args.no_figures else draw(rows, out)
    write_table(out, NAME, rows, title="Fig. I.1 in miniature: output change after zeroing salient kernels",
                notes=NOTES.format(**vars(args)), settings=vars(args),
                extra={"figures": [] if figure is None else [figure.name]})
    if figure is not None:
        print(f"wrote {figure}")
    return rows


if __name__ == "__main__":
    main()
