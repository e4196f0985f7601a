"""Tests of the scaling dynamics (cape.analysis.dynamics) and `cape dynamics fit|predict|crossval`.

The sparse-regression ODE dB/dlog10N = Theta(B) xi is checked against

* data simulated from a known sparse ODE (the true support and coefficients must come back,
  with and without noise, and the bagging intervals must cover the truth);
* pysindy itself (the batched numpy STLSQ must give pysindy's coefficients, weighted or not,
  one threshold or many);
* the preprint's held-out Llama-2 figure (published numbers live here, never in src);
* independent recomputations with numpy/scipy (polynomial baselines, a least-squares linear
  ODE integrated by scipy) and perturbation tests that show no held-out score reaches a fit.

Bad input must give a DynamicsError/CapeError naming what is wrong, and through the real CLI
one ``error:`` line on stderr with exit code 2.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
import pysindy as ps
import pytest
from scipy.integrate import solve_ivp

from cape.analysis import dynamics as dy
from cape.errors import CapeError
from conftest import cached_panel, fresh_panel, run_cli

BENCH = ["hellaswag", "truthfulqa"]

# ---------------------------------------------------------------- published figures (paper-nc)
PAPER_MAPE = 5.65                                   # % (degree-2 polynomial, Llama-2 held out)
PAPER_ERRORS = {"llama-2-7b": -8.5, "llama-2-13b": -2.3, "llama-2-70b": -6.1}   # signed %
PAPER_N_TRAIN = 11                                  # Pythia (8) + Llama-1 (3)

# ---------------------------------------------------------------- a known sparse ODE
# dh/dx = 12 - 0.15 h ;  dq/dx = 0.2 h - 0.004 h^2 - 2   (h = hellaswag, q = truthfulqa)
TRUE_POINTS = {("hellaswag", "1"): 12.0, ("hellaswag", "hellaswag"): -0.15,
               ("truthfulqa", "1"): -2.0, ("truthfulqa", "hellaswag"): 0.2,
               ("truthfulqa", "hellaswag^2"): -0.004}


def _true_rhs(_t, b):
    h, _q = b
    return [12 - 0.15 * h, 0.2 * h - 0.004 * h * h - 2.0]


def simulated_panel(noise: float = 0.0, n: int = 16, seed: int = 0) -> pd.DataFrame:
    """12 families (initial states on a grid) integrated from log10 N = 7 on a jittered grid."""
    rows = []
    rng = np.random.default_rng(seed)
    inits = [(h0, q0) for h0 in (20, 35, 50, 65) for q0 in (30, 45, 60)]
    for fam, (h0, q0) in enumerate(inits):
        x = np.linspace(7, 10, n) + rng.uniform(-0.04, 0.04, n)
        x[0] = 7
        s = solve_ivp(_true_rhs, (7, 10.1), [h0, q0], t_eval=x, rtol=1e-11, atol=1e-11)
        y = s.y + noise * rng.standard_normal(s.y.shape)
        for xi, h, q in zip(x, y[0], y[1]):
            rows.append(dict(model=f"f{fam}-{xi:.4f}", family=f"F{fam}", params=10 ** xi, hellaswag=h,
                             truthfulqa=q))
    return pd.DataFrame(rows).set_index("model")


def true_fitted(df: pd.DataFrame) -> dict:
    """The true coefficients in z-units of ``df`` (standard scaling, sd with ddof=1), by hand:
    dz_i/dx = f_i(c + s z) / s_i expanded in z_h."""
    ch, sh = df["hellaswag"].mean(), df["hellaswag"].std(ddof=1)
    sq = df["truthfulqa"].std(ddof=1)
    return {("hellaswag", "1"): (12 - 0.15 * ch) / sh, ("hellaswag", "hellaswag"): -0.15,
            ("truthfulqa", "1"): (0.2 * ch - 0.004 * ch * ch - 2) / sq,
            ("truthfulqa", "hellaswag"): (0.2 * sh - 0.008 * ch * sh) / sq,
            ("truthfulqa", "hellaswag^2"): -0.004 * sh * sh / sq}


@lru_cache(maxsize=None)
def simulated_fit(noise: float, scale: str, threshold: float):
    df = simulated_panel(noise)
    res = dy.fit_dynamics(df, pool=True, scale=scale, threshold=threshold, n_ensemble=200, sweep=False, seed=0)
    return df, res


def coef_table(report) -> pd.DataFrame:
    return report.coefficients.set_index(["equation", "term"])


# ---------------------------------------------------------------- helpers
@lru_cache(maxsize=None)
def nc_crossval():
    return dy.crossval(cached_panel("paper-nc"), n_bootstrap=200, seed=0)


@lru_cache(maxsize=None)
def nc_paper():
    return dy.paper_protocol(cached_panel("paper-nc"))


def fold_predictions(cv, scheme: str, fold: str) -> pd.DataFrame:
    p = cv.predictions
    p = p[(p["scheme"] == scheme) & (p["fold"] == fold)]
    return p.sort_values(["method", "model", "benchmark"]).reset_index(drop=True)


def method_preds(cv, scheme: str, fold: str, method: str) -> pd.DataFrame:
    p = fold_predictions(cv, scheme, fold)
    return p[p["method"] == method].pivot(index="model", columns="benchmark", values="predicted")


def x_of(df: pd.DataFrame, models) -> np.ndarray:
    return np.log10(df.loc[list(models), "params"].to_numpy(float))


def hand_linear_ode(train: pd.DataFrame, x0: float, b0, xs) -> np.ndarray:
    """A linear ODE dB/dx = c + A B fitted by ordinary least squares (numpy) to finite
    differences of each training family, integrated by scipy from (x0, b0); points units."""
    X, Y = [], []
    for _, g in train.groupby("family"):
        g = g.sort_values("params")
        x = np.log10(g["params"].to_numpy(float))
        B = g[BENCH].to_numpy(float)
        X.append(np.column_stack([np.ones(len(x)), B]))
        Y.append(np.gradient(B, x, axis=0, edge_order=1))
    coef, *_ = np.linalg.lstsq(np.vstack(X), np.vstack(Y), rcond=None)
    c, A = coef[0], coef[1:].T
    xs = np.asarray(xs, float)
    sol = solve_ivp(lambda _t, b: c + A @ b, (x0, xs.max()), np.asarray(b0, float), t_eval=xs,
                    method="DOP853", rtol=1e-11, atol=1e-11)
    return sol.y.T


def poly_eval(coef_points: np.ndarray, powers: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Right-hand side in points from the expanded coefficients, term by term (no module code)."""
    out = np.zeros((len(b), coef_points.shape[0]))
    for j, pw in enumerate(powers):
        term = np.ones(len(b))
        for i, e in enumerate(pw):
            term = term * b[:, i] ** int(e)
        out += term[:, None] * coef_points[:, j][None, :]
    return out


