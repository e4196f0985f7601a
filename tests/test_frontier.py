"""Tests of paper B's frontier diagnostics (cape.analysis.frontier, cape.analysis.saturation)
and their CLI commands (`cape frontier ...`, `cape hfield`).

The acceptance figures (the preprint's published numbers) live here, never in src: every
analysis must reproduce them from the built-in ``paper-frontier`` panel. Independent checks
use numpy, scipy and statsmodels directly, so a wrong formula in the package cannot agree
with itself.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps

import cape
from cape.analysis import frontier as fr
from cape.analysis.saturation import binomial_se, expected_range, saturation
from cape.errors import CapeError
from conftest import run_cli

X, Y = fr.FRONTIER_PAIR  # swe_bench_verified (x), gpqa_diamond (y)

# ---------------------------------------------------------------- published figures (paper B)
PUB_N, PUB_LABS = 34, 10
PUB_R, PUB_SLOPE, PUB_INTERCEPT = 0.7235, 0.5131, 46.38
COR_R, COR_SLOPE, COR_INTERCEPT = 0.8251, 0.6775, 34.47
LAB_SLOPES = {"Google": (1.152, 5), "Anthropic": (0.973, 8), "OpenAI": (0.546, 10), "DeepSeek": (0.232, 4)}
COR_DEEPSEEK_SLOPE = 0.67
LOLO_MAE = 9.2
PAPER_HALFWIDTH = 16.15
DEEPSEEK_ORDER = ["DeepSeek-V2.5", "DeepSeek-V3", "DeepSeek-R1", "DeepSeek V3.2"]
DEEPSEEK_H_FIRST, DEEPSEEK_H_LAST = 11.2, -4.65       # published "+11.2 -> -4.7"
TIER_SPREAD = 7.8                                     # GPT-5.4 std vs xhigh
SWE_TOP5_SPREAD, GPQA_TOP5_SPREAD = 0.9, 3.0          # published subset -> sigma = 0.3
POST_CUTOFF = {"Claude Opus 4.7", "Kimi K2.6", "DeepSeek V4 Pro", "Qwen3.6-27B", "GLM-5.1"}

FAST = dict(n_bootstrap=500, n_permutations=999, seed=0)


# ---------------------------------------------------------------- helpers
@lru_cache(maxsize=None)
def _panel(corrected: bool) -> pd.DataFrame:
    return cape.load_panel("paper-frontier", corrected=corrected)


def panel(corrected: bool = False) -> pd.DataFrame:
    """A fresh copy of the built-in panel (the cached frame is never handed out)."""
    src = _panel(corrected)
    df = src.copy(deep=True)
    df.attrs = copy.deepcopy(src.attrs)
    return df


@lru_cache(maxsize=None)
def _fit(corrected: bool) -> fr.PopulationFit:
    return fr.population_fit(panel(corrected), **FAST)


@lru_cache(maxsize=None)
def _labs(corrected: bool) -> fr.Labs:
    return fr.labs(panel(corrected), n_resamples=500, seed=0)


def fit_xy(corrected: bool = False) -> pd.DataFrame:
    """The published fit set computed by hand: both scores and not post-cutoff."""
    df = panel(corrected)
    df = df[df[X].notna() & df[Y].notna()]
    post = (df["subset"] == "post-cutoff") | df["flags"].fillna("").str.contains("post_cutoff")
    return df[~post]


def strict_json(result) -> dict:
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


def hand_frame(rows, dates=None) -> pd.DataFrame:
    """(model, family, swe, gpqa) tuples -> a panel-shaped frame, index named model."""
    df = pd.DataFrame(rows, columns=["model", "family", X, Y]).set_index("model")
    if dates is not None:
        df["release_date"] = dates
    return df


def hand_ols(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(x, y, 1)
    return slope, intercept


# ====================================================================== 1. population fit
def test_population_fit_published_figures():
    res = _fit(False)
    assert res.n == PUB_N and res.n_labs == PUB_LABS
    assert res.subset == "published"
    assert res.r.value == pytest.approx(PUB_R, abs=5e-4)
    assert res.slope.value == pytest.approx(PUB_SLOPE, abs=5e-4)
    assert res.intercept.value == pytest.approx(PUB_INTERCEPT, abs=5e-3)
    # independent: numpy on the hand-selected 34 models
    f = fit_xy()
    assert len(f) == PUB_N and f["family"].nunique() == PUB_LABS
    slope, intercept = hand_ols(f[X], f[Y])
    assert res.slope.value == pytest.approx(slope, abs=1e-10)
    assert res.intercept.value == pytest.approx(intercept, abs=1e-8)
    assert res.r.value == pytest.approx(np.corrcoef(f[X], f[Y])[0, 1], abs=1e-12)
    assert res.p_parametric == pytest.approx(sps.pearsonr(f[X], f[Y]).pvalue, rel=1e-6)
    # CIs bracket the estimate and are proper intervals
    for e in (res.r, res.slope, res.intercept):
        assert e.ci[0] < e.value < e.ci[1]
    assert res.r_by_lab.n == PUB_LABS and res.r.n == PUB_N
    strict_json(res)


def test_population_fit_corrected_figures():
    res = _fit(True)
    assert res.n == PUB_N
    assert res.r.value == pytest.approx(COR_R, abs=5e-4)
    assert res.slope.value == pytest.approx(COR_SLOPE, abs=5e-4)
    assert res.intercept.value == pytest.approx(COR_INTERCEPT, abs=5e-3)
    f = fit_xy(True)
    assert f.loc["DeepSeek-V2.5", Y] == 41.3 and f.loc["DeepSeek-V3", Y] == 59.1
    slope, intercept = hand_ols(f[X], f[Y])
    assert res.slope.value == pytest.approx(slope, abs=1e-10)
    assert res.intercept.value == pytest.approx(intercept, abs=1e-8)
    # the errata layer logs exactly the two DeepSeek GPQA corrections
    log = panel(True).attrs["cape"]["log"]
    assert len(log) == 2 and all("DeepSeek" in s and "gpqa_diamond" in s for s in log)


def test_population_fit_subsets_and_seed_reproducible():
    res = _fit(False)
    sub = res.subsets.set_index("subset")
    assert sub.loc["published (not post-cutoff)", "n"] == PUB_N
    assert sub.loc["published (not post-cutoff)", "r"] == pytest.approx(res.r.value, abs=1e-12)
    df = panel()
    core = df[(df["subset"] == "core")]
    assert sub.loc["core", "n"] == len(core)
    assert sub.loc["core", "slope"] == pytest.approx(hand_ols(core[X], core[Y])[0], abs=1e-10)
    assert sub.loc["all, post-cutoff included", "n"] == PUB_N + len(POST_CUTOFF)
    allm = df[df[X].notna() & df[Y].notna()]
    assert sub.loc["all, post-cutoff included", "slope"] == pytest.approx(hand_ols(allm[X], allm[Y])[0], abs=1e-10)
    # the core fit through the API agrees with the subset table
    core_fit = fr.population_fit(panel(), subset="core", n_bootstrap=200, n_permutations=99, seed=0)
    assert core_fit.n == len(core) and core_fit.r.value == pytest.approx(sub.loc["core", "r"], abs=1e-12)
    # the same seed gives the same intervals; another seed different ones
    again = fr.population_fit(panel(), **FAST)
    assert again.slope.ci == res.slope.ci and again.r_by_lab.ci == res.r_by_lab.ci
    other = fr.population_fit(panel(), n_bootstrap=500, n_permutations=999, seed=1)
    assert other.slope.ci != res.slope.ci


def test_standard_errors_match_statsmodels_and_hand_sandwich():
    res = _fit(False)
    f = fit_xy()
    x, y = f[X].to_numpy(float), f[Y].to_numpy(float)
    groups = pd.factorize(f["family"])[0]
    Xm = sm.add_constant(x)
    ols = sm.OLS(y, Xm)
    classical, hc3 = ols.fit(), ols.fit(cov_type="HC3")
    clus = ols.fit(cov_type="cluster", cov_kwds={"groups": groups})
    coef = res.coefficients.set_index("term")
    for j, term in enumerate(("intercept", "slope")):
        assert coef.loc[term, "estimate"] == pytest.approx(classical.params[j], rel=1e-10)
        assert coef.loc[term, "se_classical"] == pytest.approx(classical.bse[j], rel=1e-8)
        assert coef.loc[term, "se_hc3"] == pytest.approx(hc3.bse[j], rel=1e-8)
        assert coef.loc[term, "se_cluster"] == pytest.approx(clus.bse[j], rel=1e-8)
        assert coef.loc[term, "p_cluster"] == pytest.approx(clus.pvalues[j], rel=1e-6)

    # hand-written formulas, not statsmodels
    n, k = Xm.shape
    bread = np.linalg.inv(Xm.T @ Xm)
    beta = bread @ Xm.T @ y
    e = y - Xm @ beta
    se_classical = np.sqrt(np.diag(bread) * (e @ e) / (n - k))
    lev = np.einsum("ij,jk,ik->i", Xm, bread, Xm)
    meat_hc3 = (Xm * (e / (1 - lev))[:, None] ** 2).T @ Xm
    se_hc3 = np.sqrt(np.diag(bread @ meat_hc3 @ bread))
    G = len(np.unique(groups))
    assert G == PUB_LABS
    meat = np.zeros((k, k))
    for g in np.unique(groups):
        s = Xm[groups == g].T @ e[groups == g]
        meat += np.outer(s, s)
    c = G / (G - 1) * (n - 1) / (n - k)
    se_cluster = np.sqrt(np.diag(c * bread @ meat @ bread))
    assert coef["se_classical"].to_numpy() == pytest.approx(se_classical, rel=1e-8)
    assert coef["se_hc3"].to_numpy() == pytest.approx(se_hc3, rel=1e-8)
    assert coef["se_cluster"].to_numpy() == pytest.approx(se_cluster, rel=1e-8)
    # the check has teeth: one cluster per model (wrong groups) gives a different SE
    meat1 = (Xm * e[:, None] ** 2).T @ Xm
    se_by_model = np.sqrt(np.diag(n / (n - 1) * (n - 1) / (n - k) * bread @ meat1 @ bread))
    assert abs(coef.loc["slope", "se_cluster"] - se_by_model[1]) > 1e-3
    # few clusters are called out
    assert any("10 labs" in s for s in res.notes)


def test_bootstrap_columns_are_consistent():
    res = _fit(False)
    coef = res.coefficients.set_index("term")
    assert (coef.loc["slope", "boot_model_low"], coef.loc["slope", "boot_model_high"]) == pytest.approx(res.slope.ci)
    assert (coef.loc["intercept", "boot_model_low"], coef.loc["intercept", "boot_model_high"]) == \
        pytest.approx(res.intercept.ci)
    for term in ("slope", "intercept"):
        assert coef.loc[term, "boot_lab_low"] < coef.loc[term, "estimate"] < coef.loc[term, "boot_lab_high"]


# ====================================================================== 2. the line and intervals
def test_line_prediction_interval_by_hand_and_statsmodels():
    f = fit_xy()
    x, y = f[X].to_numpy(float), f[Y].to_numpy(float)
    line = fr.Line.fit(x, y)
    n = x.size
    slope, intercept = hand_ols(x, y)
    e = y - (slope * x + intercept)
    s = math.sqrt((e @ e) / (n - 2))
    sxx = ((x - x.mean()) ** 2).sum()
    assert line.n == n and line.s == pytest.approx(s, rel=1e-10) and line.sxx == pytest.approx(sxx, rel=1e-10)
    x0 = np.array([16.8, 50.0, 80.8, 87.6, 95.0])
    t = sps.t.ppf(0.975, n - 2)
    half = t * s * np.sqrt(1 + 1 / n + (x0 - x.mean()) ** 2 / sxx)
    pred = slope * x0 + intercept
    lo, hi = line.prediction_interval(x0)
    assert lo == pytest.approx(pred - half, abs=1e-8)
    assert hi == pytest.approx(pred + half, abs=1e-8)
    sf = sm.OLS(y, sm.add_constant(x)).fit().get_prediction(sm.add_constant(x0)).summary_frame(alpha=0.05)
    assert lo == pytest.approx(sf["obs_ci_lower"].to_numpy(), abs=1e-8)
    assert hi == pytest.approx(sf["obs_ci_upper"].to_numpy(), abs=1e-8)
    # a 90% interval is narrower
    lo90, hi90 = line.prediction_interval(x0, level=0.90)
    assert np.all(hi90 - lo90 < hi - lo)
    # the preprint's interval: 1.96 x sqrt(SSR / n), no leverage
    plo, phi = line.paper_interval(x0)
    paper_half = sps.norm.ppf(0.975) * math.sqrt((e @ e) / n)
    assert paper_half == pytest.approx(PAPER_HALFWIDTH, abs=0.01)
    assert (phi - plo) / 2 == pytest.approx(np.full(x0.size, paper_half), abs=1e-8)
    assert _fit(False).paper_halfwidth == pytest.approx(paper_half, abs=1e-8)
    assert _fit(False).residual_se == pytest.approx(s, rel=1e-10)


def test_line_from_sums_and_degenerate_input():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    y = np.array([2.0, 3.5, 4.0, 9.0])
    line = fr.Line.fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert line.slope == pytest.approx(slope) and line.intercept == pytest.approx(intercept)
    assert line.leverage(x).sum() == pytest.approx(2.0)      # trace of the hat matrix = k
    assert line.residual(x, y) == pytest.approx(y - (slope * x + intercept))
    flat = fr.Line.fit([3.0, 3.0, 3.0], [1.0, 2.0, 3.0])
    assert math.isnan(flat.slope) and math.isnan(flat.r)


def test_new_releases_inside_prediction_interval():
    res = _fit(False)
    nr = res.new_releases
    assert set(nr["model"]) == POST_CUTOFF
    assert nr["inside"].all() and nr["inside_paper"].all()
    line = res.line
    lo, hi = line.prediction_interval(nr["x"])
    assert nr["pi_low"].to_numpy() == pytest.approx(np.asarray(lo))
    assert nr["h"].to_numpy() == pytest.approx(nr["y"].to_numpy() - (line.slope * nr["x"].to_numpy() + line.intercept))
    # one release far below the line falls outside
    df = panel()
    df.loc["Claude Opus 4.7", Y] = 50.0
    bad = fr.population_fit(df, n_bootstrap=200, n_permutations=99, seed=0).new_releases.set_index("model")
    assert not bad.loc["Claude Opus 4.7", "inside"] and bad["inside"].sum() == 4


# ====================================================================== 3. h-field
def test_hfield_residuals_and_leave_one_out():
    res = fr.hfield(panel())
    t = res.table.set_index("model")
    line = res.line
    assert line.slope == pytest.approx(PUB_SLOPE, abs=5e-4)
    assert t["h"].to_numpy() == pytest.approx(t["y"].to_numpy() - (line.slope * t["x"].to_numpy() + line.intercept))
    f = fit_xy()
    for m in ("DeepSeek-V2.5", "Claude 3.5 Haiku", "GPT-4o", "o1", "Gemini 3.1 Pro", "Grok 4"):
        rest = f.drop(index=m)
        s, i = hand_ols(rest[X], rest[Y])
        expected = f.loc[m, Y] - (s * f.loc[m, X] + i)
        assert t.loc[m, "h_loo"] == pytest.approx(expected, abs=1e-8), m
        assert abs(t.loc[m, "h_loo"]) >= abs(t.loc[m, "h"])
    # post-cutoff models are not in the fit: their h is already out of sample
    post = t[~t["in_fit"]]
    assert set(post.index) == POST_CUTOFF
    assert post["h_loo"].to_numpy() == pytest.approx(post["h"].to_numpy())
    assert post["leverage"].isna().all()
    assert t["in_fit"].sum() == PUB_N
    strict_json(res)


def test_hfield_bands():
    res = fr.hfield(panel())
    t = res.table.set_index("model")
    assert t.loc["DeepSeek-V2.5", "h"] == pytest.approx(DEEPSEEK_H_FIRST, abs=0.05)
    assert t.loc["DeepSeek-V2.5", "band"] == "reasoning-specialist"
    assert t.loc["Claude 3.5 Haiku", "band"] == "coding excursion"
    assert t.loc["GPT-5", "band"] == "cooperative"
    expected = np.where(t["h"] > 10, "reasoning-specialist", np.where(t["h"] < -10, "coding excursion", "cooperative"))
    assert list(t["band"]) == list(expected)
    assert res.band_counts == {k: int((t["band"] == k).sum())
                               for k in ("reasoning-specialist", "cooperative", "coding excursion")}
    assert sum(res.band_counts.values()) == len(t)
    # the table is sorted by h, highest first
    assert list(res.table["h"]) == sorted(res.table["h"], reverse=True)
    # a wider band moves DeepSeek-V2.5 back to cooperative
    wide = fr.hfield(panel(), band=12.0).table.set_index("model")
    assert wide.loc["DeepSeek-V2.5", "band"] == "cooperative"


def test_band_label_edges():
    labels = fr.band_label([10.0, -10.0, 10.01, -10.01, 0.0, float("nan")])
    assert list(labels) == ["cooperative", "cooperative", "reasoning-specialist", "coding excursion",
                            "cooperative", "n/a"]
    assert list(fr.band_label([5.5], band=5.0)) == ["reasoning-specialist"]


def test_hfield_compute_tiers_and_flag_notes():
    res = fr.hfield(panel())
    assert len(res.tiers) == 1
    tier = res.tiers.iloc[0]
    assert tier["lab"] == "OpenAI"
    assert set(tier["models"].split(", ")) == {"GPT-5.4 std", "GPT-5.4 xhigh"}
    assert tier["h_spread"] == pytest.approx(TIER_SPREAD, abs=1e-9)
    t = res.table.set_index("model")
    assert tier["h_spread"] == pytest.approx(abs(t.loc["GPT-5.4 xhigh", "h"] - t.loc["GPT-5.4 std", "h"]))
    notes = " | ".join(res.notes)
    assert "GLM-5" in notes and "identical" in notes
    assert "Grok 4" in notes and "swe_equals_other_model" in notes


# ====================================================================== 4. labs
def test_within_lab_slopes():
    res = _labs(False)
    t = res.table.set_index("lab")
    for lab, (slope, n) in LAB_SLOPES.items():
        assert t.loc[lab, "n"] == n, lab
        assert t.loc[lab, "slope"] == pytest.approx(slope, abs=1e-3), lab
        g = fit_xy()[lambda d: d["family"] == lab]
        assert t.loc[lab, "slope"] == pytest.approx(hand_ols(g[X], g[Y])[0], abs=1e-10), lab
        assert t.loc[lab, "r"] == pytest.approx(np.corrcoef(g[X], g[Y])[0, 1], abs=1e-10), lab
    assert len(t) == PUB_LABS and t["n"].sum() == PUB_N
    # the slope ratio is Google / DeepSeek
    assert res.slope_ratio.value == pytest.approx(t.loc["Google", "slope"] / t.loc["DeepSeek", "slope"])
    assert res.slope_ratio.n == 4
    # mean h per lab is the mean of the h-field over its fitted models
    h = fr.hfield(panel()).table
    h = h[h["in_fit"]].groupby("lab")["h"].mean()
    assert t["mean_h"].sort_index().to_numpy() == pytest.approx(h.sort_index().to_numpy())
    strict_json(res)


def test_corrected_deepseek_slope():
    t = _labs(True).table.set_index("lab")
    assert t.loc["DeepSeek", "slope"] == pytest.approx(COR_DEEPSEEK_SLOPE, abs=5e-3)
    # the other labs are untouched by the DeepSeek corrections
    for lab in ("Google", "Anthropic", "OpenAI"):
        assert t.loc[lab, "slope"] == pytest.approx(LAB_SLOPES[lab][0], abs=1e-3)


def test_leave_one_lab_out():
    res = _labs(False)
    assert res.lolo_mae.value == pytest.approx(LOLO_MAE, abs=0.05)
    lolo = res.lolo.set_index("lab")
    assert set(lolo.index) == {"OpenAI", "Anthropic", "Google", "DeepSeek"}   # labs with >= 3
    assert res.lolo_mae.value == pytest.approx(lolo["mae"].mean(), abs=1e-12)
    assert res.lolo_mae.n == 4
    f = fit_xy()
    errs = []
    for lab, row in lolo.iterrows():
        rest, held = f[f["family"] != lab], f[f["family"] == lab]
        s, i = hand_ols(rest[X], rest[Y])
        assert row["slope_without"] == pytest.approx(s, abs=1e-9), lab
        assert row["intercept_without"] == pytest.approx(i, abs=1e-7), lab
        assert row["n_fit"] == len(rest) and row["n"] == len(held)
        err = held[Y] - (s * held[X] + i)
        assert row["mae"] == pytest.approx(np.abs(err).mean(), abs=1e-8), lab
        assert row["bias"] == pytest.approx(err.mean(), abs=1e-8), lab
        errs.append(np.abs(err.to_numpy()))
    assert res.lolo_mae_pooled.value == pytest.approx(np.concatenate(errs).mean(), abs=1e-8)
    assert res.lolo_mae_pooled.n == 27


def test_labs_one_model_lab_has_undefined_slope():
    frame = hand_frame([("a1", "A", 20, 40), ("a2", "A", 40, 52), ("a3", "A", 60, 61),
                        ("b1", "B", 30, 50), ("b2", "B", 50, 55), ("b3", "B", 70, 70),
                        ("solo", "S", 55, 80)])
    res = fr.labs(frame, n_resamples=200, seed=0)
    t = res.table.set_index("lab")
    assert t.loc["S", "n"] == 1
    assert math.isnan(t.loc["S", "slope"]) and math.isnan(t.loc["S", "r"])
    assert "undefined" in t.loc["S", "note"] and "slope" in t.loc["S", "note"]
    assert t.loc["A", "slope"] == pytest.approx(np.polyfit([20, 40, 60], [40, 52, 61], 1)[0])
    assert any("S" in n and "one model" in n for n in res.notes)
    assert "S" not in set(res.lolo["lab"])            # < 3 models: no leave-one-lab-out
    strict_json(res)


# ====================================================================== 5. dynamics
def test_dynamics_deepseek_order_and_h():
    res = fr.lab_dynamics(panel())
    ds = res.table[res.table["lab"] == "DeepSeek"].reset_index(drop=True)
    assert list(ds["model"]) == DEEPSEEK_ORDER + ["DeepSeek V4 Pro"]
    assert list(ds["in_fit"]) == [True, True, True, True, False]
    assert ds.loc[0, "h"] == pytest.approx(DEEPSEEK_H_FIRST, abs=0.05)
    assert ds.loc[3, "h"] == pytest.approx(DEEPSEEK_H_LAST, abs=0.05)
    assert round(ds.loc[3, "h"], 1) == -4.7
    summ = res.labs.set_index("lab").loc["DeepSeek"]
    assert summ["first"] == "DeepSeek-V2.5" and summ["last"] == "DeepSeek V3.2"
    assert summ["n"] == 4 and summ["n_new"] == 1
    assert summ["swing"] == pytest.approx(ds.loc[3, "h"] - ds.loc[0, "h"])
    # h is the population-line residual
    line = res.line
    assert ds["h"].to_numpy() == pytest.approx(ds["y"].to_numpy() - (line.slope * ds["x"].to_numpy()
                                                                      + line.intercept))
    strict_json(res)


def test_dynamics_differences_gamma_and_jumps():
    res = fr.lab_dynamics(panel())
    for lab, g in res.table.groupby("lab"):
        g = g.sort_values("step")
        assert list(g["step"]) == list(range(len(g)))
        assert math.isnan(g["dh"].iloc[0]) and math.isnan(g["gamma"].iloc[0])
        assert g["dh"].iloc[1:].to_numpy() == pytest.approx(np.diff(g["h"].to_numpy()), abs=1e-9), lab
        assert g["dx"].iloc[1:].to_numpy() == pytest.approx(np.diff(g["x"].to_numpy()), abs=1e-9), lab
        assert g["dy"].iloc[1:].to_numpy() == pytest.approx(np.diff(g["y"].to_numpy()), abs=1e-9), lab
        rest = g.iloc[1:]
        defined = rest["dx"].abs() >= fr.DEFAULT_DYNAMICS_GUARD
        assert rest.loc[defined, "gamma"].to_numpy() == pytest.approx(
            (rest.loc[defined, "dy"] / rest.loc[defined, "dx"]).to_numpy()), lab
        assert rest.loc[~defined, "gamma"].isna().all()
        assert (rest.loc[~defined, "gamma_note"].str.contains("gamma undefined")).all()
        assert list(rest["jump"]) == list(rest["dh"].abs() > fr.JUMP), lab
    t = res.table.set_index("model")
    # GPT-5.4 xhigh comes after std with the same SWE score: gamma undefined
    assert t.loc["GPT-5.4 xhigh", "dx"] == 0 and math.isnan(t.loc["GPT-5.4 xhigh", "gamma"])
    assert "gamma undefined" in t.loc["GPT-5.4 xhigh", "gamma_note"]
    assert t.loc["GPT-5.4 xhigh", "dh"] == pytest.approx(TIER_SPREAD)
    # there are jumps in the panel (e.g. Claude 3.5 Haiku after 3.5 Sonnet)
    assert t.loc["Claude 3.5 Haiku", "jump"] and abs(t.loc["Claude 3.5 Haiku", "dh"]) > 10
    assert res.table["jump"].sum() == res.labs["jumps"].sum() > 0
    # overlapping dates of mixed precision get an order note; disjoint ones do not
    assert "overlap" in t.loc["Claude Opus 4.5", "order_note"]          # 2025 after 2025
    assert "overlap" in t.loc["GPT-5", "order_note"]                    # 2025-08 next to 2025
    assert t.loc["DeepSeek-V3", "order_note"] == ""                     # 2024-12 after 2024-09


def test_dynamics_guard_and_jump_parameters():
    res = fr.lab_dynamics(panel(), lab="Anthropic", guard=30.0, jump=100.0)
    assert set(res.table["lab"]) == {"Anthropic"}
    assert res.table["gamma"].isna().all()                               # no |dx| >= 30
    assert not res.table["jump"].any()
    both = fr.lab_dynamics(panel(), lab=["DeepSeek", "xAI"])
    assert list(both.labs["lab"]) == ["DeepSeek", "xAI"]


def test_dynamics_corrected_deepseek_swing_small():
    pub = fr.lab_dynamics(panel()).labs.set_index("lab")
    cor = fr.lab_dynamics(panel(True)).labs.set_index("lab")
    assert pub.loc["DeepSeek", "swing"] == pytest.approx(DEEPSEEK_H_LAST - DEEPSEEK_H_FIRST, abs=0.1)
    assert abs(cor.loc["DeepSeek", "swing"]) < 1


def test_dynamics_undated_model_excluded():
    frame = hand_frame([("a1", "A", 20, 40), ("a2", "A", 40, 52), ("a3", "A", 60, 61),
                        ("b1", "B", 30, 50), ("b2", "B", 50, 55)],
                       dates=["2024-01", "2024-06", None, "2025", "2025-09"])
    res = fr.lab_dynamics(frame)
    assert {"model": "a3", "reason": "no release date"} in res.excluded
    assert "a3" not in set(res.table["model"])
    assert list(res.table["model"]) == ["a1", "a2", "b1", "b2"]
    b2 = res.table.set_index("model").loc["b2"]
    assert "overlap" in b2["order_note"]                                 # 2025 vs 2025-09


def test_dynamics_accepts_timestamp_release_dates():
    frame = hand_frame([("a1", "A", 20, 40), ("a2", "A", 40, 52), ("a3", "A", 60, 61)],
                       dates=pd.to_datetime(["2024-01-15", "2024-06-01", "2025-02-01"]))
    res = fr.lab_dynamics(frame)
    assert res.excluded == []
    assert list(res.table["model"]) == ["a1", "a2", "a3"]


def test_unknown_lab_in_dynamics_lists_labs():
    with pytest.raises(CapeError) as exc:
        fr.lab_dynamics(panel(), lab="Nope")
    msg = str(exc.value)
    assert "Nope" in msg and "Anthropic" in msg and "DeepSeek" in msg and "xAI" in msg


# ====================================================================== 6. a new release
def test_new_release_consistent_with_line():
    res = fr.new_release(panel(), 80.8, 91.3)
    line = res.line
    assert line.slope == pytest.approx(PUB_SLOPE, abs=5e-4)
    pred = line.slope * 80.8 + line.intercept
    assert res.predicted == pytest.approx(pred, abs=1e-10)
    assert res.h == pytest.approx(91.3 - pred, abs=1e-10)
    assert res.band == fr.band_label(res.h).item() == "cooperative"
    lo, hi = line.prediction_interval(80.8)
    assert res.pi == pytest.approx((float(lo), float(hi)))
    # and by hand: t(n-2) s sqrt(1 + 1/n + (x0 - xbar)^2 / Sxx)
    f = fit_xy()
    x, y = f[X].to_numpy(float), f[Y].to_numpy(float)
    s, i = hand_ols(x, y)
    n = x.size
    sd = math.sqrt(((y - s * x - i) ** 2).sum() / (n - 2))
    half = sps.t.ppf(0.975, n - 2) * sd * math.sqrt(1 + 1 / n + (80.8 - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    assert res.pi == pytest.approx((s * 80.8 + i - half, s * 80.8 + i + half), abs=1e-8)
    assert res.inside is True and res.pi[0] < 91.3 < res.pi[1]
    assert res.paper_pi[1] - res.paper_pi[0] == pytest.approx(2 * _fit(False).paper_halfwidth)
    assert res.leverage == pytest.approx(float(line.leverage(80.8)))
    assert res.extrapolation is False
    # the same scores as Claude Opus 4.6: h equals its h-field value
    h = fr.hfield(panel()).table.set_index("model")
    assert res.h == pytest.approx(h.loc["Claude Opus 4.6", "h"])
    # nearest labs sorted by distance of mean h
    assert list(res.nearest_labs["distance"]) == sorted(res.nearest_labs["distance"])
    strict_json(res)


def test_new_release_lab_context():
    res = fr.new_release(panel(), 80.8, 91.3, lab="Anthropic", date="2026-06")
    ctx = res.lab_context
    assert ctx["lab"] == "Anthropic" and ctx["n"] == 8        # fitted models only
    assert ctx["n_outside_fit"] == 1                          # Claude Opus 4.7 (post-cutoff)
    lab_row = fr.labs(panel(), n_resamples=200, seed=0).table.set_index("lab").loc["Anthropic"]
    assert ctx["mean_h"] == pytest.approx(lab_row["mean_h"])  # same basis as labs()
    prev = ctx["previous"]
    assert prev["model"] == "Claude Opus 4.7"
    h = fr.hfield(panel()).table.set_index("model")
    assert prev["h"] == pytest.approx(h.loc["Claude Opus 4.7", "h"])
    assert prev["dh"] == pytest.approx(res.h - prev["h"])
    assert prev["gamma"] == pytest.approx((91.3 - 94.2) / (80.8 - 87.6))
    assert "Claude Opus 4.7" in res.explanation
    # an earlier date: Opus 4.7 (2026-04-16) is not before 2026-04, so the previous is an earlier one
    earlier = fr.new_release(panel(), 80.8, 91.3, lab="Anthropic", date="2026-04").lab_context["previous"]
    assert earlier["model"] in {"Claude Opus 4.6", "Claude Sonnet 4.6"}
    # before every release of the lab
    first = fr.new_release(panel(), 30, 50, lab="DeepSeek", date="2024-01")
    assert first.lab_context["previous"] is None
    # unknown lab: a note, not a crash
    none = fr.new_release(panel(), 80, 90, lab="Nope")
    assert none.lab_context["n"] == 0 and "Anthropic" in none.lab_context["note"]


def test_new_release_extrapolation_and_bad_scores():
    f = fit_xy()
    assert fr.new_release(panel(), 95.0, 95.0).extrapolation is True
    assert fr.new_release(panel(), float(f[X].min()) - 1, 60.0).extrapolation is True
    assert fr.new_release(panel(), float(f[X].max()), 90.0).extrapolation is False
    far = fr.new_release(panel(), 95.0, 95.0)
    assert far.leverage > fr.new_release(panel(), 65.0, 80.0).leverage
    for x, y in ((101.0, 50.0), (50.0, -0.5), (float("nan"), 50.0), (50.0, float("inf"))):
        with pytest.raises(CapeError, match=r"\[0, 100\]"):
            fr.new_release(panel(), x, y)


def test_new_release_accepts_numpy_integer_scores():
    res = fr.new_release(panel(), np.int64(80), np.int64(90))
    assert res.h == pytest.approx(fr.new_release(panel(), 80.0, 90.0).h)


# ====================================================================== 7. corrections
def test_compare_corrections_table():
    res = fr.compare_corrections(panel(), panel(True), n_bootstrap=500, seed=0)
    t = res.table.set_index("quantity")
    pub, cor = _fit(False), _fit(True)
    for name in ("r", "slope", "intercept"):
        assert t.loc[name, "published"] == pytest.approx(getattr(pub, name).value, abs=1e-12)
        assert t.loc[name, "corrected"] == pytest.approx(getattr(cor, name).value, abs=1e-12)
        assert t.loc[name, "change"] == pytest.approx(getattr(cor, name).value - getattr(pub, name).value)
    assert t.loc["r", "corrected"] == pytest.approx(COR_R, abs=5e-4)
    assert t.loc["DeepSeek slope", "published"] == pytest.approx(LAB_SLOPES["DeepSeek"][0], abs=1e-3)
    assert t.loc["DeepSeek slope", "corrected"] == pytest.approx(COR_DEEPSEEK_SLOPE, abs=5e-3)
    assert t.loc["leave-one-lab-out MAE", "published"] == pytest.approx(LOLO_MAE, abs=0.05)
    assert abs(t.loc["DeepSeek h first -> last release", "corrected"]) < 1
    assert len(res.corrections) == 2
    strict_json(res)


# ====================================================================== 8. saturation
def test_expected_range_and_binomial_se():
    assert expected_range(1) == 0.0
    assert expected_range(2) == pytest.approx(2 / math.sqrt(math.pi), abs=1e-9)
    assert expected_range(5) == pytest.approx(2.326, abs=5e-4)
    rng = np.random.default_rng(12345)
    z = rng.standard_normal((200_000, 5))
    mc = np.ptp(z, axis=1).mean()
    assert expected_range(5) == pytest.approx(mc, abs=0.01)
    assert binomial_se(80, 500) == pytest.approx(100 * math.sqrt(0.8 * 0.2 / 500), rel=1e-12)
    assert binomial_se(50, 198) == pytest.approx(100 * math.sqrt(0.25 / 198), rel=1e-12)


def test_saturation_published_top5():
    res = saturation(panel(), subset="published", n_resamples=500, seed=0)
    t = res.table.set_index("benchmark")
    assert t.loc[X, "spread"] == pytest.approx(SWE_TOP5_SPREAD, abs=1e-9)
    assert t.loc[Y, "spread"] == pytest.approx(GPQA_TOP5_SPREAD, abs=1e-9)
    assert res.sigma.value == pytest.approx(0.3, abs=1e-9)
    # by hand from the frame
    f = fit_xy()
    for b, want in ((X, SWE_TOP5_SPREAD), (Y, GPQA_TOP5_SPREAD)):
        top = f[b].sort_values(ascending=False).iloc[:5]
        assert top.max() - top.min() == pytest.approx(want, abs=1e-9)
        assert t.loc[b, "top_mean"] == pytest.approx(top.mean())
    # the noise floor is E[range of 5 normals] x binomial SE at the top mean
    assert t.loc[X, "items"] == 500
    se = binomial_se(t.loc[X, "top_mean"], 500)
    assert t.loc[X, "noise_spread"] == pytest.approx(expected_range(5) * se)
    assert t.loc[X, "within_noise"] == bool(SWE_TOP5_SPREAD <= expected_range(5) * se)
    assert res.paper_rotate is False                                     # 0.3 is not < 0.2
    # the default subset ("all") includes the post-cutoff releases
    allm = saturation(panel(), n_resamples=200, seed=0).table.set_index("benchmark")
    top = panel()[X].dropna().sort_values(ascending=False).iloc[:5]
    assert allm.loc[X, "spread"] == pytest.approx(top.max() - top.min())
    strict_json(res)


# ====================================================================== 9. bad input
def test_fewer_than_three_models_is_an_error():
    frame = hand_frame([("a", "A", 10, 30), ("b", "A", 20, 40), ("c", "B", None, 50)])
    for fn in (fr.frontier_data, fr.hfield, fr.lab_dynamics):
        with pytest.raises(CapeError, match="at least 3"):
            fn(frame)
    with pytest.raises(CapeError, match="at least 3"):
        fr.population_fit(frame, n_bootstrap=100, n_permutations=99, seed=0)


def test_same_x_for_every_model_is_an_error():
    frame = hand_frame([("a", "A", 10, 30), ("b", "A", 10, 40), ("c", "B", 10, 50)])
    with pytest.raises(CapeError, match="slope is undefined"):
        fr.frontier_data(frame)


def test_unknown_subset_is_an_error():
    for call in (lambda: fr.frontier_data(panel(), subset="nope"),
                 lambda: fr.hfield(panel(), subset="nope"),
                 lambda: fr.population_fit(panel(), subset="nope", n_bootstrap=100, n_permutations=99),
                 lambda: saturation(panel(), subset="nope", n_resamples=100)):
        with pytest.raises(CapeError, match="unknown subset 'nope'"):
            call()
    meta = pd.DataFrame({"subset": ["core"], "flags": [""]})
    with pytest.raises(CapeError, match="published, core, all"):
        fr.subset_mask(meta, "nope")


def test_subset_mask():
    meta = pd.DataFrame({"subset": ["core", "extended", "post-cutoff", "core", None],
                         "flags": ["", "", "", "post_cutoff", None]})
    assert list(fr.subset_mask(meta, "published")) == [True, True, False, False, True]
    assert list(fr.subset_mask(meta, "core")) == [True, False, False, False, False]
    assert list(fr.subset_mask(meta, "all")) == [True] * 5


def test_frontier_data_model_column_and_exclusions():
    df = panel()
    df.loc["GPT-5", Y] = np.nan
    fd = fr.frontier_data(df)
    assert {"model": "GPT-5", "reason": "no gpqa_diamond score"} in fd.excluded
    assert len(fd.fit) == PUB_N - 1
    # a frame with a "model" column instead of an index gives the same line
    flat = panel().reset_index()
    a, b = fr.frontier_data(flat).line(), fr.frontier_data(panel()).line()
    assert a.slope == pytest.approx(b.slope) and a.n == b.n == PUB_N


# ====================================================================== 10. CLI
def _json_out(proc) -> dict:
    assert proc.returncode == 0, proc.stderr

    def no_constants(c):
        raise AssertionError(f"non-standard JSON constant {c} in the output")
    return json.loads(proc.stdout, parse_constant=no_constants)


def _one_error_line(proc, *needles):
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0]


CLI_CASES = {
    "fit": ["frontier", "fit", "--resamples", "500", "--permutations", "999", "--seed", "0"],
    "hfield": ["frontier", "hfield"],
    "labs": ["frontier", "labs", "--resamples", "500", "--seed", "0"],
    "dynamics": ["frontier", "dynamics"],
    "saturation": ["frontier", "saturation", "--resamples", "500", "--seed", "0"],
    "place": ["hfield", "--swe", "80.8", "--gpqa", "91.3"],
}


def _check_cli_json(name: str, d: dict, corrected: bool) -> None:
    assert d["corrected"] is corrected
    if name == "fit":
        assert d["command"] == "frontier fit" and d["n"] == PUB_N and d["n_labs"] == PUB_LABS
        r, slope = (COR_R, COR_SLOPE) if corrected else (PUB_R, PUB_SLOPE)
        assert d["r"]["value"] == pytest.approx(r, abs=5e-4)
        assert d["slope"]["value"] == pytest.approx(slope, abs=5e-4)
        assert len(d["new_releases"]) == 5 and all(x["inside"] for x in d["new_releases"])
    elif name == "hfield":
        rows = {r["model"]: r for r in d["table"]}
        assert len(rows) == PUB_N + len(POST_CUTOFF)
        v25 = rows["DeepSeek-V2.5"]
        if corrected:
            assert v25["band"] != "reasoning-specialist"
        else:
            assert v25["h"] == pytest.approx(DEEPSEEK_H_FIRST, abs=0.05)
            assert v25["band"] == "reasoning-specialist"
        assert d["tiers"][0]["h_spread"] == pytest.approx(TIER_SPREAD)
    elif name == "labs":
        t = {r["lab"]: r for r in d["table"]}
        assert t["Google"]["slope"] == pytest.approx(LAB_SLOPES["Google"][0], abs=1e-3)
        ds = COR_DEEPSEEK_SLOPE if corrected else LAB_SLOPES["DeepSeek"][0]
        assert t["DeepSeek"]["slope"] == pytest.approx(ds, abs=5e-3)
        if not corrected:
            assert d["lolo_mae"]["value"] == pytest.approx(LOLO_MAE, abs=0.05)
    elif name == "dynamics":
        ds = [r["model"] for r in d["table"] if r["lab"] == "DeepSeek"]
        assert ds[:4] == DEEPSEEK_ORDER
        swing = {r["lab"]: r for r in d["labs"]}["DeepSeek"]["swing"]
        assert (abs(swing) < 1) if corrected else swing == pytest.approx(-15.85, abs=0.05)
    elif name == "saturation":
        t = {r["benchmark"]: r for r in d["table"]}
        assert set(t) >= {X, Y} and d["subset"] == "all"
        assert d["sigma"]["value"] == pytest.approx(t[X]["spread"] / t[Y]["spread"])
    elif name == "place":
        assert d["command"] == "hfield" and d["band"] == "cooperative" and d["inside"] is True
        slope, intercept = d["line"]["slope"], d["line"]["intercept"]
        assert d["h"] == pytest.approx(91.3 - (slope * 80.8 + intercept))
        assert slope == pytest.approx(COR_SLOPE if corrected else PUB_SLOPE, abs=5e-4)


@pytest.mark.slow
@pytest.mark.parametrize("corrected", [False, True], ids=["published", "corrected"])
@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_frontier_commands_json(name, corrected):
    args = CLI_CASES[name] + ["--json"] + (["--corrected"] if corrected else [])
    _check_cli_json(name, _json_out(run_cli(*args)), corrected)


@pytest.mark.slow
def test_cli_frontier_compare_json():
    d = _json_out(run_cli("frontier", "compare", "--json", "--resamples", "500", "--seed", "0"))
    t = {r["quantity"]: r for r in d["table"]}
    assert t["r"]["published"] == pytest.approx(PUB_R, abs=5e-4)
    assert t["r"]["corrected"] == pytest.approx(COR_R, abs=5e-4)
    assert t["slope"]["corrected"] == pytest.approx(COR_SLOPE, abs=5e-4)
    assert len(d["corrections"]) == 2


@pytest.mark.slow
def test_cli_text_output():
    r = run_cli("frontier", "fit", "--resamples", "200", "--permutations", "99", "--seed", "0")
    assert r.returncode == 0, r.stderr
    assert "0.7235" in r.stdout and "Claude Opus 4.7" in r.stdout
    r = run_cli("hfield", "--swe", "80.8", "--gpqa", "91.3", "--lab", "Anthropic", "--date", "2026-06")
    assert r.returncode == 0, r.stderr
    assert "Claude Opus 4.7" in r.stdout and "cooperative" in r.stdout


@pytest.mark.slow
def test_cli_errors_are_one_line():
    _one_error_line(run_cli("hfield", "--swe", "80.8"), "gpqa_diamond")
    _one_error_line(run_cli("frontier", "fit", "--subset", "nope"), "nope")
    _one_error_line(run_cli("hfield", "--swe", "180", "--gpqa", "91.3"), "[0, 100]")
    _one_error_line(run_cli("frontier", "dynamics", "--lab", "Nope"), "Nope", "Anthropic")
