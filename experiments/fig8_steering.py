"""Fig. 8: steered fixed initializations beat the non-steered ones; GHaar beats the learned baseline.

U-NetD on BBBC038v1, one arm per spatial initialization, 6 seeds each, 300 epochs, the
out-of-distribution test set (stage2) evaluated every epoch. For each arm the best of its
runs (highest mean test Dice over epochs 151-300, the second half) is drawn with that mean and
its 95 % CI over those epochs, as in the paper. Beside it, the table gives the paired (by seed)
Wilcoxon signed-rank test of every arm's per-run mean against the learned baseline.

    python experiments/fig8_steering.py                 # the paper's sweep (needs BBBC038v1)
    python experiments/fig8_steering.py --smoke         # in miniature, ~30 s on a CPU
    python experiments/fig8_steering.py --executor slurm --jobs 36
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from explainfix import stats  # noqa: E402
from explainfix.figures.sweeps import plot_best_runs  # noqa: E402
from _common import save_figure, write_table  # noqa: E402
from _sweeps import in_grid_order, monitored, run_and_collect, settings, sweep_parser  # noqa: E402

NAME = "fig8_steering"


def second_half(epochs):
    """Epochs ``E/2 + 1 .. E`` (151-300 for the paper's 300)."""
    last = int(epochs["epoch"].max())
    return epochs[epochs["epoch"] > last // 2]


def main(argv: list[str] | None = None) -> list[dict]:
    args = sweep_parser(NAME, __doc__, "fig8.yaml").parse_args(argv)
    sweep, results, epochs, out = run_and_collect(args)
    metric = monitored(results, epochs, split="test" if "test_dice" in epochs.columns else "val")
    window = second_half(epochs)
    best = in_grid_order(stats.best_run_window(window, metric, by="arm"), results)
    per_run = window.groupby(["arm", "seed", "run"], as_index=False)[metric].mean()
    tests = stats.wilcoxon_table(per_run, metric, baseline="learned", alternative="two-sided").set_index("arm")
    greater = stats.wilcoxon_table(per_run, metric, baseline="learned", alternative="greater").set_index("arm")
    winners = stats.significantly_outperforms(greater.reset_index())
    start, end = int(window["epoch"].min()), int(window["epoch"].max())
    rows = []
    for _, b in best.iterrows():
        arm = b["arm"]
        rows.append({"arm": arm, "best_run": b["run"], "best_mean": b["mean"], "ci_low": b["low"], "ci_high": b["high"],
                     "runs": int((per_run["arm"] == arm).sum()),
                     "mean_of_runs": float(per_run[per_run["arm"] == arm][metric].mean()),
                     "p_vs_learned": None if arm == "learned" else tests.loc[arm, "p"],
                     "p_greater": None if arm == "learned" else greater.loc[arm, "p"],
                     "outperforms_learned": None if arm == "learned" else arm in winners})
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    plot_best_runs(best, by="arm", ax=ax, ylabel=f"{metric}, epochs {start}-{end}",
                   title=f"Fig. 8: best of {int(per_run.groupby('arm').size().max())} runs per arm (95 % CI over epochs)")
    save_figure(fig, out / f"{NAME}.png")
    plt.close(fig)
    notes = (f"`best_mean` [`ci_low`, `ci_high`]: the best run's mean {metric} over epochs {start}-{end} and its "
             "95 % t-interval over those epochs (Fig. 8). `mean_of_runs`: the mean over all runs of the arm. "
             "`p_vs_learned`: two-sided paired Wilcoxon signed-rank test of the per-run means against the learned "
             "run of the same seed; `p_greater`: one-sided (arm > learned); `outperforms_learned`: p_greater < 0.05. "
             "With 2 seeds (--smoke) no p-value can fall below 0.25." + (" Smoke run: tiny U-NetD, synthetic masks."
                                                                           if args.smoke else ""))
    write_table(out, NAME, rows, title="Fig. 8: steered fixed initializations on BBBC038v1", notes=notes,
                settings=settings(args, sweep), extra={"metric": metric, "window": [start, end]})
    return rows


if __name__ == "__main__":
    main()