def error_line(proc) -> str:
    """The one ``error:`` line of a failed command, after checking its shape."""
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2, detail
    assert "Traceback" not in proc.stderr, detail
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, detail
    assert lines[0].startswith("error: "), detail
    assert "run with --debug" not in lines[0], detail   # the catch-all for unexpected exceptions
    return lines[0]


def strict_json(text: str):
    def bad(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=bad)


# ====================================================================== 1. recovery of a known ODE
def test_recovery_noise_free_standard_scale():
    df, res = simulated_fit(0.0, "standard", 0.05)
    assert len(res.fits) == 1 and res.pooled
    fit = res.fits[0]
    assert fit.n_points == 12 * 16 and fit.n_terms == 6
    c = coef_table(fit)
    assert len(c) == 12
    # exactly the true support, in fitted units and in points
    assert set(c.index[c["active"]]) == set(TRUE_POINTS)
    assert fit.n_active == {"hellaswag": 2, "truthfulqa": 3}
    for key, row in c.iterrows():
        if key in TRUE_POINTS:
            assert row["coef_points"] == pytest.approx(TRUE_POINTS[key], rel=1e-2), key
            assert row["inclusion"] >= 0.99, key
        else:
            assert row["coef"] == 0 and row["coef_points"] == 0, key
            assert row["inclusion"] <= 0.01, key
    # fitted units are z-scores of the training data: compare with the truth converted by hand
    truth = true_fitted(df)
    for key, value in truth.items():
        assert c.loc[key, "coef"] == pytest.approx(value, rel=2e-2, abs=1e-3), key
    # the recovered ODE integrates back onto the data from each family's smallest model
    assert fit.trajectory_mae < 0.05


def test_recovery_with_noise_intervals_cover_truth():
    df, res = simulated_fit(0.1, "standard", 0.05)
    fit = res.fits[0]
    c = coef_table(fit)
    assert set(c.index[c["active"]]) == set(TRUE_POINTS)
    truth = true_fitted(df)
    for key, row in c.iterrows():
        true = truth.get(key, 0.0)
        assert row["low"] <= true <= row["high"], (key, row["low"], true, row["high"])
        assert row["low"] <= row["median"] <= row["high"], key
        if key in TRUE_POINTS:
            assert row["coef_points"] == pytest.approx(TRUE_POINTS[key], rel=5e-2), key
            assert row["inclusion"] >= 0.95, key
            assert row["high"] > row["low"], key        # noise gives the bagging some spread
        else:
            assert row["inclusion"] <= 0.05, key
    assert fit.ensemble["n_models"] == 200


def test_recovery_points_scale_exact():
    _, res = simulated_fit(0.0, "points", 0.002)
    fit = res.fits[0]
    c = coef_table(fit)
    assert set(c.index[c["active"]]) == set(TRUE_POINTS)
    for key, value in TRUE_POINTS.items():
        assert c.loc[key, "coef"] == pytest.approx(value, rel=1e-2), key
    # in points the fitted and the expanded coefficients are the same numbers
    np.testing.assert_array_equal(c["coef"].to_numpy(), c["coef_points"].to_numpy())
    assert fit.units == "scores in points"


def test_bagging_seed_reproducible():
    df = simulated_panel(0.1)
    a = dy.fit_dynamics(df, pool=True, threshold=0.05, n_ensemble=100, sweep=False, seed=3).fits[0].coefficients
    b = dy.fit_dynamics(df, pool=True, threshold=0.05, n_ensemble=100, sweep=False, seed=3).fits[0].coefficients
    c = dy.fit_dynamics(df, pool=True, threshold=0.05, n_ensemble=100, sweep=False, seed=4).fits[0].coefficients
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["low"], c["low"])


def test_points_expansion_matches_rate_and_library_order():
    """coef_points is an exact rewriting of the fitted right-hand side, and the term order is
    pysindy's."""
    data = dy.dynamics_data(cached_panel("paper-nc"))
    ode = dy.fit_ode(data)
    assert [t.replace("*", " ") for t in ode.terms] == list(ode.sindy.get_feature_names())
    lib = ps.PolynomialLibrary(degree=2, include_bias=True)
    z = ode.scale.to_z(data.values())
    np.testing.assert_allclose(dy.theta(z, ode.powers), lib.fit_transform(z), rtol=1e-12, atol=1e-12)
    b = np.random.default_rng(5).uniform(20, 90, size=(40, 2))
    pts = ode._points_coef()
    np.testing.assert_allclose(poly_eval(pts, ode.powers, b), ode.rate(b), rtol=1e-8, atol=1e-8)
    # by hand: the rate in points is sd * Theta(z) coef
    zb = (b - data.values().mean(axis=0)) / data.values().std(axis=0, ddof=1)
    np.testing.assert_allclose(ode.rate(b), lib.fit_transform(zb) @ ode.coef.T * data.values().std(axis=0, ddof=1),
                               rtol=1e-10, atol=1e-10)


# ====================================================================== 2. batched STLSQ = pysindy
def _problem(frame, **kw):
    data = dy.dynamics_data(frame, **kw)
    ode = dy.fit_ode(data)
    z = ode.scale.to_z(data.values())
    return data, ode, dy.theta(z, ode.powers), dy.finite_differences(data) / ode.scale.sd


