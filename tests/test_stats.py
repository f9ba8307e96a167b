import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from explainfix.stats import mean_ci, per_epoch_ci, significantly_outperforms, wilcoxon_table, windowed_wilcoxon


def test_mean_ci_hand_computed():
    # values 1,2,3: mean 2, sd 1, se 1/sqrt(3), t(0.975, 2) = 4.302652729911275
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)
    assert m == pytest.approx(2.0)
    assert lo == pytest.approx(2.0 - half)
    assert hi == pytest.approx(2.0 + half)


def test_mean_ci_matches_scipy_interval():
    x = np.random.default_rng(0).normal(size=6)
    lo, hi = st.t.interval(0.9, df=5, loc=x.mean(), scale=st.sem(x))
    m, a, b = mean_ci(x, confidence=0.9)
    assert (a, b) == pytest.approx((lo, hi))
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError):
        mean_ci([])


def test_per_epoch_ci():
    df = pd.DataFrame({"arm": ["a"] * 4 + ["b"] * 2, "epoch": [0, 0, 1, 1, 0, 0],
                       "v": [1.0, 3.0, 2.0, 2.0, 0.0, 1.0]})
    out = per_epoch_ci(df, "v")
    row = out[(out.arm == "a") & (out.epoch == 0)].iloc[0]
    assert row["mean"] == 2.0 and row["n"] == 2
    assert row["high"] - row["mean"] == pytest.approx(st.t.ppf(0.975, 1) * np.sqrt(2) / np.sqrt(2))
    row = out[(out.arm == "a") & (out.epoch == 1)].iloc[0]
    assert row["low"] == row["high"] == 2.0


def test_windowed_wilcoxon_matches_scipy():
    rng = np.random.default_rng(1)
    a = pd.DataFrame(rng.normal(size=(3, 40)))
    b = pd.DataFrame(rng.normal(size=(3, 40)) - 0.5)
    p = windowed_wilcoxon(a, b, center_epoch=20, half_width=10, alternative="greater")
    cols = list(range(10, 31))
    ref = st.wilcoxon(a[cols].to_numpy().ravel(), b[cols].to_numpy().ravel(), alternative="greater").pvalue
    assert p == pytest.approx(ref)
    with pytest.raises(ValueError):
        windowed_wilcoxon(a, b.iloc[:2], 20)


def test_wilcoxon_table_and_outperforms():
    seeds = list(range(6))
    base = [0.5, 0.6, 0.55, 0.52, 0.58, 0.61]
    better = [b + d for b, d in zip(base, [0.1, 0.2, 0.15, 0.12, 0.11, 0.13])]
    worse = [b - d for b, d in zip(base, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06])]
    df = pd.DataFrame({"arm": ["learned"] * 6 + ["ghaar"] * 6 + ["ones"] * 6, "seed": seeds * 3,
                       "dice": base + better + worse})
    t = wilcoxon_table(df, "dice")
    p = dict(zip(t.arm, t.p))
    assert p["ghaar"] == pytest.approx(st.wilcoxon(better, base).pvalue)
    # all 6 differences positive: exact two-sided p = 2 / 2**6
    assert p["ghaar"] == pytest.approx(2 / 64)
    assert significantly_outperforms(t, 0.05) == ["ghaar"]
    assert significantly_outperforms(t, 0.01) == []
    tg = wilcoxon_table(df, "dice", alternative="greater")
    assert dict(zip(tg.arm, tg.p))["ghaar"] == pytest.approx(1 / 64)
