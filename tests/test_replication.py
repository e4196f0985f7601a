"""Tests of cape.analysis.replication: paper A's base-model analyses on another panel and the
phase-picture test. Figures are recomputed by hand (numpy, scipy, explicit loops) from the
built-in panels; constructed panels check that the verdict follows the data.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cape import stats
from cape.analysis import critical_scale, family_coupling, local_coupling
from cape.analysis.replication import VERDICTS, phase_split_test, replication
from cape.errors import CapeError
from conftest import cached_panel, fresh_panel

B = 2_000          # resamples in most tests: enough for stable verdicts, quick
PREPRINT_NC = 3.5e9  # the preprint's headline N_c, passed in as the caller would


@pytest.fixture(scope="module")
def openllm():
    return replication(fresh_panel("openllm-v1-base"), n_c=PREPRINT_NC, n_resamples=B, seed=0)


@pytest.fixture(scope="module")
def paperbase():
    return replication(fresh_panel("paper-base"), n_c="3.5B", n_resamples=B, seed=0)


def _frame(rows, name="constructed", dated: bool = False) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["model", "family", "params", "hellaswag", "truthfulqa"]).set_index("model")
    if dated:   # one release month per family, a year apart: a vintage for the flip test's part 4
        codes = pd.factorize(df["family"])[0]
        df["release_date"] = [f"{2019 + c}-{1 + 5 * (c % 2):02d}" for c in codes]
    df.attrs["cape"] = {"panel": name, "benchmarks": ["hellaswag", "truthfulqa"]}
    return df


SIZES = [1e8, 3e8, 1e9, 3e9, 1e10, 3e10]


def _family(name: str, tqa_steps, offset: float = 0.0) -> list[tuple]:
    """A family over SIZES: HellaSwag rises 6 points a step, TruthfulQA moves by tqa_steps."""
    hs = 30 + offset + 6 * np.arange(len(SIZES))
    tqa = 40 + offset + np.r_[0, np.cumsum(tqa_steps)]
    return [(f"{name}-{i}", name, s, float(h), float(t)) for i, (s, h, t) in enumerate(zip(SIZES, hs, tqa))]


def _picture_panel(sign_below: int, sign_above: int, n_families: int = 6, dated: bool = True) -> pd.DataFrame:
    """Families whose intervals below 3e9 (midpoints 1.7e8, 5.5e8, 1.7e9) move TQA with sign
    ``sign_below`` and above (5.5e9, 1.7e10) with ``sign_above``; magnitudes vary by family."""
    rows = []
    for k in range(n_families):
        step = 1.0 + 0.3 * k
        rows += _family(f"F{k}", [sign_below * step] * 3 + [sign_above * step * 1.5] * 2, offset=k)
    return _frame(rows, dated=dated)


# --------------------------------------------------------------- section 1 by hand
@pytest.mark.parametrize("family", ["Pythia", "OPT", "Qwen1.5"])
def test_family_r_recomputed_with_numpy(openllm, family):
    raw = cached_panel("openllm-v1-base")
    sub = raw[raw["family"] == family].dropna(subset=["hellaswag", "truthfulqa", "params"])
    r_hand = np.corrcoef(sub["hellaswag"].to_numpy(float), sub["truthfulqa"].to_numpy(float))[0, 1]
    row = openllm.couplings.set_index("family").loc[family]
    assert row["n"] == len(sub)
    assert row["r"] == pytest.approx(r_hand, abs=1e-12)
    assert row["ci_low"] <= row["r"] <= row["ci_high"]


def test_analysed_families_and_counts_by_hand(openllm):
    raw = cached_panel("openllm-v1-base").dropna(subset=["hellaswag", "truthfulqa", "params"])
    sizes = raw.groupby("family")["params"].nunique()
    expected = sorted(sizes.index[sizes >= 3])
    assert sorted(openllm.families) == expected
    assert sorted(openllm.couplings["family"]) == expected
    assert openllm.n_models == int(raw["family"].isin(expected).sum())
    t = openllm.couplings
    c = openllm.coupling_counts
    assert c["n_negative"] == int((t["r"] < 0).sum())
    assert c["n_positive"] == int((t["r"] > 0).sum())
    assert c["n_negative"] + c["n_positive"] == c["n_tested"] == len(expected)
    # BH across exactly these families, recomputed with scipy
    q = sps.false_discovery_control(t["p_perm"].to_numpy(float))
    np.testing.assert_allclose(t["q_fdr"].to_numpy(float), q, rtol=1e-12)
    assert c["n_significant"] == int((q < 0.05).sum())
    assert c["n_negative_significant"] == int(((q < 0.05) & (t["r"] < 0)).sum())


# --------------------------------------------------------------- section 2 by hand
def test_sign_changes_and_directions_by_hand(openllm):
    iv = openllm.intervals
    for fam, sub in iv.groupby("family"):
        s = np.sign(sub.sort_values("params_mid")["gamma"].to_numpy())
        s = s[s != 0]
        up = int(((s[:-1] < 0) & (s[1:] > 0)).sum())
        down = int(((s[:-1] > 0) & (s[1:] < 0)).sum())
        row = openllm.crossings.set_index("family").loc[fam]
        assert (row["changes_up"], row["changes_down"]) == (up, down), fam
        assert row["sign_changes"] == up + down
    x = openllm.crossing_counts
    assert x["n_changing"] == int((openllm.crossings["sign_changes"] > 0).sum())
    assert x["n_up"] == int(openllm.crossings["changes_up"].sum())
    # every crossing lies inside its family's own interval range
    for fam, cl in x["crossings"].items():
        sub = iv[iv["family"] == fam]
        assert all(sub["params_mid"].min() <= c <= sub["params_mid"].max() for c in cl)


def test_family_with_flat_second_benchmark_is_not_called_tax_signed():
    rows = _family("Flat", [0.0] * 5) + _family("Down", [-1.0] * 5)
    rep = replication(_frame(rows), n_c=3e9, n_resamples=200, seed=0)
    cr = rep.crossings.set_index("family")
    assert cr.loc["Flat", "verdict"] == "none in range (no sign: every coupling is 0)"
    assert cr.loc["Down", "verdict"] == "none in range (always tax-signed)"
    assert rep.couplings.set_index("family").loc["Flat", "note"].startswith("truthfulqa is constant")
    # critical_scale runs through the all-equal couplings of "Down" (family_crossings used to overflow)
    assert not any("overflow" in n for n in rep.notes)
    assert np.isnan(cr.loc["Down", "fit_crossing"])
    nc = rep.nc.set_index("estimator")
    assert np.isfinite(nc.loc["N_c (a) paper protocol: quadratic vertex, model resampling", "value"])
    assert list(rep.nc["estimator"].str[:7]) == ["N_c (a)", "N_c (b)", "N_c (c)", "N_c (d)", "N_c (e)"]
    json.dumps(rep.to_dict(), allow_nan=False)


def test_interval_gammas_by_hand_for_pythia(openllm):
    raw = cached_panel("openllm-v1-base")
    p = raw[raw["family"] == "Pythia"].sort_values("params")
    hs, tq = p["hellaswag"].to_numpy(float), p["truthfulqa"].to_numpy(float)
    g = np.diff(tq) / np.diff(hs)
    g = g[np.abs(np.diff(hs)) >= 0.5]
    got = openllm.intervals.loc[openllm.intervals["family"] == "Pythia", "gamma"].to_numpy()
    np.testing.assert_allclose(got, g, rtol=1e-12)


# --------------------------------------------------------------- section 3
def test_nc_estimators_match_critical_scale(openllm):
    cs = critical_scale(fresh_panel("openllm-v1-base"), n_resamples=B, seed=0)
    nc = openllm.nc.set_index("estimator")
    assert nc.loc[cs.paper.name, "value"] == pytest.approx(cs.paper.value, rel=1e-12)
    assert nc.loc[cs.paper.name, "ci_low"] == pytest.approx(cs.paper.ci[0], rel=1e-12)
    assert nc.loc[cs.family_bootstrap.name, "discarded"] == cs.family_bootstrap.discarded
    assert nc.loc[cs.running.name, "value"] == pytest.approx(cs.running.value, rel=1e-12)
    assert len(openllm.nc) == 5 and openllm.nc["note"].notna().sum() >= 2
    # (e): median of the leave-one-family-out vertices
    e = [n for n in nc.index if n.startswith("N_c (e)")][0]
    assert nc.loc[e, "value"] == pytest.approx(np.nanmedian(cs.leave_one_family_out["nc"]), rel=1e-12)
    # (d): median of the upward in-range crossings, from the crossing table
    up = [c for cl, dl in zip(openllm.crossings["crossings"], openllm.crossings["directions"])
          for c, d in zip(cl, dl) if d == "up"]
    d = [n for n in nc.index if n.startswith("N_c (d)")][0]
    assert len(up) == openllm.crossing_counts["n_up"] and nc.loc[d, "value"] == pytest.approx(np.median(up))


def test_nc_failure_is_recorded_not_raised():
    # every family at the same two sizes: no quadratic, no running coupling, but no crash
    rows = [("a1", "A", 1e9, 40, 30), ("a2", "A", 1e10, 60, 35), ("b1", "B", 1e9, 42, 31),
            ("b2", "B", 1e10, 61, 29)]
    rep = replication(_frame(rows), min_models=2, n_c=3e9, n_resamples=200, seed=0)
    assert rep.nc["value"].isna().all()
    assert rep.nc["note"].str.contains("3 distinct sizes").any()
    assert any("N_c estimators failed" in n for n in rep.notes)
    assert math.isnan(rep.reference["a"]) and rep.reference["note"]
    assert rep.verdict == "undetermined"
    json.dumps(rep.to_dict(), allow_nan=False)


# --------------------------------------------------------------- section 4 by hand
def test_curation_field_by_hand(openllm):
    raw = cached_panel("openllm-v1-base").dropna(subset=["hellaswag", "truthfulqa", "params"])
    x, y = np.log10(raw["params"].to_numpy(float)), raw["truthfulqa"].to_numpy(float)
    a, b, c = np.polyfit(x, y, 2)                                    # independent of cape's fit
    ref = openllm.reference
    assert (ref["a"], ref["b"], ref["c"]) == pytest.approx((a, b, c), rel=1e-9)
    assert ref["n_models"] == len(raw) and len(ref["families"]) == raw["family"].nunique()
    h = pd.Series(y - (a * x * x + b * x + c), index=raw.index.astype(str))
    got = openllm.h_models.set_index("model")["h"]
    np.testing.assert_allclose(got.loc[h.index].to_numpy(), h.to_numpy(), atol=1e-8)
    # the pooled reference curve is the paper-protocol quadratic: same vertex as N_c (a)
    assert ref["vertex"] == pytest.approx(openllm.phase.loc[0, "n_c"], rel=1e-9)
    fam = openllm.h_families.set_index("family")
    q = h[raw["family"].to_numpy() == "Qwen1.5"].to_numpy()
    lo, hi = sps.t.interval(0.95, q.size - 1, loc=q.mean(), scale=q.std(ddof=1) / np.sqrt(q.size))
    assert fam.loc["Qwen1.5", "mean_h"] == pytest.approx(q.mean())
    assert (fam.loc["Qwen1.5", "ci_low"], fam.loc["Qwen1.5", "ci_high"]) == pytest.approx((lo, hi))
    single = fam[fam["n"] == 1]
    assert len(single) and single["ci_low"].isna().all() and (single["note"] == "one model: no interval").all()


def test_curation_field_reference_families():
    rep = replication(fresh_panel("paper-base"), reference_families=["Pythia", "OPT", "BLOOM"],
                      n_resamples=200, seed=0)
    f = cached_panel("paper-base")
    f = f[f["family"].isin(["Pythia", "OPT", "BLOOM"])]
    a, b, c = np.polyfit(np.log10(f["params"].astype(float)), f["truthfulqa"].astype(float), 2)
    assert (rep.reference["a"], rep.reference["b"]) == pytest.approx((a, b), rel=1e-9)
    assert rep.reference["which"] == "the families given by the caller"
    assert set(rep.h_families.loc[rep.h_families["in_reference"], "family"]) == {"Pythia", "OPT", "BLOOM"}
    with pytest.raises(CapeError, match="reference families not in paper-base: Nope"):
        replication(fresh_panel("paper-base"), reference_families=["Pythia", "Nope"], n_resamples=10)


# --------------------------------------------------------------- section 5 by hand
@pytest.mark.parametrize("which", ["openllm", "paperbase"])
def test_phase_shares_by_hand_from_the_gamma_table(which, request):
    rep = request.getfixturevalue(which)
    assert len(rep.phase) == 4            # own N_c and the caller's 3.5B, all / spanning families
    assert list(rep.phase["families"]) == ["all", "all", "spanning", "spanning"]
    assert rep.phase.loc[1, "n_c"] == rep.phase.loc[3, "n_c"] == PREPRINT_NC
    for row in rep.phase.to_dict("records"):
        iv = rep.intervals
        if row["families"] == "spanning":       # families with intervals on both sides, by hand
            keep = [f for f, sub in iv.groupby("family") if (sub["params_mid"] < row["n_c"]).any()
                    and (sub["params_mid"] >= row["n_c"]).any()]
            iv = iv[iv["family"].isin(keep)]
            assert row["n_families"] == len(keep) < rep.phase.loc[0, "n_families"]
        below = iv[iv["params_mid"] < row["n_c"]]
        above = iv[iv["params_mid"] >= row["n_c"]]
        sb, sa = (below["gamma"] < 0).mean(), (above["gamma"] < 0).mean()
        assert (row["n_below"], row["n_above"]) == (len(below), len(above))
        assert (row["negative_below"], row["negative_above"]) == ((below["gamma"] < 0).sum(), (above["gamma"] < 0).sum())
        assert row["share_below"] == pytest.approx(sb) and row["share_above"] == pytest.approx(sa)
        assert row["difference"] == pytest.approx(sb - sa)
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        expect = "holds" if row["ci_low"] > 0 else "does not hold" if row["ci_high"] <= 0 else "undetermined"
        assert row["verdict"] == expect
    # the caller's N_c is the headline; the verdict is the family-level flip test's, not the pooled row's
    assert rep.flip.n_c == rep.phase.loc[1, "n_c"] and rep.verdict == rep.flip.verdict
    assert rep.verdict_reason == rep.flip.reason


def test_phase_bootstrap_equals_an_explicit_loop_over_families(paperbase):
    """The vectorised family bootstrap against a plain loop over the same draws."""
    iv = paperbase.intervals
    nc = paperbase.phase.loc[0, "n_c"]
    row, est, dist = phase_split_test(iv, nc, n_resamples=300, seed=7)
    fams = list(dict.fromkeys(iv["family"]))
    codes = np.array([fams.index(f) for f in iv["family"]])
    W = stats.bootstrap_weights(len(iv), 300, np.random.default_rng(7), clusters=codes)
    g, below = iv["gamma"].to_numpy(), iv["params_mid"].to_numpy() < nc
    loop = []
    for w in W:                                   # the slow way, on purpose
        kb = sum(wi for wi, gi, bi in zip(w, g, below) if bi and gi < 0)
        nb = sum(wi for wi, bi in zip(w, below) if bi)
        ka = sum(wi for wi, gi, bi in zip(w, g, below) if not bi and gi < 0)
        na = sum(wi for wi, bi in zip(w, below) if not bi)
        if nb > 0 and na > 0:
            loop.append(kb / nb - ka / na)
    np.testing.assert_allclose(np.sort(dist), np.sort(loop), atol=1e-12)
    assert row["discarded"] == 300 - len(loop)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(np.percentile(loop, [2.5, 97.5])))
    assert est.n == len(iv) and est.n_resamples == 300


def test_constructed_picture_holds():
    rep = replication(_picture_panel(-1, +1), n_c=3e9, n_resamples=B, seed=0)
    row = rep.phase.loc[1]
    assert (row["share_below"], row["share_above"]) == (1.0, 0.0)
    assert rep.verdict == "holds" and row["ci_low"] > 0 and row["majority_flips"]
    parts = rep.flip.parts.set_index("part")["status"]
    assert (parts[1], parts[2], parts[4]) == ("pass", "pass", "pass")
    # a clean step is also fitted by a steep smooth trend: part 3 reports, it does not decide
    assert parts[3] in ("pass", "fail") and "part 3" in rep.verdict_reason
    # the breakpoint lies between the last tax interval (1.7e9) and the first bonus one (5.5e9)
    assert 1.7e9 < rep.flip.breakpoint.value < 5.5e9
    # TruthfulQA is a U with its bottom at 3e9: the panel's own N_c lands near it and also holds
    assert 1e9 < rep.phase.loc[0, "n_c"] < 1e10 and rep.phase.loc[0, "verdict"] == "holds"
    assert rep.coupling_counts["n_tested"] == 6


def test_constructed_picture_fails():
    rep = replication(_picture_panel(+1, -1), n_c=3e9, n_resamples=B, seed=0)
    row = rep.phase.loc[1]
    assert (row["share_below"], row["share_above"]) == (0.0, 1.0)
    assert rep.verdict == "does not hold" and row["ci_high"] < 0
    assert rep.flip.parts.set_index("part").loc[1, "status"] == "fail" and rep.flip.beta.value > 0


def test_undated_picture_is_undetermined_for_want_of_vintage():
    rep = replication(_picture_panel(-1, +1, dated=False), n_c=3e9, n_resamples=B, seed=0)
    parts = rep.flip.parts.set_index("part")["status"]
    assert (parts[1], parts[2], parts[4]) == ("pass", "pass", "undetermined")
    assert rep.verdict == "undetermined" and "part 4 (vintage strata) undetermined" in rep.verdict_reason


def test_constructed_mixed_families_do_not_hold():
    half = _picture_panel(-1, +1, n_families=3)
    other = _picture_panel(+1, -1, n_families=3).rename(index=lambda m: "G" + m)
    other["family"] = "G" + other["family"]
    mixed = pd.concat([half, other])
    mixed.attrs = half.attrs
    rep = replication(mixed, n_c=3e9, n_resamples=B, seed=0)
    row = rep.phase.loc[1]
    assert row["difference"] == pytest.approx(0.0)
    assert row["ci_low"] < 0 < row["ci_high"] and row["verdict"] == "undetermined"      # the pooled row
    # half the families flip up, half down: no majority flip within families
    assert rep.flip.majority["share_below"] == pytest.approx(0.5) and rep.verdict == "does not hold"


def test_all_negative_everywhere_does_not_hold():
    # no sign change at all: every resample gives a difference of exactly 0
    rep = replication(_picture_panel(-1, -1), n_c=3e9, n_resamples=500, seed=0)
    row = rep.phase.loc[1]
    assert (row["ci_low"], row["ci_high"]) == (0.0, 0.0) and rep.verdict == "does not hold"
    assert rep.flip.beta.value == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------- reproducibility, output
def test_same_seed_same_result_other_seed_differs():
    f = fresh_panel("paper-base")
    a = replication(f, n_c=PREPRINT_NC, n_resamples=500, seed=3).to_dict()
    b = replication(f, n_c=PREPRINT_NC, n_resamples=500, seed=3).to_dict()
    c = replication(f, n_c=PREPRINT_NC, n_resamples=500, seed=4).to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert [r["ci_low"] for r in a["phase"]] != [r["ci_low"] for r in c["phase"]]


def test_result_is_strict_json_and_readable(openllm):
    d = json.loads(json.dumps(openllm.to_dict(), allow_nan=False))
    assert d["verdict"] in VERDICTS and d["panel"] == "openllm-v1-base"
    assert "coupling_result" not in d and "phase_distributions" not in d
    assert set(openllm.tables) == {"couplings", "crossings", "nc", "h_models", "h_families", "intervals", "phase",
                                   "flip_parts", "flip_families", "flip_profile"}
    text = openllm.summary()
    assert "Verdict on the phase picture" in text and openllm.verdict in text and "3.5B" in text
    assert all(e.n > 0 and e.n_resamples == B for e in openllm.phase_estimates)


def test_own_split_is_the_default_and_progress_reports(paperbase):
    seen = []
    rep = replication(fresh_panel("paper-base"), n_resamples=200, seed=0, progress=lambda d, t: seen.append((d, t)))
    assert len(rep.phase) == 2 and rep.verdict_split.startswith("own N_c")
    assert rep.phase.loc[0, "n_c"] == pytest.approx(paperbase.phase.loc[0, "n_c"])
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_sections_use_only_families_with_enough_sizes():
    # paper-base Llama-3 has 4 rows at 2 sizes: out at min_models=3, in at 2
    rep3 = replication(fresh_panel("paper-base"), n_resamples=100, seed=0)
    rep2 = replication(fresh_panel("paper-base"), min_models=2, n_resamples=100, seed=0)
    assert "Llama-3" not in rep3.families and "Llama-3" in rep2.families
    assert "Llama-3" not in set(rep3.intervals["family"]) and "Llama-3" in set(rep2.intervals["family"])
    assert rep3.h_families["family"].eq("Llama-3").any()            # h(D) covers every model
    lc = local_coupling(fresh_panel("paper-base"))
    assert len(rep2.intervals) == len(lc.intervals[lc.intervals["family"].isin(rep2.families)])
    fc = family_coupling(fresh_panel("paper-base"), seed=0, n_bootstrap=100)
    assert rep3.couplings.set_index("family")["r"].to_dict() == pytest.approx(
        fc.table.set_index("family").loc[rep3.families, "r"].to_dict())


# --------------------------------------------------------------- bad input
def test_empty_frame():
    with pytest.raises(CapeError, match="empty"):
        replication(pd.DataFrame())
    with pytest.raises(CapeError, match="empty"):
        replication(fresh_panel("paper-base").iloc[:0])


def test_missing_benchmark_of_the_pair():
    with pytest.raises(CapeError, match="'gsm8k' is not in paper-base"):
        replication(fresh_panel("paper-base"), pair="hellaswag:gsm8k")
    f = fresh_panel("paper-base").drop(columns=["truthfulqa"])
    with pytest.raises(CapeError, match="truthfulqa"):
        replication(f)


def test_no_family_with_enough_sizes():
    rows = [("a1", "A", 1e9, 40, 30), ("a2", "A", 2e9, 45, 31), ("b1", "B", 1e9, 41, 30)]
    with pytest.raises(CapeError, match="no family of constructed has 3 or more distinct sizes.*the most is 2"):
        replication(_frame(rows))
    with pytest.raises(CapeError, match="no family of paper-base has 11 or more distinct sizes"):
        replication(fresh_panel("paper-base"), min_models=11)


@pytest.mark.parametrize("kw, match", [
    ({"min_models": 1}, "min_models"), ({"n_resamples": 0}, "n_resamples"), ({"level": 1.5}, "level"),
    ({"n_c": "lots"}, "n_c must be a parameter count"), ({"n_c": -3e9}, "n_c must be a parameter count"),
    ({"guard": -1}, "guard")])
def test_bad_settings(kw, match):
    with pytest.raises(CapeError, match=match):
        replication(fresh_panel("paper-base"), **kw)


def test_not_a_dataframe():
    with pytest.raises(CapeError, match="DataFrame"):
        replication([1, 2, 3])


@pytest.mark.slow
def test_openllm_full_resamples_seed0():
    rep = replication(fresh_panel("openllm-v1-base"), n_c=PREPRINT_NC, seed=0)
    assert rep.n_resamples == stats.DEFAULT_BOOTSTRAP
    assert rep.verdict in VERDICTS and rep.phase["ci_low"].notna().all()
    assert (rep.phase["discarded"] >= 0).all() and len(rep.nc) == 5