def _pysindy(th, y, threshold, w=None, alpha=dy.DEFAULT_ALPHA):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = ps.STLSQ(threshold=threshold, alpha=alpha)
        opt.fit(th, y, sample_weight=w)
    return np.asarray(opt.coef_)


@pytest.mark.parametrize("case", ["paper-nc", "simulated"])
def test_stlsq_unit_weights_equals_pysindy_fit(case):
    frame = cached_panel("paper-nc") if case == "paper-nc" else simulated_panel(0.1)
    data = dy.dynamics_data(frame)
    for threshold in (0.05, 0.1, 0.3):
        ode = dy.fit_ode(data, threshold=threshold)                      # through pysindy.SINDy
        z = ode.scale.to_z(data.values())
        coef, conv = dy.stlsq(dy.theta(z, ode.powers), dy.finite_differences(data) / ode.scale.sd,
                              thresholds=threshold)
        assert coef.shape == (1, 2, 6) and conv.all()
        np.testing.assert_allclose(coef[0], ode.coef, rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(coef[0] != 0, ode.coef != 0)
        # the numpy path of fit_ode is the same
        np.testing.assert_allclose(dy.fit_ode(data, threshold=threshold, use_pysindy=False).coef, ode.coef,
                                   rtol=1e-8, atol=1e-10)


def test_stlsq_count_weights_equal_pysindy_sample_weight():
    data, _, th, y = _problem(cached_panel("paper-nc"))
    rng = np.random.default_rng(11)
    W = rng.multinomial(data.n, np.full(data.n, 1 / data.n), size=40).astype(float)
    coef, _ = dy.stlsq(th, y, W, 0.1)
    assert coef.shape == (40, 2, 6)
    supports = set()
    for w, c in zip(W, coef):
        np.testing.assert_allclose(c, _pysindy(th, y, 0.1, w), rtol=1e-6, atol=1e-6)
        supports.add(tuple((c != 0).ravel()))
    assert len(supports) > 1          # the resamples really differ
    # a resample is not the unweighted problem
    assert not np.allclose(coef[0], dy.stlsq(th, y, thresholds=0.1)[0][0])


def test_stlsq_threshold_batch_equals_one_at_a_time():
    _, _, th, y = _problem(cached_panel("paper-nc"))
    ths = np.r_[0.0, np.geomspace(0.01, 3.0, 20)]
    batch, conv = dy.stlsq(th, y, np.ones((len(ths), len(th))), ths)
    assert conv.all()
    counts = []
    for t, c in zip(ths, batch):
        np.testing.assert_allclose(c, dy.stlsq(th, y, thresholds=t)[0][0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c, _pysindy(th, y, t), rtol=1e-8, atol=1e-10)
        counts.append(int((c != 0).sum()))
    assert counts[0] == 12 and counts[-1] == 0 and len(set(counts)) > 3


# ====================================================================== 3. the preprint's protocol
def test_paper_protocol_published_figures():
    pp = nc_paper()
    assert pp.paper_mape == pytest.approx(PAPER_MAPE, abs=0.05)
    assert pp.n_train == PAPER_N_TRAIN
    assert pp.train == ["Pythia", "Llama-1"] and pp.test == "Llama-2" and pp.benchmark == "truthfulqa"
    assert pp.models == list(PAPER_ERRORS)
    row = pp.table.iloc[0]
    assert row["method"].startswith("paper: polynomial 2")
    for m, e in PAPER_ERRORS.items():
        assert row[f"error_%_{m}"] == pytest.approx(e, abs=0.05), m
    # independent: numpy on the 11 training models
    p = cached_panel("paper-nc")
    tr = p[p["family"].isin(["Pythia", "Llama-1"])]
    assert len(tr) == PAPER_N_TRAIN
    c = np.polyfit(np.log10(tr["params"].astype(float)), tr["truthfulqa"], 2)
    np.testing.assert_allclose(pp.polynomial, c, rtol=1e-10)
    te = p.loc[list(PAPER_ERRORS)]
    signed = (np.polyval(c, np.log10(te["params"].astype(float))) - te["truthfulqa"]) / te["truthfulqa"] * 100
    np.testing.assert_allclose([row[f"error_%_{m}"] for m in PAPER_ERRORS], signed, rtol=1e-10)
    assert pp.paper_mape == pytest.approx(float(np.mean(np.abs(signed))), rel=1e-12)


def test_paper_protocol_ode_rows_and_common_points():
    pp = nc_paper()
    t = pp.table
    others = t.iloc[1:]
    assert len(others) == 4
    assert any(m.startswith("sparse ODE") for m in others["method"])
    assert others["method"].str.startswith("linear ODE").any()
    assert others["method"].str.contains("anchored").any()
    assert others["method"].str.startswith("last observed value").any()
    # the ODE rows start at llama-2-7b (not scored) and predict the two larger models
    assert others["error_%_llama-2-7b"].isna().all()
    assert others[["error_%_llama-2-13b", "error_%_llama-2-70b"]].notna().all().all()
    assert (others["n"] == 2).all() and t["n"].iloc[0] == 3
    # mape_common over llama-2-13b and llama-2-70b only, by hand from the error columns
    hand = (t["error_%_llama-2-13b"].abs() + t["error_%_llama-2-70b"].abs()) / 2
    np.testing.assert_allclose(t["mape_common"], hand, rtol=1e-12)
    assert t["mape_common"].iloc[0] != pytest.approx(t["mape"].iloc[0], abs=0.1)   # really restricted
    assert "llama-2-13b, llama-2-70b" in pp.notes[0]
    # the sparse ODE row is the same prediction as predict_family on the same training families
    pf = dy.predict_family(cached_panel("paper-nc"), "Llama-2", train="Pythia,Llama-1")
    q = pf.table[pf.table["benchmark"] == "truthfulqa"].set_index("model")
    sp = t[t["method"].str.startswith("sparse ODE")].iloc[0]
    for m in ("llama-2-13b", "llama-2-70b"):
        signed = (q.loc[m, "predicted"] - q.loc[m, "observed"]) / q.loc[m, "observed"] * 100
        assert sp[f"error_%_{m}"] == pytest.approx(signed, rel=1e-9)


# ====================================================================== 4. no held-out data in a fit
@pytest.mark.parametrize("family", ["Pythia", "Llama-1", "Llama-2"])
def test_family_fold_ignores_held_out_scores(family):
    base = fresh_panel("paper-nc")
    ref = dy.crossval(base, schemes="family", n_bootstrap=20, seed=0, paper=False)
    fam = base[base["family"] == family].sort_values("params")
    bumped = base.copy()
    bumped.loc[fam.index[1:], BENCH] += [7.0, -5.0]            # every larger model, not the start
    got = dy.crossval(bumped, schemes="family", n_bootstrap=20, seed=0, paper=False)
    a, b = fold_predictions(ref, "family", family), fold_predictions(got, "family", family)
    assert len(a) == len(b) > 0
    assert (a[["method", "model", "benchmark"]] == b[["method", "model", "benchmark"]]).all().all()
    np.testing.assert_allclose(a["predicted"], b["predicted"], rtol=0, atol=1e-12, equal_nan=True)
    assert not np.allclose(a["observed"], b["observed"])       # the held-out scores did change
    fa = ref.folds[ref.folds["fold"] == family].reset_index(drop=True)
    fb = got.folds[got.folds["fold"] == family].reset_index(drop=True)
    pd.testing.assert_frame_equal(fa, fb)
    # ... while every other fold, which trains on that family, does change
    for other in {"Pythia", "Llama-1", "Llama-2"} - {family}:
        pa = method_preds(ref, "family", other, "polynomial 1, pooled").to_numpy()
        pb = method_preds(got, "family", other, "polynomial 1, pooled").to_numpy()
        assert np.abs(pa - pb).max() > 0.01, other


def test_family_fold_depends_on_its_starting_model():
    base = fresh_panel("paper-nc")
    ref = dy.crossval(base, schemes="family", n_bootstrap=20, seed=0, paper=False)
    bumped = base.copy()
    bumped.loc["llama-2-7b", "truthfulqa"] += 3.0
    got = dy.crossval(bumped, schemes="family", n_bootstrap=20, seed=0, paper=False)
    for method in ("sparse ODE (degree 2, threshold 0.1)", "linear ODE (least squares)", "last observed value",
                   "polynomial 2, pooled, anchored"):
        pa = method_preds(ref, "family", "Llama-2", method).to_numpy()
        pb = method_preds(got, "family", "Llama-2", method).to_numpy()
        assert np.abs(pa - pb).max() > 0.1, method
    # the pooled polynomial does not use the start
    np.testing.assert_allclose(method_preds(ref, "family", "Llama-2", "polynomial 2, pooled"),
                               method_preds(got, "family", "Llama-2", "polynomial 2, pooled"), atol=1e-12)


def test_largest_fold_ignores_its_largest_model():
    base = fresh_panel("paper-nc")
    ref = dy.crossval(base, n_bootstrap=20, seed=0, paper=False)
    bumped = base.copy()
    bumped.loc["llama-65b", BENCH] += [4.0, 6.0]
    got = dy.crossval(bumped, n_bootstrap=20, seed=0, paper=False)
    for scheme in ("largest", "family"):
        a, b = fold_predictions(ref, scheme, "Llama-1"), fold_predictions(got, scheme, "Llama-1")
        np.testing.assert_allclose(a["predicted"], b["predicted"], rtol=0, atol=1e-12, equal_nan=True)
        assert not np.allclose(a["observed"], b["observed"])
    # the Pythia fold of the same scheme trains on llama-65b, so it changes
    for method in ("sparse ODE (degree 2, threshold 0.1)", "polynomial 1, pooled"):
        pa = method_preds(ref, "largest", "Pythia", method).to_numpy()
        pb = method_preds(got, "largest", "Pythia", method).to_numpy()
        assert np.abs(pa - pb).max() > 1e-3, method
    # the largest fold scores only llama-65b for Llama-1
    assert set(fold_predictions(ref, "largest", "Llama-1")["model"]) == {"llama-65b"}


def test_crossval_predictions_equal_independent_recomputation():
    p = cached_panel("paper-nc")
    cv = nc_crossval()
    # family scheme, Llama-2 held out: trained on Pythia + Llama-1 only
    tr = p[p["family"].isin(["Pythia", "Llama-1"])]
    tx = np.log10(tr["params"].astype(float).to_numpy())
    targets = ["llama-2-13b", "llama-2-70b"]
    xs, x0 = x_of(p, targets), math.log10(float(p.loc["llama-2-7b", "params"]))
    b0 = p.loc["llama-2-7b", BENCH].to_numpy(float)
    for d in (1, 2, 3):
        pooled = method_preds(cv, "family", "Llama-2", f"polynomial {d}, pooled")
        anchored = method_preds(cv, "family", "Llama-2", f"polynomial {d}, pooled, anchored")
        for b in BENCH:
            c = np.polyfit(tx, tr[b].to_numpy(float), d)
            np.testing.assert_allclose(pooled.loc[targets, b], np.polyval(c, xs), rtol=1e-9)
            shift = p.loc["llama-2-7b", b] - np.polyval(c, x0)
            np.testing.assert_allclose(anchored.loc[targets, b], np.polyval(c, xs) + shift, rtol=1e-9)
    lin = method_preds(cv, "family", "Llama-2", "linear ODE (least squares)")
    np.testing.assert_allclose(lin.loc[targets, BENCH].to_numpy(), hand_linear_ode(tr, x0, b0, xs),
                               rtol=0, atol=1e-4)
    # largest scheme, Pythia fold: trained on everything but pythia-12b
    tr = p.drop(index="pythia-12b")
    tx = np.log10(tr["params"].astype(float).to_numpy())
    xs = x_of(p, ["pythia-12b"])
    x0 = math.log10(float(p.loc["pythia-70m", "params"]))
    own = tr[tr["family"] == "Pythia"]
    for d in (1, 2, 3):
        pooled = method_preds(cv, "largest", "Pythia", f"polynomial {d}, pooled")
        fam = method_preds(cv, "largest", "Pythia", f"polynomial {d}, per family")
        for b in BENCH:
            c = np.polyfit(tx, tr[b].to_numpy(float), d)
            assert pooled.loc["pythia-12b", b] == pytest.approx(np.polyval(c, xs)[0], rel=1e-9)
            cf = np.polyfit(np.log10(own["params"].astype(float)), own[b], d)
            assert fam.loc["pythia-12b", b] == pytest.approx(np.polyval(cf, xs)[0], rel=1e-9)
    lin = method_preds(cv, "largest", "Pythia", "linear ODE (least squares)")
    np.testing.assert_allclose(lin.loc[["pythia-12b"], BENCH].to_numpy(),
                               hand_linear_ode(tr, x0, p.loc["pythia-70m", BENCH].to_numpy(float), xs),
                               rtol=0, atol=1e-4)


# ====================================================================== 5. baselines and scoring
def test_last_value_baseline_and_per_family_polynomial_presence():
    p = cached_panel("paper-nc")
    cv = nc_crossval()
    for fam, g in p.groupby("family"):
        g = g.sort_values("params")
        last = method_preds(cv, "family", fam, "last observed value")
        assert list(last.index.sort_values()) == sorted(g.index[1:])
        for b in BENCH:
            assert (last[b] == g[b].iloc[0]).all(), (fam, b)              # the smallest model's score
        last = method_preds(cv, "largest", fam, "last observed value")
        assert list(last.index) == [g.index[-1]]
        for b in BENCH:
            assert last.loc[g.index[-1], b] == g[b].iloc[-2], (fam, b)    # the second-largest model
    by_scheme = cv.predictions.groupby("scheme")["method"].unique()
    per_family = [m for m in cv.table["method"].unique() if m.endswith("per family")]
    assert len(per_family) == 3
    assert not any(m.endswith("per family") for m in by_scheme["family"])
    assert set(per_family) <= set(by_scheme["largest"])


def test_anchored_polynomial_passes_through_start():
    """anchored = pooled + (start - pooled(start)), recomputed by hand in every fold."""
    p = cached_panel("paper-nc")
    cv = nc_crossval()
    for scheme in ("family", "largest"):
        for fam, g in p.groupby("family"):
            g = g.sort_values("params")
            train = p[p["family"] != fam] if scheme == "family" else p.drop(index=g.index[-1])
            x0 = math.log10(float(g["params"].iloc[0]))
            for d in (1, 2):
                pooled = method_preds(cv, scheme, fam, f"polynomial {d}, pooled")
                anch = method_preds(cv, scheme, fam, f"polynomial {d}, pooled, anchored")
                for b in BENCH:
                    c = np.polyfit(np.log10(train["params"].astype(float)), train[b], d)
                    shift = g[b].iloc[0] - np.polyval(c, x0)
                    np.testing.assert_allclose(anch[b] - pooled[b], shift, rtol=1e-9, atol=1e-9)
                    assert abs(shift) > 1e-6


def test_scored_points_and_shared_rows():
    p = cached_panel("paper-nc")
    cv = nc_crossval()
    pr = cv.predictions
    smallest = {g.sort_values("params").index[0] for _, g in p.groupby("family")}
    largest = {g.sort_values("params").index[-1] for _, g in p.groupby("family")}
    fam_models = set(pr.loc[pr["scheme"] == "family", "model"])
    assert fam_models.isdisjoint(smallest)
    assert fam_models == set(p.index) - smallest
    assert set(pr.loc[pr["scheme"] == "largest", "model"]) == largest
    sparse = "sparse ODE (degree 2, threshold 0.1)"
    key = ["fold", "model", "benchmark"]
    t = cv.table.set_index(["scheme", "method"])
    # 11 non-start models x 2 benchmarks in the family scheme; 3 x 2 in the largest scheme
    assert t.loc[("family", "last observed value"), "n"] == 22
    assert t.loc[("largest", "last observed value"), "n"] == 6
    for scheme in ("family", "largest"):
        sp = pr[pr["scheme"] == scheme]
        ode = sp[(sp["method"] == sparse) & np.isfinite(sp["predicted"])]
        ode_keys = set(map(tuple, ode[key].to_numpy()))
        assert t.loc[(scheme, sparse), "n"] == len(ode) == t.loc[(scheme, sparse), "n_shared"]
        for method, mp in sp.groupby("method"):
            good = mp[np.isfinite(mp["predicted"])]
            shared = good[[tuple(r) in ode_keys for r in good[key].to_numpy()]]
            row = t.loc[(scheme, method)]
            assert row["n"] == len(good), method
            assert row["n_shared"] == len(shared), method
            assert row["mae"] == pytest.approx(good["error"].abs().mean(), rel=1e-12), method
            if len(shared):
                assert row["mae_shared"] == pytest.approx(shared["error"].abs().mean(), rel=1e-12), method
                ape = (shared["predicted"] - shared["observed"]).abs() / shared["observed"].abs() * 100
                assert row["mape_shared"] == pytest.approx(ape.mean(), rel=1e-12), method
            assert row["mae_low"] - 1e-12 <= row["mae"] <= row["mae_high"] + 1e-12, method
    # the family-scheme sparse ODE is refused on the Pythia fold (6 points for 6 terms), so the
    # shared rows are fewer than a baseline's own rows
    assert t.loc[("family", sparse), "refused"] == 1
    assert t.loc[("family", "polynomial 1, pooled"), "n_shared"] == 8 < t.loc[("family", "polynomial 1, pooled"), "n"]
    status = cv.folds.set_index(["scheme", "fold", "method"]).loc[("family", "Pythia", sparse), "status"]
    assert status.startswith("refused") and "6 data point(s)" in status and "exactly determined" in status


# ====================================================================== 6. bad input
def _nan_panel():
    q = fresh_panel("paper-nc")
    q.loc["llama-13b", "truthfulqa"] = np.nan
    return q


@pytest.mark.parametrize("call, words", [
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), families="Llama-1", degree=2, n_ensemble=0),
     ["Llama-1", "3 data point(s)", "6 candidate terms", "under-determined"]),
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), families="Llama-1", degree=1, n_ensemble=0),
     ["Llama-1", "3 data point(s)", "3 candidate terms", "exactly determined"]),
    (lambda: dy.fit_dynamics(_nan_panel(), n_ensemble=0),
     ["Llama-1", "truthfulqa", "llama-13b"]),
    (lambda: dy.fit_dynamics(cached_panel("openllm-v1-base"), families="StableLM", n_ensemble=0),
     ["StableLM", "7B", "stabilityai/stablelm-base-alpha-7b-v2", "stabilityai/stablelm-base-alpha-7b)",
      "duplicates"]),
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), pool=True, threshold=100, n_ensemble=0),
     ["threshold 100", "removes every term", "smaller"]),
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), families="Nope", n_ensemble=0),
     ["'Nope'", "Pythia", "Llama-1", "Llama-2"]),
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), "hellaswag,nosuchbench", n_ensemble=0),
     ["nosuchbench"]),
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), "hellaswag,mmlu", n_ensemble=0),
     ["mmlu", "paper-nc"]),
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), pool=True, degree=0, n_ensemble=0),
     ["degree", ">= 1", "0"]),
    (lambda: dy.fit_dynamics(cached_panel("paper-nc"), pool=True, threshold=-0.5, n_ensemble=0),
     ["threshold", ">= 0", "-0.5"]),
    (lambda: dy.crossval(cached_panel("paper-nc"), min_models=1),
     ["min_models", "at least 2", "1"]),
    (lambda: dy.predict_family(cached_panel("paper-nc"), "Llama-2", train="Pythia,Llama-2"),
     ["Llama-2", "training"]),
    (lambda: dy.predict_family(cached_panel("paper-nc"), "Llama-2", train="Pythia,Llama-1", sizes=[1e9]),
     ["below", "Llama-2", "7B"]),
    (lambda: dy.predict_family(cached_panel("paper-nc"), "Nope"),
     ["'Nope'", "Llama-2"]),
    (lambda: dy.crossval(cached_panel("paper-nc"), schemes="everything"),
     ["everything", "family", "largest"]),
], ids=["under-determined", "exactly-determined", "missing-score", "duplicate-sizes", "threshold-removes-all",
        "unknown-family", "unknown-benchmark", "benchmark-not-in-panel", "degree-0", "negative-threshold",
        "min-models-1", "target-in-train", "size-below-start", "predict-unknown-family", "unknown-scheme"])
