"""Statistics of the paper's sweeps (Sec. 4.1, App. D): means with t-based CIs over seeds, the
±10-epoch windows of App. D and paired Wilcoxon signed-rank tests of each fixed init against the
learned baseline."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = ["mean_ci", "per_epoch_ci", "windowed_wilcoxon", "wilcoxon_table", "significantly_outperforms",
           "epoch_significance", "best_run_window"]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean over seeds and its two-sided t-distribution confidence interval.

    One value gives a zero-width interval; NaNs are dropped; no values raise ``ValueError``.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(x.mean())
    if x.size == 1:
        return m, m, m
    half = float(_st.t.ppf((1 + confidence) / 2, df=x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


def per_epoch_ci(long_df: pd.DataFrame, metric: str, by: str = "arm", confidence: float = 0.95) -> pd.DataFrame:
    """Per ``by`` group and epoch, the mean of ``metric`` over seeds with its CI.

    ``long_df`` has one row per (run, epoch) with columns ``by``, ``epoch`` and ``metric``.
    Returns columns ``by, epoch, mean, low, high, n``.
    """
    rows = []
    for (group, epoch), sub in long_df.groupby([by, "epoch"], sort=True):
        vals = sub[metric].dropna().to_numpy(float)
        if vals.size == 0:
            continue
        m, lo, hi = mean_ci(vals, confidence)
        rows.append({by: group, "epoch": epoch, "mean": m, "low": lo, "high": hi, "n": int(vals.size)})
    return pd.DataFrame(rows, columns=[by, "epoch", "mean", "low", "high", "n"])


def windowed_wilcoxon(paired_a, paired_b, center_epoch: int, half_width: int = 10,
                      alternative: str = "two-sided") -> float:
    """App. D: p-value of the paired Wilcoxon signed-rank test of ``a`` vs ``b`` over the epochs
    ``center_epoch ± half_width``, paired over seeds and epochs.

    ``paired_a`` / ``paired_b``: arrays or DataFrames of shape (seeds, epochs) — row = seed, column =
    epoch index (DataFrame columns are epoch numbers). ``alternative="greater"`` tests a > b.
    """
    a = _as_frame(paired_a)
    b = _as_frame(paired_b)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    cols = [c for c in a.columns if center_epoch - half_width <= c <= center_epoch + half_width]
    if not cols:
        raise ValueError(f"no epochs within {center_epoch}±{half_width}")
    x = a[cols].to_numpy(float).ravel()
    y = b[cols].to_numpy(float).ravel()
    keep = ~(np.isnan(x) | np.isnan(y))
    return float(_st.wilcoxon(x[keep], y[keep], alternative=alternative).pvalue)


def _as_frame(x) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        return x
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    return pd.DataFrame(arr)


def wilcoxon_table(df: pd.DataFrame, metric: str, baseline: str = "learned",
                   alternative: str = "two-sided", by: str = "arm", pair: str = "seed") -> pd.DataFrame:
    """p-value of the paired (by ``pair``) Wilcoxon signed-rank test of each ``by`` group vs ``baseline``.

    ``df``: one row per run (columns ``by``, ``pair``, ``metric``). ``alternative="greater"`` tests
    arm > baseline. Returns columns ``arm, n, mean, baseline_mean, diff, p`` (one row per non-baseline arm).
    """
    base = df[df[by] == baseline].set_index(pair)[metric]
    if base.empty:
        raise ValueError(f"no runs of the baseline {baseline!r}")
    rows = []
    for arm, sub in df[df[by] != baseline].groupby(by, sort=True):
        s = sub.set_index(pair)[metric]
        common = s.index.intersection(base.index)
        x, y = s.loc[common].to_numpy(float), base.loc[common].to_numpy(float)
        p = float("nan")
        if len(common) > 0 and np.any(x != y):
            p = float(_st.wilcoxon(x, y, alternative=alternative).pvalue)
        rows.append({"arm": arm, "n": int(len(common)), "mean": float(np.mean(x)) if len(x) else float("nan"),
                     "baseline_mean": float(np.mean(y)) if len(y) else float("nan"),
                     "diff": float(np.mean(x - y)) if len(x) else float("nan"), "p": p})
    return pd.DataFrame(rows, columns=["arm", "n", "mean", "baseline_mean", "diff", "p"])


def significantly_outperforms(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """The arms of a :func:`wilcoxon_table` with ``p < alpha`` and a higher mean than the baseline."""
    t = table[(table["p"] < alpha) & (table["diff"] > 0)]
    return list(t["arm"])


def epoch_significance(long_df: pd.DataFrame, metric: str, baseline: str = "learned", by: str = "arm",
                       pair: str = "seed", half_width: int = 10, alpha: float = 0.001) -> pd.DataFrame:
    """App. D's background bands: per epoch, do the fixed arms together beat the baseline?

    For each epoch ``t``, one one-tailed paired Wilcoxon signed-rank test over all (non-baseline
    arm, ``pair``, epoch in ``t ± half_width``) values against the baseline run of the same
    ``pair`` (seed) and epoch. The paper shades green where the fixed models outperform
    (its ``p > .999`` of the "less" test, i.e. ``p_greater < alpha``) and red where they
    underperform (``p_less < alpha``).

    Returns columns ``epoch, p_greater, p_less, verdict`` (``"better"``, ``"worse"`` or ``""``).
    """
    base = long_df[long_df[by] == baseline].set_index([pair, "epoch"])[metric]
    if base.empty:
        raise ValueError(f"no runs of the baseline {baseline!r}")
    other = long_df[long_df[by] != baseline]
    joined = other.join(base.rename("_base"), on=[pair, "epoch"]).dropna(subset=[metric, "_base"])
    rows = []
    for t in sorted(long_df["epoch"].unique()):
        w = joined[(joined["epoch"] >= t - half_width) & (joined["epoch"] <= t + half_width)]
        d = (w[metric] - w["_base"]).to_numpy(float)
        pg = pl = float("nan")
        if d.size and np.any(d != 0):
            pg = float(_st.wilcoxon(d, alternative="greater").pvalue)
            pl = float(_st.wilcoxon(d, alternative="less").pvalue)
        verdict = "better" if pg < alpha else "worse" if pl < alpha else ""
        rows.append({"epoch": int(t), "p_greater": pg, "p_less": pl, "verdict": verdict})
    return pd.DataFrame(rows, columns=["epoch", "p_greater", "p_less", "verdict"])


def best_run_window(long_df: pd.DataFrame, metric: str, by: str = "arm", start: int | None = None,
                    end: int | None = None, confidence: float = 0.95, run: str = "run") -> pd.DataFrame:
    """Fig. 8: per ``by`` group, the run with the best mean ``metric`` over epochs ``start..end``,
    with that mean and its CI over those epochs.

    Returns columns ``by, run, mean, low, high, epochs`` (one row per group, in group order).
    """
    w = long_df
    if start is not None:
        w = w[w["epoch"] >= start]
    if end is not None:
        w = w[w["epoch"] <= end]
    if w.empty:
        raise ValueError(f"no epochs of {metric!r} between {start} and {end}")
    rows = []
    for group, sub in w.groupby(by, sort=True):
        means = sub.groupby(run)[metric].mean()
        best = means.idxmax()
        m, lo, hi = mean_ci(sub[sub[run] == best][metric].to_numpy(float), confidence)
        rows.append({by: group, "run": best, "mean": m, "low": lo, "high": hi,
                     "epochs": int((sub[run] == best).sum())})
    return pd.DataFrame(rows, columns=[by, "run", "mean", "low", "high", "epochs"])
