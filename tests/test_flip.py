"""Tests of cape.analysis.flip: the family-level test of a coupling flip within families.

Constructed interval tables where the answer is known: a true flip at a known size must
pass and be located; a pure vintage effect, a family-composition effect (old small
families tax-signed, new large ones bonus-signed) and a flip confined to new families must
not. The conditional logit is checked against statsmodels and against its own objective
written as a plain loop.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from cape.analysis.flip import _strata, conditional_logit, flip_test, model_vintage
from cape.analysis.replication import phase_split_test
from cape.errors import CapeError

B = 1_000
CLAIMED = (2.9e9, 13.4e9)


def _table(families) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """families: list of (name, year, [(size_lo, size_hi, negative), ...])."""
    rows, vint = [], {}
    rng = np.random.default_rng(123)
    for name, year, ivs in families:
        for i, (lo, hi, neg) in enumerate(ivs):
            mag = 0.5 + rng.random()
            rows.append({"family": name, "model_lo": f"{name}-{i}", "model_hi": f"{name}-{i + 1}",
                         "params_lo": lo, "params_hi": hi, "params_mid": math.sqrt(lo * hi),
                         "gamma": -mag if neg else mag})
            vint[f"{name}-{i}"] = vint[f"{name}-{i + 1}"] = year
    v = pd.Series(vint)
    return pd.DataFrame(rows), v, pd.Series("release date", index=v.index)


def _ladder(n_sizes, lo=1e8, hi=2e11, jitter=0.0, rng=None):
    x = np.linspace(np.log10(lo), np.log10(hi), n_sizes)
    if rng is not None:
        x = np.sort(x + rng.uniform(-jitter, jitter, n_sizes))
    s = 10 ** x
    return list(zip(s[:-1], s[1:]))


def _flip_families(flip_at=5e9, n_families=12, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    fams = []
    for f in range(n_families):
        ivs = []
        for lo, hi in _ladder(7, jitter=0.2, rng=rng):
            neg = math.sqrt(lo * hi) < flip_at
            if rng.random() < noise:
                neg = not neg
            ivs.append((lo, hi, neg))
        fams.append((f"F{f}", 2019 + 0.5 * f, ivs))
    return fams


def _status(res):
    return res.parts.set_index("part")["status"].to_dict()


# ---------------------------------------------------------------- the engine
@pytest.mark.filterwarnings("ignore:Dropped")
def test_conditional_logit_matches_statsmodels():
    from statsmodels.discrete.conditional_models import ConditionalLogit

    rng = np.random.default_rng(5)
    n_f, per = 15, 6
    codes = np.repeat(np.arange(n_f), per)
    Z = rng.normal(size=(n_f * per, 2))
    eta = 0.8 * Z[:, 0] - 0.5 * Z[:, 1] + rng.normal(size=n_f)[codes]
    y = (rng.random(n_f * per) < 1 / (1 + np.exp(-eta))).astype(float)
    S = _strata(y, Z, codes, n_f)
    theta, _ = conditional_logit(S, np.ones((1, n_f)), penalty_sd=1e6)
    ref = ConditionalLogit(y, Z, groups=codes).fit(disp=False)
    np.testing.assert_allclose(theta[0], ref.params, atol=1e-4)
    # ours is the (at least as good) maximum of statsmodels' own conditional likelihood
    model = ConditionalLogit(y, Z, groups=codes)
    assert model.loglike(theta[0]) >= model.loglike(np.asarray(ref.params)) - 1e-9


def test_weighted_penalised_fit_is_the_optimum_of_its_objective():
    """The objective written as a loop over families and subsets; the fit is its maximum."""
    rng = np.random.default_rng(2)
    codes = np.repeat(np.arange(5), [3, 4, 5, 4, 6])
    z = rng.normal(size=len(codes))
    y = (rng.random(len(codes)) < 0.5).astype(float)
    w = rng.uniform(0.5, 2, 5)

    def objective(b):
        total = 0.0
        for f in range(5):                                   # the slow way, on purpose
            idx = np.flatnonzero(codes == f)
            m = int(y[idx].sum())
            terms = [b * z[list(s)].sum() for s in itertools.combinations(idx, m)]
            total += w[f] * (b * (z[idx] * y[idx]).sum() - np.log(np.sum(np.exp(terms))))
        return total - 0.5 * b ** 2 / 4.0 ** 2

    S = _strata(y, z[:, None], codes, 5)
    theta, pen = conditional_logit(S, w[None, :])
    b = theta[0, 0]
    assert pen[0] == pytest.approx(objective(b), abs=1e-9)
    assert objective(b) >= max(objective(b - 1e-3), objective(b + 1e-3))


# ---------------------------------------------------------------- constructed verdicts
def test_true_within_family_flip_holds_and_is_located():
    iv, v, s = _table(_flip_families(flip_at=5e9))
    res = flip_test(iv, 3.5e9, claimed=CLAIMED, vintage=v, vintage_source=s, n_resamples=B, seed=0)
    st = _status(res)
    assert (st[1], st[2], st[4]) == ("pass", "pass", "pass") and res.verdict == "holds"
    assert res.beta.value < 0 and res.beta.ci[1] < 0 and res.p_value < 0.01
    lo, hi = res.breakpoint.ci
    assert lo <= 5e9 <= hi and 2.5e9 < res.breakpoint.value < 1e10
    assert res.majority["share_below"] > 0.5 > res.majority["share_above"]


def test_flip_at_a_far_size_is_located_there_not_at_the_claim():
    iv, v, s = _table(_flip_families(flip_at=4e10, noise=0.0))
    res = flip_test(iv, 3.5e9, claimed=CLAIMED, vintage=v, vintage_source=s, n_resamples=B, seed=0)
    assert res.breakpoint.ci[0] > CLAIMED[1]                # the profile finds 4e10, not 3.5e9
    assert "misses the claimed" in res.parts.set_index("part").loc[3, "reason"]


def test_pure_vintage_effect_does_not_hold():
    """Old families tax-signed at every size, new ones bonus-signed: no size effect."""
    rng = np.random.default_rng(1)
    fams = []
    for f in range(10):
        old = f < 6
        fams.append((f"V{f}", 2019 + f * 0.6, [(lo, hi, old) for lo, hi in _ladder(6, jitter=0.2, rng=rng)]))
    iv, v, s = _table(fams)
    res = flip_test(iv, 3.5e9, claimed=CLAIMED, vintage=v, vintage_source=s, n_resamples=B, seed=0)
    assert res.verdict == "does not hold"
    st = _status(res)
    assert st[1] == "fail" and st[2] == "fail" and res.beta.value == pytest.approx(0.0, abs=1e-9)


def test_family_composition_fools_the_pooled_test_not_the_flip_test():
    """Old families small and always tax-signed, new ones large and always bonus-signed: the
    pooled share test (the old verdict) 'holds' at 3.5B, the within-family test does not."""
    rng = np.random.default_rng(3)
    fams = [(f"Old{f}", 2020.0, [(lo, hi, True) for lo, hi in _ladder(5, 1e8, 8e9, 0.1, rng)]) for f in range(6)]
    fams += [(f"New{f}", 2024.0, [(lo, hi, False) for lo, hi in _ladder(5, 1e9, 1e11, 0.1, rng)]) for f in range(6)]
    iv, v, s = _table(fams)
    row, _, _ = phase_split_test(iv, 3.5e9, n_resamples=B, seed=0)
    assert row["verdict"] == "holds"                         # what the old headline said
    res = flip_test(iv, 3.5e9, claimed=CLAIMED, vintage=v, vintage_source=s, n_resamples=B, seed=0)
    assert res.verdict == "does not hold" and _status(res)[1] == "fail"
    # and the pooled difference is positive at nearly every split of the profile
    ok = res.profile[res.profile["n_families_spanning"] >= 2]
    assert (ok["pooled_difference"] > 0).mean() > 0.8


def test_flip_only_in_new_families_fails_the_vintage_part():
    rng = np.random.default_rng(4)
    fams = []
    for f in range(12):
        new = f >= 6
        ivs = [(lo, hi, (math.sqrt(lo * hi) < 5e9) if new else True) for lo, hi in _ladder(7, jitter=0.2, rng=rng)]
        fams.append((f"G{f}", 2019 + 0.5 * f, ivs))
    iv, v, s = _table(fams)
    res = flip_test(iv, 3.5e9, claimed=CLAIMED, vintage=v, vintage_source=s, n_resamples=B, seed=0)
    assert _status(res)[4] == "fail" and res.verdict == "does not hold"
    assert res.vintage["strata"]["older"]["n_informative"] == 0 or res.vintage["strata"]["older"]["beta"] >= 0


def test_bonus_to_tax_flip_fails():
    fams = [(n, y, [(lo, hi, not neg) for lo, hi, neg in ivs]) for n, y, ivs in _flip_families(noise=0.0)]
    iv, v, s = _table(fams)
    res = flip_test(iv, 3.5e9, vintage=v, vintage_source=s, n_resamples=B, seed=0)
    assert res.beta.value > 0 and _status(res)[1] == "fail" and res.verdict == "does not hold"


def test_no_vintage_leaves_part_four_undetermined():
    iv, _, _ = _table(_flip_families())
    res = flip_test(iv, 3.5e9, n_resamples=B, seed=0)
    assert _status(res)[4] == "undetermined" and res.verdict == "undetermined"


# ---------------------------------------------------------------- uncertainty of N_c
def test_propagating_nc_draws_widens_the_interval():
    iv, v, s = _table(_flip_families(noise=0.15, seed=7))
    fixed = flip_test(iv, 3.5e9, vintage=v, vintage_source=s, n_resamples=B, seed=0)
    draws = 10 ** np.random.default_rng(0).uniform(8.5, 11, 4000)
    prop = flip_test(iv, 3.5e9, vintage=v, vintage_source=s, n_c_draws=draws, n_resamples=B, seed=0)
    assert prop.propagated and not fixed.propagated
    assert prop.beta.value == fixed.beta.value                     # the point estimate is at N_c itself
    w = lambda e: e.ci[1] - e.ci[0]                                 # noqa: E731
    assert w(prop.beta) > w(fixed.beta)
    with pytest.raises(CapeError, match="not log10"):
        flip_test(iv, 3.5e9, n_c_draws=np.log10(draws), n_resamples=50)


# ---------------------------------------------------------------- vintage from the panel
def test_model_vintage_dates_and_tokens():
    f = pd.DataFrame({"model": ["a", "b", "c", "d", "e"],
                      "release_date": ["2020-01", "2022-07", "2024-01", None, None],
                      "tokens": [3e11, 1e12, 3e12, 2e12, None]})
    v, src, note = model_vintage(f)
    # a month is placed at its middle
    assert v["a"] == pytest.approx(2020 + 14 / 365.25) and v["b"] == pytest.approx(2022.5 + 14 / 365.25)
    assert src["d"] == "imputed from tokens" and 2022.5 < v["d"] < 2024.0
    assert math.isnan(v["e"]) and src["e"] == "" and "placed by pretraining tokens" in note
    v2, _, note2 = model_vintage(f.drop(columns=["release_date"]))
    assert v2.isna().all() and "too few models have both" in note2


# ---------------------------------------------------------------- settings, output
def test_bad_input():
    iv, _, _ = _table(_flip_families(n_families=3))
    for bad in (0, -1, float("nan"), "3.5B"):
        with pytest.raises(CapeError, match="n_c must be a positive"):
            flip_test(iv, bad, n_resamples=10)
    with pytest.raises(CapeError, match="claimed interval"):
        flip_test(iv, 3.5e9, claimed=(5e9, 1e9), n_resamples=10)


def test_same_seed_same_result_and_json():
    iv, v, s = _table(_flip_families(noise=0.2))
    a = flip_test(iv, 3.5e9, vintage=v, vintage_source=s, n_resamples=300, seed=3).to_dict()
    b = flip_test(iv, 3.5e9, vintage=v, vintage_source=s, n_resamples=300, seed=3).to_dict()
    c = flip_test(iv, 3.5e9, vintage=v, vintage_source=s, n_resamples=300, seed=4).to_dict()
    text = json.dumps(a, sort_keys=True, allow_nan=False, default=str)
    assert text == json.dumps(b, sort_keys=True, allow_nan=False, default=str)
    assert a["beta"]["ci"] != c["beta"]["ci"]
    assert "beta_distribution" not in a and a["verdict"] in ("holds", "does not hold", "undetermined")
