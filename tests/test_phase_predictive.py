"""`cape phase`: predictive phase probabilities (line bootstrap + scatter of interval couplings
by family) beside the line-only ones, what the phase depends on, and the leave-one-family-out
calibration of the predictive interval (CAPE issue 12)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cape.analysis.gamma import BONUS_ABOVE, TAX_BELOW, local_coupling
from cape.analysis.phase import phase_calibration, phase_of_model
from conftest import cached_panel, run_cli

N_RES = 2000


def constructed_panel(gammas_by_family: dict[str, np.ndarray], starts: dict[str, float],
                      step: float = 0.4) -> pd.DataFrame:
    """A panel whose within-family intervals have exactly the couplings given: family f has
    models at log10 N = start + step * j; its first benchmark rises 2 points per step and
    its second by 2 * gamma_j, so interval j has gamma_j at log10 N = start + step * (j + 1/2)."""
    rows = []
    for fam, g in gammas_by_family.items():
        g = np.asarray(g, dtype=float)
        b1 = 30 + 2 * np.arange(len(g) + 1)
        b2 = 50 + np.r_[0, np.cumsum(2 * g)]
        for j in range(len(g) + 1):
            rows.append((f"{fam}-{j}", fam, 10 ** (starts[fam] + step * j), b1[j], b2[j]))
    return pd.DataFrame(rows, columns=["model", "family", "params", "hellaswag", "truthfulqa"]).set_index("model")


def model_panel(n_fam: int, *, A: float = 0.5, B: float = -4.6, tau: float = 0.3, sigma: float = 0.3,
                per_family: int = 4, seed: int = 0, offsets: dict[int, float] | None = None) -> pd.DataFrame:
    """Families drawn from gamma = A log10 N + B + u_family + w_interval (u ~ N(0, tau),
    w ~ N(0, sigma)); ``offsets`` moves whole families off the line."""
    rng = np.random.default_rng(seed)
    gam, starts = {}, {}
    for f in range(n_fam):
        s0 = rng.uniform(8.0, 10.0)
        x = s0 + 0.4 * (np.arange(per_family) + 0.5)
        gam[f"F{f:02d}"] = (A * x + B + rng.normal(0, tau) + rng.normal(0, sigma, per_family)
                            + (offsets or {}).get(f, 0.0))
        starts[f"F{f:02d}"] = s0
    return constructed_panel(gam, starts)


def test_constructed_panel_has_the_couplings_it_was_given():
    frame = constructed_panel({"A": [0.3, -0.2, 1.5]}, {"A": 9.0})
    iv = local_coupling(frame).intervals
    assert iv["gamma"].to_numpy() == pytest.approx([0.3, -0.2, 1.5], abs=1e-9)
    assert iv["x_mid"].to_numpy() == pytest.approx([9.2, 9.6, 10.0], abs=1e-9)


# ------------------------------------------------------------------ paper-base at 7B
def test_paper_base_7b_predictive_is_below_line_only_and_near_observed_share():
    frame = cached_panel("paper-base")
    res = phase_of_model(frame, 7e9, 78, 43, n_resamples=N_RES, seed=0)
    line = res.line_only
    # the paper protocol: the line alone is (over)confident of a bonus at 7B
    assert line["p_bonus"] > 0.9
    # the predictive probabilities are a distribution and differ from the line-only ones
    probs = (res.p_tax, res.p_transition, res.p_bonus)
    assert all(0 <= p <= 1 for p in probs) and sum(probs) == pytest.approx(1, abs=1e-12)
    assert res.p_bonus < line["p_bonus"] - 0.25
    assert res.p_tax > 0.1 > line["p_tax"]
    # observed share of bonus intervals within half a decade of 7B
    iv = local_coupling(frame).intervals
    near = iv[(iv["x_mid"] - math.log10(7e9)).abs() <= 0.5]
    share = float((near["gamma"] > BONUS_ABOVE).mean())
    n = len(near)
    assert n >= 15 and near["family"].nunique() >= 8
    # Tolerance: the observed share is a proportion over n (~19) intervals, so its binomial
    # SE is sqrt(p(1-p)/n) ~ 0.11; two SEs (~0.23) is the tolerance. The predictive draws'
    # Monte Carlo error (~0.01 at 2,000 draws) is negligible beside it. The line-only
    # probability (~0.99) misses the share by ~0.57 and fails this check.
    tol = 2 * math.sqrt(share * (1 - share) / n)
    assert abs(res.p_bonus - share) <= tol
    assert abs(line["p_bonus"] - share) > tol
    # the predictive interval is wider than the line's CI and holds the line's point
    assert res.gamma_predictive.ci[0] < res.gamma.ci[0] and res.gamma_predictive.ci[1] > res.gamma.ci[1]
    lo80, hi80 = res.predictive_intervals["80%"]
    lo95, hi95 = res.predictive_intervals["95%"]
    assert lo95 <= lo80 <= res.gamma.value <= hi80 <= hi95
    assert res.phase_predictive == ("tax", "transition", "bonus")[int(np.argmax(probs))]
    assert "family" in res.predictive_method and "residual" in res.predictive_method
    # calibration on the real panel is reported with its n
    cal = res.calibration
    assert cal.n_intervals == 44 and cal.n_families == 12
    assert set(cal.coverage) == {"80%", "95%"}
    for e in (*cal.coverage.values(), cal.phase_match):
        assert 0 <= e.value <= 1 and e.n == 44 and e.ci[0] <= e.value <= e.ci[1]
    # ... and near this size (the intervals the pooled figure may hide), with its n
    near_cal = res.calibration_near
    assert near_cal["n"] == n and near_cal["n_families"] == near["family"].nunique()
    held = cal.intervals[(cal.intervals["x_mid"] - math.log10(7e9)).abs() <= 0.5]
    assert near_cal["covered_80"] == pytest.approx(held["covered_80"].mean())
    assert f"{n} intervals of {near_cal['n_families']} families" in res.explanation
    json.dumps(res.to_dict(), allow_nan=False)


def test_scores_do_not_move_the_size_based_phase():
    frame = cached_panel("paper-base")
    a = phase_of_model(frame, 7e9, 78, 43, n_resamples=N_RES, seed=1)
    b = phase_of_model(frame, 7e9, 30, 10, n_resamples=N_RES, seed=1)
    assert (a.p_tax, a.p_transition, a.p_bonus) == (b.p_tax, b.p_transition, b.p_bonus)
    assert a.line_only == b.line_only
    assert a.depends_on["size_phase"] == ["params"]
    assert "uses only N" in a.explanation and "enter only the isocline and h(D)" in a.explanation
    assert a.h.value != b.h.value          # the scores do move h(D)


# ------------------------------------------------------------------ constructed panels
def test_no_scatter_predictive_equals_line_only():
    rng = np.random.default_rng(5)
    starts = {f"F{i}": float(s) for i, s in enumerate(rng.uniform(8.0, 10.0, 8))}
    gam = {f: 0.5 * (s + 0.4 * (np.arange(4) + 0.5)) - 4.6 for f, s in starts.items()}
    frame = constructed_panel(gam, starts)
    for params in (10 ** 8.5, 10 ** 9.2, 1e10):            # tax, transition, bonus on the line
        res = phase_of_model(frame, params, 60, 40, n_resamples=N_RES, seed=0)
        line = res.line_only
        assert res.p_tax == pytest.approx(line["p_tax"], abs=0.01)
        assert res.p_transition == pytest.approx(line["p_transition"], abs=0.01)
        assert res.p_bonus == pytest.approx(line["p_bonus"], abs=0.01)
        assert res.phase_predictive == res.phase


def test_large_scatter_predictive_matches_observed_shares():
    # flat line at +0.5 with scatter sd 2: the line is near-certain (bonus), single intervals are not
    rng = np.random.default_rng(11)
    starts = {f"F{i:02d}": float(s) for i, s in enumerate(rng.uniform(8.0, 10.0, 30))}
    gam = {f: 0.5 + rng.normal(0, 2.0, 4) for f in starts}
    frame = constructed_panel(gam, starts)
    g = local_coupling(frame).intervals["gamma"].to_numpy()
    observed = np.array([(g < TAX_BELOW).mean(), ((g >= TAX_BELOW) & (g <= BONUS_ABOVE)).mean(),
                         (g > BONUS_ABOVE).mean()])
    res = phase_of_model(frame, 10 ** 9.4, 60, 40, n_resamples=N_RES, seed=0)
    pred = np.array([res.p_tax, res.p_transition, res.p_bonus])
    line = np.array([res.line_only[k] for k in ("p_tax", "p_transition", "p_bonus")])
    # 120 intervals: the shares' binomial SE is <= 0.046; the predictive adds only the line's
    # small spread to the residual distribution, so 0.07 (1.5 SE) is ample and still tight.
    assert np.abs(pred - observed).max() <= 0.07
    assert np.abs(line - observed).max() > 0.2             # the line alone is far from them


def test_lofo_coverage_is_near_nominal_when_the_model_holds():
    frame = model_panel(40, seed=3)
    cal = phase_calibration(frame, n_resamples=N_RES, seed=0)
    assert cal.n_intervals == 160 and cal.n_families == 40
    # 160 intervals in 40 families (intra-family correlation ~0.5, so ~2.5x design effect):
    # the coverage share's SE is ~0.05 at 80% and ~0.03 at 95%; tolerances are ~2 SE.
    assert cal.coverage["80%"].value == pytest.approx(0.80, abs=0.10)
    assert cal.coverage["95%"].value == pytest.approx(0.95, abs=0.05)
    assert cal.coverage["80%"].ci[0] <= 0.80 <= cal.coverage["80%"].ci[1]
    assert cal.coverage["95%"].ci[0] <= 0.95 <= cal.coverage["95%"].ci[1]
    assert 0 <= cal.phase_match.value <= 1
    assert len(cal.table) == 40 and (cal.table["n"] == 4).all()


def test_lofo_coverage_is_low_for_a_family_far_off_the_line():
    frame = model_panel(20, seed=3, offsets={0: 6.0})
    cal = phase_calibration(frame, n_resamples=N_RES, seed=0)
    off = cal.table.set_index("family").loc["F00"]
    assert off["covered_95"] == 0 and off["covered_80"] == 0 and off["phase_match"] <= 0.5
    rest = cal.table[cal.table["family"] != "F00"]
    assert rest["covered_95"].mean() > 0.9


def test_lofo_coverage_is_low_when_scatter_grows_where_it_is_not_seen():
    # heteroscedastic model: scatter is tiny in 15 families and huge in 5; holding out one of
    # the 5 leaves a pool that is mostly tiny residuals, so its coverage collapses
    frame = model_panel(20, seed=4, tau=0.0, sigma=0.02)
    g = local_coupling(frame).intervals
    rng = np.random.default_rng(0)
    wild = {f"F{i:02d}" for i in range(5)}
    bump = {f: rng.normal(0, 3.0, 4) for f in wild}
    gam = {f: sub["gamma"].to_numpy() + bump.get(f, 0) for f, sub in g.groupby("family")}
    starts = {f: float(sub["x_mid"].iloc[0] - 0.2) for f, sub in g.groupby("family")}
    cal = phase_calibration(constructed_panel(gam, starts), n_resamples=N_RES, seed=0)
    wild_rows = cal.table[cal.table["family"].isin(wild)]
    assert wild_rows["covered_80"].mean() < 0.5
    assert cal.table.loc[~cal.table["family"].isin(wild), "covered_80"].mean() > 0.95


# ------------------------------------------------------------------ CLI, seeds, input checks
def test_cli_names_what_the_phase_depends_on():
    outs = []
    for hs, tq in (("78", "43"), ("30", "10")):
        r = run_cli("phase", "--params", "7e9", "--hellaswag", hs, "--truthfulqa", tq,
                    "--resamples", "1000", "--seed", "0")
        assert r.returncode == 0, r.stderr
        assert "the size-based phase uses only N" in r.stdout
        assert "enter only the isocline and h(D)" in r.stdout
        assert "Line-only P(tax)" in r.stdout and "Predictive phase" in r.stdout
        assert "leave one family out" in r.stdout and "80% interval covers" in r.stdout
        outs.append(r.stdout.splitlines())
    size_lines = [[ln for ln in o if ln.startswith(("- Running", "- Predictive", "- Calibration", "  Near"))]
                  for o in outs]
    assert size_lines[0] == size_lines[1] and len(size_lines[0]) == 4
    iso = [[ln for ln in o if ln.startswith("- Isocline")] for o in outs]
    assert iso[0] != iso[1]
    r = run_cli("phase", "--params", "7e9", "--hellaswag", "78", "--truthfulqa", "43",
                "--resamples", "500", "--seed", "0", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    d = d.get("result", d)
    assert set(d["calibration"]["coverage"]) == {"80%", "95%"}
    assert d["line_only"]["p_bonus"] > d["p_bonus"]
    assert d["depends_on"]["size_phase"] == ["params"]


def test_same_seed_same_result():
    frame = cached_panel("paper-base")
    a = phase_of_model(frame, 3e9, 70, 40, n_resamples=500, seed=7).to_dict()
    b = phase_of_model(frame, 3e9, 70, 40, n_resamples=500, seed=7).to_dict()
    assert a == b
    c = phase_of_model(frame, 3e9, 70, 40, n_resamples=500, seed=8).to_dict()
    assert (a["p_bonus"], a["calibration"]["coverage"]) != (c["p_bonus"], c["calibration"]["coverage"])


def test_calibration_levels_must_be_fractions():
    from cape.errors import CapeError
    with pytest.raises(CapeError, match="levels"):
        phase_calibration(cached_panel("paper-base"), levels=(80, 95), n_resamples=100)