def test_bad_input_clear_message(call, words):
    with pytest.raises(CapeError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_score_only_when_that_family_is_used():
    q = _nan_panel()
    res = dy.fit_dynamics(q, families="Pythia", n_ensemble=0, sweep=False)   # Llama-1 not selected
    assert [f.label for f in res.fits] == ["Pythia"]
    with pytest.raises(dy.DynamicsError, match="llama-13b"):
        dy.fit_dynamics(q, families="Pythia,Llama-1", pool=True, n_ensemble=0)


def test_per_family_refusals_are_listed():
    res = dy.fit_dynamics(cached_panel("paper-nc"), n_ensemble=0, sweep=False)
    assert [f.label for f in res.fits] == ["Pythia"]
    refused = {r["label"]: r["reason"] for r in res.refused}
    assert set(refused) == {"Llama-1", "Llama-2"}
    for fam, why in refused.items():
        assert fam in why and "under-determined" in why and "3 data point(s)" in why
    assert "refused: Llama-1" in res.summary()


def test_duplicates_mean_averages_and_notes():
    o = cached_panel("openllm-v1-base")
    a, b = "RWKV/rwkv-4-14b-pile", "RWKV/rwkv-raven-14b"
    assert o.loc[a, "params"] == o.loc[b, "params"]
    data = dy.dynamics_data(o, families="RWKV", duplicates="mean")
    n_rwkv = int((o["family"] == "RWKV").sum())
    assert data.n == n_rwkv - 1
    row = data.frame[data.frame["model"] == f"{a}+{b}"]
    assert len(row) == 1
    for bench in BENCH:
        assert row[bench].iloc[0] == pytest.approx((o.loc[a, bench] + o.loc[b, bench]) / 2, rel=1e-12)
    assert len(data.notes) == 1 and "RWKV" in data.notes[0] and a in data.notes[0] and b in data.notes[0]
    assert "averaged 2" in data.notes[0]
    res = dy.fit_dynamics(o, families="RWKV,StableLM", duplicates="mean", pool=True, n_ensemble=0, sweep=False)
    assert len(res.notes) == 2 and any("StableLM" in n for n in res.notes)
    with pytest.raises(dy.DynamicsError, match="RWKV"):
        dy.dynamics_data(o, families="RWKV")


@pytest.mark.parametrize("kw, word", [({"threshold": -1.0}, "threshold"), ({"degree": 0}, "degree")])
def test_crossval_rejects_invalid_parameters(kw, word):
    with pytest.raises(dy.DynamicsError, match=word):
        dy.crossval(cached_panel("paper-nc"), n_bootstrap=20, seed=0, paper=False, **kw)


def test_predict_ignores_unrelated_family_with_missing_score():
    q = fresh_panel("paper-nc")
    extra = q.loc[["pythia-70m", "pythia-160m", "pythia-410m"]].copy()
    extra.index = ["other-a", "other-b", "other-c"]
    extra["family"] = "Other"
    extra.loc["other-b", "truthfulqa"] = np.nan
    q = pd.concat([q, extra])
    ref = dy.predict_family(cached_panel("paper-nc"), "Llama-2", train="Pythia,Llama-1")
    got = dy.predict_family(q, "Llama-2", train="Pythia,Llama-1")
    np.testing.assert_allclose(got.table["predicted"], ref.table["predicted"], atol=1e-12)


def test_predict_ignores_unrelated_family_with_duplicates():
    res = dy.predict_family(cached_panel("openllm-v1-base"), "Pythia", train="OPT")
    assert res.trained_on == ["OPT"] and res.n_scored > 0


# ====================================================================== 7. threshold sweep
def test_threshold_sweep():
    res = dy.fit_dynamics(cached_panel("paper-nc"), pool=True, n_ensemble=0, sweep=True)
    fit = res.fits[0]
    s = fit.sweep.sort_values("threshold").reset_index(drop=True)
    assert len(s) >= 10
    assert s["threshold"].iloc[0] == 0 and s["n_active"].iloc[0] == 2 * fit.n_terms
    assert (np.diff(s["n_active"]) <= 0).all()
    assert s["n_active"].iloc[-1] < s["n_active"].iloc[0]
    assert (s["n_active"] == s["active_hellaswag"] + s["active_truthfulqa"]).all()
    mine = s[s["threshold"] == res.threshold]
    assert len(mine) == 1
    assert mine["n_active"].iloc[0] == sum(fit.n_active.values())
    assert mine["active_hellaswag"].iloc[0] == fit.n_active["hellaswag"]
    assert mine["active_truthfulqa"].iloc[0] == fit.n_active["truthfulqa"]
    # on this panel the supports shrink one inside the other, so the derivative error of the
    # least-squares refits only grows; the row at the fit's own threshold is the fit's own error
    ok = s[s["n_active"] > 0]
    assert (np.diff(ok["derivative_rmse"]) >= -1e-9).all()
    rms = math.sqrt(np.mean(np.square(list(fit.rmse.values()))))
    assert mine["derivative_rmse"].iloc[0] == pytest.approx(rms, rel=1e-9)
    assert mine["trajectory_mae"].iloc[0] == pytest.approx(fit.trajectory_mae, rel=1e-6)
    assert (s.loc[s["n_active"] == 0, "status"] == "every term removed").all()


# ====================================================================== 8. predict_family
def test_predict_family_table_and_training_set():
    p = cached_panel("paper-nc")
    pf = dy.predict_family(p, "Llama-2", train="Pythia,Llama-1", sizes=[175e9])
    t = pf.table
    assert pf.trained_on == ["Pythia", "Llama-1"] and pf.benchmarks == BENCH
    assert len(t) == (3 + 1) * 2
    start = t[t["model"] == "llama-2-7b"]
    assert start["start"].all() and start["error"].isna().all()
    np.testing.assert_array_equal(start["predicted"], start["observed"])
    np.testing.assert_array_equal(start["observed"], p.loc["llama-2-7b", BENCH].to_numpy(float))
    extra = t[t["model"] == ""]
    assert len(extra) == 2 and np.allclose(extra["params"], 175e9, rtol=1e-12)
    assert extra["observed"].isna().all() and extra["error"].isna().all() and extra["predicted"].notna().all()
    scored = t[t["error"].notna()]
    assert set(scored["model"]) == {"llama-2-13b", "llama-2-70b"} and pf.n_scored == 4
    np.testing.assert_allclose(scored["error"], scored["predicted"] - scored["observed"], rtol=1e-12)
    assert pf.mae == pytest.approx(scored["error"].abs().mean(), rel=1e-12)
    assert pf.mape == pytest.approx((scored["error"].abs() / scored["observed"] * 100).mean(), rel=1e-12)
    # the fit is the fit on the training families alone...
    ref = dy.fit_ode(dy.dynamics_data(p, families="Pythia,Llama-1"))
    np.testing.assert_allclose(pf.ode.coef, ref.coef, rtol=1e-12, atol=1e-14)
    assert pf.ode.n_points == 11
    # ... and not the fit with the target in it
    full = dy.fit_ode(dy.dynamics_data(p))
    assert not np.allclose(pf.ode.coef, full.coef)
    # default training families: every other family
    default = dy.predict_family(p, "Llama-2")
    assert default.trained_on == ["Llama-1", "Pythia"]
    np.testing.assert_allclose(default.ode.coef, ref.coef, rtol=1e-12, atol=1e-14)
    # the integration, checked with scipy on the expanded right-hand side in points
    pts = pf.ode._points_coef()
    x0 = math.log10(7e9)
    xs = np.log10(np.array([13e9, 70e9, 175e9]))
    sol = solve_ivp(lambda _t, b: poly_eval(pts, pf.ode.powers, b[None, :])[0], (x0, xs[-1]),
                    p.loc["llama-2-7b", BENCH].to_numpy(float), t_eval=xs, method="DOP853", rtol=1e-11, atol=1e-11)
    mine = t[~t["start"]].pivot_table(index="params", columns="benchmark", values="predicted")
    np.testing.assert_allclose(mine[BENCH].to_numpy(), sol.y.T, rtol=0, atol=1e-4)


def test_predict_family_ignores_target_scores_beyond_start():
    q = fresh_panel("paper-nc")
    q.loc[["llama-2-13b", "llama-2-70b"], BENCH] += [10.0, -8.0]
    a = dy.predict_family(cached_panel("paper-nc"), "Llama-2", train="Pythia,Llama-1")
    b = dy.predict_family(q, "Llama-2", train="Pythia,Llama-1")
    np.testing.assert_allclose(a.table["predicted"], b.table["predicted"], atol=1e-12)
    assert not np.allclose(a.table["observed"], b.table["observed"])
    assert a.mae != pytest.approx(b.mae)


# ====================================================================== 9. the CLI
@pytest.mark.slow
def test_cli_help():
    proc = run_cli("dynamics", "--help")
    assert proc.returncode == 0, proc.stderr
    for cmd in ("fit", "predict", "crossval"):
        assert cmd in proc.stdout


@pytest.mark.slow
def test_cli_fit_json_seeded():
    args = ("dynamics", "fit", "--family", "Pythia,Llama-1", "--pool", "--seed", "0", "--ensemble", "200", "--json")
    one, two = run_cli(*args), run_cli(*args)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout
    d = strict_json(one.stdout)
    assert d["command"] == "dynamics fit" and d["panel"] == "paper-nc" and d["pooled"] is True
    assert d["benchmarks"] == BENCH and len(d["fits"]) == 1
    f = d["fits"][0]
    assert f["families"] == ["Llama-1", "Pythia"] and f["n_points"] == 11 and f["n_terms"] == 6
    assert len(f["coefficients"]) == 12 and f["ensemble"]["n_models"] == 200
    # the same fit through the API
    ref = dy.fit_ode(dy.dynamics_data(cached_panel("paper-nc"), families="Pythia,Llama-1"))
    np.testing.assert_allclose([c["coef"] for c in f["coefficients"]], ref.coef.ravel(), rtol=1e-9, atol=1e-12)
    assert f["n_active"] == {b: int(n) for b, n in zip(BENCH, ref.n_active)}


@pytest.mark.slow
def test_cli_predict_text():
    proc = run_cli("dynamics", "predict", "--family", "Llama-2", "--train", "Pythia,Llama-1", "--to", "175B")
    assert proc.returncode == 0, proc.stderr
    assert "175B" in proc.stdout and "(extra size)" in proc.stdout
    assert "llama-2-70b" in proc.stdout and "Pythia, Llama-1" in proc.stdout


@pytest.mark.slow
def test_cli_crossval_paper_nc_text():
    proc = run_cli("dynamics", "crossval", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Paper protocol" in out and "5.65%" in out
    assert "leave one family out" in out and "leave the largest size out" in out
    assert "-8.53" in out and "-2.28" in out and "-6.13" in out


@pytest.mark.slow
def test_cli_crossval_openllm_duplicates():
    proc = run_cli("dynamics", "crossval", "--panel", "openllm-v1-base", "--duplicates", "mean", "--min-models", "4",
                   "--seed", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    d = strict_json(proc.stdout)
    assert len(d["families"]) == 14 and d["paper_protocol"] is None
    assert {"Pythia", "OPT", "RWKV"} <= set(d["families"])
    assert any("RWKV: averaged 2" in n for n in d["notes"])
    assert {r["scheme"] for r in d["table"]} == {"family", "largest"}
    # one fold per (family, method): 9 methods leave a family out, 12 leave the largest size out
    schemes = [f["scheme"] for f in d["folds"]]
    assert schemes.count("family") == 14 * 9 and schemes.count("largest") == 14 * 12
    ode = [r for r in d["table"] if r["scheme"] == "largest" and r["method"].startswith("sparse ODE")][0]
    # each family's largest model, two benchmarks; a fold whose trajectory diverged scores nothing
    assert ode["n_folds"] + ode["diverged"] == 14 and ode["n"] == ode["n_folds"] * 2
    lin = [r for r in d["table"] if r["scheme"] == "largest" and r["method"].startswith("linear ODE")][0]
    assert lin["n_folds"] == 14 and lin["n"] == 14 * 2
    line = error_line(run_cli("dynamics", "crossval", "--panel", "openllm-v1-base", "--min-models", "4"))
    assert "same size" in line and any(f in line for f in ("H2O-Danube", "RWKV", "StableLM", "OLMo"))
    assert "--duplicates mean" in line


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (("dynamics", "fit", "--family", "Llama-1"), ["Llama-1", "3 data point(s)", "under-determined"]),
    (("dynamics", "fit", "--family", "Nope"), ["'Nope'"]),
    (("dynamics", "fit", "--pool", "--threshold", "100", "--ensemble", "0"), ["threshold 100", "smaller"]),
    (("dynamics", "fit", "--pool", "--degree", "0"), ["degree", ">= 1"]),
    (("dynamics", "fit", "--panel", "openllm-v1-base", "--family", "StableLM"),
     ["StableLM", "stabilityai/stablelm-base-alpha-7b-v2", "stabilityai/stablelm-base-alpha-7b)"]),
    (("dynamics", "predict", "--family", "Llama-2", "--train", "Pythia,Llama-2"), ["Llama-2", "training"]),
    (("dynamics", "predict", "--family", "Llama-2", "--to", "1B"), ["below", "7B"]),
    (("dynamics", "crossval", "--min-models", "1"), ["min_models", "at least 2"]),
], ids=["under-determined", "unknown-family", "threshold", "degree-0", "duplicates", "target-in-train",
        "size-below-start", "min-models"])
def test_cli_bad_input(args, words):
    line = error_line(run_cli(*args))
    for w in words:
        assert w in line, (w, line)


@pytest.mark.slow
def test_cli_crossval_negative_threshold():
    line = error_line(run_cli("dynamics", "crossval", "--threshold", "-1", "--scheme", "family"))
    assert "threshold" in line


def test_short_families_are_set_aside_before_their_data_problems():
    # StableLM and H2O-Danube have 3 distinct sizes (4 models each, two of equal size): with
    # min_models=4 they are excluded before the duplicate check, so only RWKV (6 distinct
    # sizes, two 14B models) is reported.
    o = cached_panel("openllm-v1-base")
    with pytest.raises(dy.DynamicsError, match="RWKV") as info:
        dy.dynamics_data(o, min_models=4)
    assert "StableLM" not in str(info.value)
    data = dy.dynamics_data(o, min_models=4, duplicates="mean")
    assert {"StableLM", "H2O-Danube"} <= {e.get("family") for e in data.excluded}
    assert not any("StableLM" in n for n in data.notes)
    assert any("RWKV" in n for n in data.notes)


def test_largest_scheme_with_two_size_families_fits_the_odes():
    # With min_models=2 a two-size family keeps one model in training when its largest is
    # held out; the ODE fits leave that single point out instead of refusing the fold.
    q = fresh_panel("paper-nc")
    q = q.drop(index=["llama-65b"])          # Llama-1 now has two sizes
    cv = dy.crossval(q, schemes=["largest"], min_models=2, n_bootstrap=20, seed=0, paper=False)
    st = cv.folds[(cv.folds["fold"] == "Llama-1") & cv.folds["method"].str.contains("ODE")]
    assert len(st) == 2 and (st["status"] == "ok").all(), st["status"].tolist()
    assert (st["train_points"] == len(q) - 1).all()
