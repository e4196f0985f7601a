"""Tests of falsifiable predictions kept as data (cape.predictions) and `cape predictions`.

The shipped file holds paper B's seven predictions; their thresholds are checked against the
table in ../shared/docs/CLAIMS.md ("The seven falsifiable predictions of paper B"), copied
here so the tests run without ../shared. Rules are exercised on small hand-made panels whose
statistics are computed by hand (numpy) in the tests.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import yaml

from cape.errors import CapeError, InputError
from cape.predictions import (FORMAT, PredictionReport, builtin_predictions, combine_frames,
                              evaluate_predictions, load_predictions)
from conftest import FIXTURES, ROOT, cached_panel, fresh_panel, run_cli

PRED_FIXTURES = FIXTURES / "predictions"
SHIPPED = ROOT / "src" / "cape" / "predictions" / "data" / "paper-b.yaml"
BENCH = ["swe_bench_verified", "gpqa_diamond", "ifeval", "hle"]
SCOPE_END = dt.date(2026, 5, 31)  # "released after 2026-05" = after the month's last day
AFTER_2026 = dt.date(2027, 1, 15)  # past the 2026-12 deadlines
BEFORE_2026_END = dt.date(2026, 11, 21)  # before them


# --------------------------------------------------------------------- helpers
_panel = cached_panel
panel = fresh_panel


def m(model, lab, date, swe=None, gpqa=None, ifeval=None, hle=None, flags="", subset=""):
    """One row of a hand-made panel."""
    return {"model": model, "family": lab, "release_date": date, "flags": flags, "subset": subset,
            "swe_bench_verified": swe, "gpqa_diamond": gpqa, "ifeval": ifeval, "hle": hle}


#: the population before the scope: the h line is fitted on these (and only these)
REF = [
    m("Ref A", "Alpha", "2025-01", 50.0, 61.0),
    m("Ref B", "Alpha", "2025-03-10", 55.0, 63.0),
    m("Ref C", "Beta", "2025-06", 60.0, 68.5),
    m("Ref D", "Beta", "2025", 65.0, 70.0),
    m("Ref E", "DeepSeek", "2025-11", 70.0, 75.5),
    m("Ref F", "Google", "2026-02", 75.0, 77.0),
]
#: flagged post-cutoff models before the scope: kept out of the h line
FLAGGED = [
    m("Flagged", "Gamma", "2026-04", 90.0, 40.0, flags="post_cutoff;repeats_scores_of:Ref A"),
    m("Late", "Gamma", "2026-03-15", 85.0, 45.0, subset="post-cutoff"),
]


def frame(*rows, ref=True) -> pd.DataFrame:
    rows = (REF + FLAGGED if ref else []) + list(rows)
    df = pd.DataFrame(rows, columns=list(m("x", "x", None))).set_index("model")
    for b in BENCH:
        df[b] = df[b].astype(float)
    df.attrs["cape"] = {"panel": "hand", "benchmarks": list(BENCH)}
    return df


def ref_line() -> tuple[float, float]:
    x = np.array([r["swe_bench_verified"] for r in REF])
    y = np.array([r["gpqa_diamond"] for r in REF])
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def gpqa_for(swe: float, h: float) -> float:
    """The GPQA score that puts a model with this SWE score at residual h from REF's line."""
    a, b = ref_line()
    return a * swe + b + h


def h_of(swe: float, gpqa: float) -> float:
    a, b = ref_line()
    return gpqa - (a * swe + b)


def pred(statistics, pass_, fail, *, deadline="2026-12", scope=None, pid="T-1", defaults=True):
    """One prediction, written as a JSON prediction file and read back."""
    p = {"id": pid, "title": "a test prediction", "deadline": deadline, "statistics": statistics,
         "pass": pass_, "fail": fail}
    if scope is not None:
        p["scope"] = scope
    doc = {"format": FORMAT, "predictions": [p]}
    if defaults:
        doc["defaults"] = {"scope": {"released_after": "2026-05"}}
    return load_predictions(text=json.dumps(doc, indent=2), name="t.json")[0]


def evaluate(df, p, as_of):
    rep = evaluate_predictions(df, [p], as_of=as_of)
    assert isinstance(rep, PredictionReport) and len(rep.predictions) == 1
    return rep.predictions[0]


@lru_cache(maxsize=None)
def _builtin():
    return {p.id: p for p in builtin_predictions()}


def builtin(pid):
    return copy.deepcopy(_builtin()[pid])


def new_models(lab, swes, start_month=6, **more):
    """New releases after the scope, one a month from June 2026."""
    return [m(f"{lab} N{i + 1}", lab, f"2026-{start_month + i:02d}", s,
              **{k: v[i] for k, v in more.items()}) for i, s in enumerate(swes)]


def strict_json(result) -> dict:
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


# --------------------------------------------------------------------- 1. the shipped file
# (statistics, pass mode + conditions, fail mode + conditions, deadline, lab) per CLAIMS.md
CLAIMS = {
    "B-P1": ({"swe": {"kind": "spread", "benchmark": "swe_bench_verified", "top": 5},
              "gpqa": {"kind": "spread", "benchmark": "gpqa_diamond", "top": 5}},
             ("all", [("swe", "value", "<", 2), ("gpqa", "value", ">", 5)]),
             ("any", [("swe", "value", ">", 5)]), dt.date(2026, 12, 31), None),
    "B-P2": ({"r": {"kind": "pearson", "x": "gpqa_diamond", "y": "ifeval"}},
             ("all", [("r", "value", ">", 0.6), ("r", "n", ">=", 8)]),
             ("any", [("r", "value", "<", 0.3), ("r", "n", "<", 5)]), dt.date(2026, 12, 31), None),
    "B-P3": ({"h": {"kind": "h"}}, ("all", [("h", "max", "<", 0)]), ("any", [("h", "max", ">", 5)]),
             2, "DeepSeek"),
    "B-P4": ({"h": {"kind": "h"}}, ("all", [("h", "min", ">", 3)]), ("any", [("h", "min", "<", 0)]),
             2, "Google"),
    "B-P5": ({"r": {"kind": "pearson", "x": "swe_bench_verified", "y": "gpqa_diamond"}},
             ("all", [("r", "value", ">", 0.5), ("r", "n", ">=", 30)]),
             ("any", [("r", "value", "<", 0.3)]), dt.date(2027, 5, 31), None),
    "B-P6": ({"ifeval": {"kind": "spread", "benchmark": "ifeval", "top": 10},
              "hle": {"kind": "spread", "benchmark": "hle", "top": 10}},
             ("all", [("ifeval", "value", "<", 3), ("hle", "value", ">", 15)]),
             ("any", [("ifeval", "value", ">", 8)]), dt.date(2027, 12, 31), None),
    "B-P7": ({"r": {"kind": "pearson", "x": "swe_bench_verified", "y": "hle"}},
             ("all", [("r", "value", "<", 0), ("r", "n", ">=", 10)]),
             ("any", [("r", "value", ">", 0.3)]), dt.date(2026, 12, 31), None),
}


def _conds(rule):
    return [(c.stat, c.field, c.op, c.threshold) for c in rule.conditions]


def test_shipped_file_has_the_seven_predictions():
    preds = builtin_predictions()
    assert [p.id for p in preds] == [f"B-P{i}" for i in range(1, 8)]
    assert all(p.title for p in preds)
    assert all("arXiv:2605.18840" in p.source for p in preds)
    assert all("paper-b.yaml" in p.origin for p in preds)
    # the file on disk is the same file
    from_disk = load_predictions(SHIPPED)
    assert [p.id for p in from_disk] == [p.id for p in preds]
    assert from_disk[0].origin == str(SHIPPED)
    assert [(p.pass_rule.text, p.fail_rule.text, p.deadline, p.releases) for p in from_disk] == \
        [(p.pass_rule.text, p.fail_rule.text, p.deadline, p.releases) for p in preds]


@pytest.mark.parametrize("pid", sorted(CLAIMS))
def test_shipped_thresholds_match_claims(pid):
    stats_, (pmode, pconds), (fmode, fconds), deadline, lab = CLAIMS[pid]
    p = builtin(pid)
    assert p.statistics == stats_
    assert p.pass_rule.mode == pmode and _conds(p.pass_rule) == pconds
    assert p.fail_rule.mode == fmode and _conds(p.fail_rule) == fconds
    if isinstance(deadline, int):
        assert p.releases == deadline and p.deadline is None
    else:
        assert p.deadline == deadline and p.releases is None  # a month deadline is its last day
    assert p.lab == lab
    assert p.released_after == SCOPE_END  # every prediction is about releases after May 2026


def test_claims_table_agrees_when_shared_docs_exist():
    """The thresholds above are the ones of CLAIMS.md's table (when ../shared is present)."""
    claims = ROOT.parent / "shared" / "docs" / "CLAIMS.md"
    if not claims.is_file():
        pytest.skip("../shared/docs/CLAIMS.md is absent")
    text = claims.read_text(encoding="utf-8")
    section = text.split("## The seven falsifiable predictions of paper B", 1)[1]
    rows = [r for r in section.splitlines() if re.match(r"\|\s*\d\s*\|", r)][:7]
    assert len(rows) == 7
    assert "top-5 SWE spread < 2" in rows[0] and "GPQA spread > 5" in rows[0] and "spread > 5" in rows[0]
    assert "2026-12" in rows[0] and "2026-12" in rows[1] and "2026-12" in rows[6]
    assert "> 0.6" in rows[1] and "n >= 8" in rows[1] and "r < 0.3, or n < 5" in rows[1]
    assert "next 2 releases" in rows[2] and "h < 0 for both" in rows[2] and "h > +5 for either" in rows[2]
    assert "h > +3 for both" in rows[3] and "h < 0 for either" in rows[3]
    assert "2027-05" in rows[4] and "> 0.5 on >= 30" in rows[4] and "r < 0.3" in rows[4]
    assert "2027-12" in rows[5] and "spread < 3" in rows[5] and "spread > 15" in rows[5]
    assert "spread > 8" in rows[5]
    assert "< 0 with n >= 10" in rows[6] and "r > 0.3" in rows[6]
    assert "after May 2026" in section.split("|")[0]


def test_evaluate_defaults_to_builtin_and_accepts_string_dates():
    rep = evaluate_predictions(frame(), as_of="2026-11-21")
    assert [p.id for p in rep.predictions] == [f"B-P{i}" for i in range(1, 8)]
    assert rep.as_of == "2026-11-21" and rep.panel == "hand"
    assert list(rep.table.columns) == ["id", "title", "status", "provisional", "deadline", "reason"]
    assert "B-P3" in rep.summary()
    strict_json(rep)
    with pytest.raises(CapeError, match="as-of"):
        evaluate_predictions(frame(), as_of="21/11/2026")


# --------------------------------------------------------------------- 2. rules, by statistic
SPREAD = {"s": {"kind": "spread", "benchmark": "swe_bench_verified", "top": 3}}


@pytest.mark.parametrize("swes, as_of, status, provisional", [
    ([80.0, 81.0, 81.5, 60.0], AFTER_2026, "PASS", ""),  # top-3 spread 1.5 (all four: 21.5)
    ([80.0, 86.5, 84.0], AFTER_2026, "FAIL", ""),  # 6.5
    ([80.0, 83.0, 82.0], AFTER_2026, "UNDECIDED", ""),  # 3: between the bands
    ([80.0, 81.0, 81.5, 60.0], BEFORE_2026_END, "PENDING", "PASS"),
    ([80.0, 86.5, 84.0], BEFORE_2026_END, "PENDING", "FAIL"),
    ([80.0, 83.0, 82.0], BEFORE_2026_END, "PENDING", "UNDECIDED"),
    ([80.0, 81.0], AFTER_2026, "PENDING", ""),  # deadline passed, too few models for top 3
])
def test_spread_rule_statuses(swes, as_of, status, provisional):
    p = pred(SPREAD, {"all": ["s < 2"]}, {"any": ["s > 5"]})
    st = evaluate(frame(*new_models("Delta", swes)), p, as_of)
    assert (st.status, st.provisional) == (status, provisional)
    assert st.deadline_reached == (as_of > dt.date(2026, 12, 31))
    ev = st.evidence["s"]
    assert ev["n"] == len(swes)
    if len(swes) >= 3:
        top = sorted(swes, reverse=True)[:3]
        assert ev["value"] == pytest.approx(max(top) - min(top))
        names = {s: f"Delta N{i + 1}" for i, s in enumerate(swes)}
        assert ev["models"] == [names[s] for s in top]
    else:
        assert np.isnan(ev["value"]) and "the spread needs 3" in ev["note"]
        assert "too few qualifying models for s" in st.reason and "has passed" in st.reason
    if status == "PENDING" and provisional:
        assert "deadline 2026-12-31 not reached" in st.reason
    assert sorted(st.qualifying) == sorted(f"Delta N{i + 1}" for i in range(len(swes)))


PEARSON = {"r": {"kind": "pearson", "x": "swe_bench_verified", "y": "gpqa_diamond"}}
UP = [80.0, 82.0, 84.0, 86.0]


@pytest.mark.parametrize("swes, gpqas, as_of, status, provisional", [
    (UP, [85.0, 88.0, 90.0, 93.0], AFTER_2026, "PASS", ""),  # r ~ 0.99, n = 4
    (UP, [93.0, 90.0, 88.0, 85.0], AFTER_2026, "FAIL", ""),  # r ~ -0.99
    (UP[:3], [85.0, 88.0, 90.0], AFTER_2026, "UNDECIDED", ""),  # r > 0.6 but n = 3 < 4 (all)
    (UP, [85.0, 87.0, 84.0, 88.0], AFTER_2026, "UNDECIDED", ""),  # r ~ 0.42
    (UP, [85.0, 88.0, 90.0, 93.0], BEFORE_2026_END, "PENDING", "PASS"),
    (UP, [93.0, 90.0, 88.0, 85.0], BEFORE_2026_END, "PENDING", "FAIL"),
    (UP[:2], [85.0, 88.0], AFTER_2026, "PENDING", ""),  # r needs 3 models
    (UP[:2], [85.0, 88.0], BEFORE_2026_END, "PENDING", "PENDING"),
    ([80.0, 80.0, 80.0, 80.0], [85.0, 88.0, 90.0, 93.0], AFTER_2026, "PENDING", ""),  # r undefined
])
def test_pearson_rule_statuses(swes, gpqas, as_of, status, provisional):
    p = pred(PEARSON, {"all": ["r > 0.6", "r.n >= 4"]}, {"any": ["r < 0.3"]})
    rows = new_models("Delta", swes, gpqa=gpqas)
    rows.append(m("Delta no-gpqa", "Delta", "2026-06-15", 99.0))  # qualifies, but lacks GPQA
    st = evaluate(frame(*rows), p, as_of)
    assert (st.status, st.provisional) == (status, provisional)
    ev = st.evidence["r"]
    assert ev["n"] == len(swes)
    assert ev["models"] == [f"Delta N{i + 1}" for i in range(len(swes))]
    assert "Delta no-gpqa" in st.qualifying
    if len(swes) >= 3 and np.ptp(swes) > 0:
        assert ev["value"] == pytest.approx(np.corrcoef(swes, gpqas)[0, 1], abs=1e-12)
    else:
        assert np.isnan(ev["value"]) and ev["note"]
        if as_of == AFTER_2026:
            assert "too few qualifying models for r" in st.reason


def test_pearson_fail_rule_on_n_with_undefined_r_is_a_fail():
    """P2's fail rule 'r < 0.3 or r.n < 5' holds with r undefined but n = 2 (any: one is enough)."""
    p = builtin("B-P2")
    rows = new_models("Delta", [80.0, 82.0], gpqa=[85.0, 88.0], ifeval=[80.0, 85.0])
    st = evaluate(frame(*rows), p, AFTER_2026)
    assert st.status == "FAIL" and st.evidence["r"]["n"] == 2 and np.isnan(st.evidence["r"]["value"])
    assert "fail rule holds" in st.reason


@pytest.mark.parametrize("n, r_sign, status", [(8, 1, "PASS"), (6, 1, "UNDECIDED"), (8, -1, "FAIL"),
                                               (4, 1, "FAIL")])
def test_builtin_p2_thresholds(n, r_sign, status):
    gpqa = [80.0 + 2 * i for i in range(n)]
    ifeval = [85.0 + r_sign * (1.5 * i + (0.5 if i % 2 else 0.0)) for i in range(n)]
    rows = new_models("Delta", [70.0] * n, gpqa=gpqa, ifeval=ifeval)
    rows = [dict(r, release_date=f"2026-{6 + i // 6:02d}-{1 + i % 6:02d}") for i, r in enumerate(rows)]
    st = evaluate(frame(*rows), builtin("B-P2"), AFTER_2026)
    r = np.corrcoef(gpqa, ifeval)[0, 1]
    assert abs(r) > 0.9 and st.evidence["r"]["value"] == pytest.approx(r)
    assert st.evidence["r"]["n"] == n
    assert st.status == status


def test_builtin_p1_thresholds_are_strict_and_deadline_is_month_end():
    swes = [85.0, 85.5, 86.0, 86.5, 86.9, 50.0]  # top-5 spread 1.9 (< 2)
    gpqas = [80.0, 84.0, 86.0, 88.0, 90.0, 99.0]  # top-5 spread 99 - 84 = 15
    df = frame(*new_models("Delta", swes, gpqa=gpqas))
    p1 = builtin("B-P1")
    st = evaluate(df, p1, dt.date(2027, 1, 1))
    assert st.status == "PASS"
    assert st.evidence["swe"]["value"] == pytest.approx(1.9)
    assert st.evidence["gpqa"]["value"] == pytest.approx(15.0)
    assert st.evidence["gpqa"]["models"] == ["Delta N6", "Delta N5", "Delta N4", "Delta N3", "Delta N2"]
    # the deadline 2026-12 runs through 31 December
    last_day = evaluate(df, p1, dt.date(2026, 12, 31))
    assert (last_day.status, last_day.provisional, last_day.deadline_reached) == ("PENDING", "PASS", False)
    # a spread of exactly 2 is not "< 2", and not "> 5": undecided
    df.loc["Delta N5", "swe_bench_verified"] = 87.0
    assert evaluate(df, p1, dt.date(2027, 1, 1)).status == "UNDECIDED"
    df.loc["Delta N5", "swe_bench_verified"] = 90.5  # spread 5.5
    assert evaluate(df, p1, dt.date(2027, 1, 1)).status == "FAIL"


def test_builtin_p5_needs_thirty_models_and_p7_fails_on_positive_r():
    n = 30
    swes = [60.0 + i for i in range(n)]
    gpqas = [70.0 + 0.8 * i + (1.0 if i % 3 == 0 else 0.0) for i in range(n)]
    hles = [10.0 + 0.5 * i for i in range(n)]
    rows = [m(f"New {i}", f"Lab{i % 4}", f"2026-{6 + i % 6:02d}-{1 + i // 6:02d}", s, g, hle=h)
            for i, (s, g, h) in enumerate(zip(swes, gpqas, hles))]
    df = frame(*rows)
    assert evaluate(df, builtin("B-P5"), dt.date(2027, 6, 1)).status == "PASS"
    assert evaluate(df, builtin("B-P5"), dt.date(2027, 5, 31)).status == "PENDING"
    smaller = frame(*rows[:29])
    st = evaluate(smaller, builtin("B-P5"), dt.date(2027, 6, 1))
    assert st.status == "UNDECIDED" and st.evidence["r"]["n"] == 29
    p7 = evaluate(df, builtin("B-P7"), AFTER_2026)
    assert p7.status == "FAIL" and p7.evidence["r"]["value"] > 0.3


def test_builtin_p6_top_ten_spreads():
    ifevals = [90.0 + 0.25 * i for i in range(10)] + [40.0]  # top-10 spread 2.25
    hles = [10.0 + 2.0 * i for i in range(10)] + [99.0]  # top 10: 99, 28 .. 12 -> 87
    rows = [m(f"New {i}", "Delta", f"2026-{6 + i % 6:02d}-{1 + i // 6:02d}", ifeval=f, hle=h)
            for i, (f, h) in enumerate(zip(ifevals, hles))]
    st = evaluate(frame(*rows), builtin("B-P6"), dt.date(2028, 1, 1))
    assert st.evidence["ifeval"]["value"] == pytest.approx(2.25)
    assert st.evidence["hle"]["value"] == pytest.approx(99.0 - 12.0)
    assert st.status == "PASS"
    st = evaluate(frame(*rows[:9]), builtin("B-P6"), dt.date(2028, 1, 1))
    assert st.status == "PENDING" and "too few" in st.reason


# h: P3 (DeepSeek, pass h.max < 0, fail h.max > 5) and P4 (Google, pass h.min > 3, fail h.min < 0)
@pytest.mark.parametrize("pid, lab, hs, status, provisional", [
    ("B-P3", "DeepSeek", [-2.0, -0.5, 9.0], "PASS", ""),  # the third release does not count
    ("B-P3", "DeepSeek", [6.0, -3.0], "FAIL", ""),
    ("B-P3", "DeepSeek", [-3.0, 6.0, -1.0], "FAIL", ""),
    ("B-P3", "DeepSeek", [2.0, -1.0], "UNDECIDED", ""),
    ("B-P3", "DeepSeek", [-2.0], "PENDING", "PASS"),  # 1 of 2 releases
    ("B-P3", "DeepSeek", [7.0], "PENDING", "FAIL"),
    ("B-P4", "Google", [4.0, 6.0, -10.0], "PASS", ""),
    ("B-P4", "Google", [6.0, -1.0], "FAIL", ""),
    ("B-P4", "Google", [2.0, 5.0], "UNDECIDED", ""),
    ("B-P4", "Google", [5.0], "PENDING", "PASS"),
])
def test_h_rules_over_the_next_releases(pid, lab, hs, status, provisional):
    swes = [70.0 + 4 * i for i in range(len(hs))]
    rows = [m(f"{lab} new {i + 1}", lab, f"2026-{7 + i:02d}-{10 + i:02d}", s, gpqa_for(s, h))
            for i, (s, h) in enumerate(zip(swes, hs))]
    rows.reverse()  # the frame's order is not the release order
    rows.append(m("Other lab", "Alpha", "2026-06-20", 80.0, gpqa_for(80.0, -30.0)))
    st = evaluate(frame(*rows), builtin(pid), dt.date(2026, 11, 21))
    assert (st.status, st.provisional) == (status, provisional)
    counted = min(len(hs), 2)
    assert st.deadline_reached == (len(hs) >= 2)
    assert st.qualifying == [f"{lab} new {i + 1}" for i in range(counted)]
    ev = st.evidence["h"]
    assert ev["n"] == counted and ev["models"] == st.qualifying
    assert ev["values"] == pytest.approx(hs[:counted], abs=1e-9)
    assert ev["min"] == pytest.approx(min(hs[:counted])) and ev["max"] == pytest.approx(max(hs[:counted]))
    if len(hs) < 2:
        assert "1 of 2 qualifying release(s) so far" in st.reason


def test_h_is_the_residual_from_the_frozen_pre_scope_line():
    """h = y - (a x + b), a and b from numpy's polyfit of GPQA on SWE over the models outside the
    scope, leaving out post-cutoff-flagged (flag or subset), undated and too-coarse models."""
    extra_fit_noise = [
        m("Undated", "Alpha", None, 88.0, 50.0),
        m("Year 2026", "Beta", "2026", 40.0, 90.0),
    ]
    new = [m("DeepSeek X", "DeepSeek", "2026-08", 82.0, 80.0),
           m("DeepSeek Y", "DeepSeek", "2026-09-03", 66.0, 71.0),
           m("Google Z", "Google", "2026-07", 95.0, 20.0)]  # another lab's new release: not in the fit
    df = frame(*(extra_fit_noise + new))
    st = evaluate(df, builtin("B-P3"), dt.date(2026, 11, 21))
    a, b = ref_line()
    ev = st.evidence["h"]
    assert ev["line"]["n"] == len(REF)
    assert ev["line"]["slope"] == pytest.approx(a, abs=1e-9)
    assert ev["line"]["intercept"] == pytest.approx(b, abs=1e-9)
    expected = [80.0 - (a * 82.0 + b), 71.0 - (a * 66.0 + b)]
    assert ev["values"] == pytest.approx(expected, abs=1e-9)
    assert ev["models"] == ["DeepSeek X", "DeepSeek Y"]
    assert ev["mean"] == pytest.approx(np.mean(expected))
    # the exclusions matter: a fit with the flagged models would give other residuals
    xs = [r["swe_bench_verified"] for r in REF + FLAGGED]
    ys = [r["gpqa_diamond"] for r in REF + FLAGGED]
    a2, b2 = np.polyfit(xs, ys, 1)
    assert abs((80.0 - (a2 * 82.0 + b2)) - expected[0]) > 1.0
    # post-cutoff models before the scope are in neither the fit nor the qualifying set
    assert "Flagged" not in st.qualifying and "Late" not in st.qualifying


def test_h_needs_a_reference_line():
    rows = [m("Ref A", "Alpha", "2025-01", 50.0, 61.0), m("Ref B", "Alpha", "2025-02", 55.0, 63.0),
            m("DeepSeek X", "DeepSeek", "2026-08", 82.0, 80.0),
            m("DeepSeek Y", "DeepSeek", "2026-09", 84.0, 80.0)]
    st = evaluate(frame(*rows, ref=False), builtin("B-P3"), dt.date(2026, 11, 21))
    assert st.status == "PENDING" and st.deadline_reached
    assert "reference line needs 3+" in st.evidence["h"]["note"]
    assert "too few qualifying models for h" in st.reason


COUNT = {"c": {"kind": "count", "benchmark": "hle"}}


@pytest.mark.parametrize("hles, as_of, status, provisional", [
    ([30.0, 31.0, 32.0, None], AFTER_2026, "PASS", ""),
    ([30.0, None, None], AFTER_2026, "FAIL", ""),
    ([30.0, 31.0, None], AFTER_2026, "UNDECIDED", ""),
    ([30.0, 31.0, 32.0], BEFORE_2026_END, "PENDING", "PASS"),
    ([None, None], BEFORE_2026_END, "PENDING", "FAIL"),
])
def test_count_rule_statuses(hles, as_of, status, provisional):
    p = pred({**COUNT, "all_": {"kind": "count"}}, {"all": ["c >= 3"]}, {"any": ["c <= 1"]})
    rows = new_models("Delta", [80.0] * len(hles), hle=hles)
    st = evaluate(frame(*rows), p, as_of)
    assert (st.status, st.provisional) == (status, provisional)
    with_hle = [f"Delta N{i + 1}" for i, h in enumerate(hles) if h is not None]
    assert st.evidence["c"]["value"] == len(with_hle) == st.evidence["c"]["n"]
    assert st.evidence["c"]["models"] == with_hle
    assert st.evidence["all_"]["value"] == len(hles)  # without a benchmark: every qualifying model


@pytest.mark.parametrize("pass_mode, fail_mode, n_swe, n_hle, status", [
    ("any", "all", 2, 0, "PASS"),  # a >= 2 is enough for any
    ("all", "all", 2, 0, "UNDECIDED"),  # all needs b >= 2 too; fail (all) needs a < 2 too
    ("any", "all", 1, 0, "FAIL"),  # a < 2 and b < 2
    ("any", "all", 1, 2, "PASS"),  # b >= 2; fail needs both a < 2 and b < 2
    ("any", "any", 1, 2, "FAIL"),  # both rules hold: FAIL is checked first
    ("all", "any", 2, 2, "PASS"),
])
def test_rule_modes_all_and_any(pass_mode, fail_mode, n_swe, n_hle, status):
    stats_ = {"a": {"kind": "count", "benchmark": "swe_bench_verified"}, "b": {"kind": "count", "benchmark": "hle"}}
    p = pred(stats_, {pass_mode: ["a >= 2", "b >= 2"]}, {fail_mode: ["a < 2", "b < 2"]})
    n = max(n_swe, n_hle)
    rows = [m(f"New {i}", "Delta", f"2026-0{6 + i}", 80.0 if i < n_swe else None,
              hle=30.0 if i < n_hle else None) for i in range(n)]
    st = evaluate(frame(*rows), p, AFTER_2026)
    assert st.status == status
    assert (st.evidence["a"]["n"], st.evidence["b"]["n"]) == (n_swe, n_hle)
    joiner = " and " if pass_mode == "all" else " or "
    assert st.pass_rule == joiner.join(["a >= 2", "b >= 2"])


def test_undefined_statistic_is_pending_not_undecided():
    rows = new_models("Delta", [80.0, 81.0, 82.0, 83.0, 79.5], gpqa=[90.0, 92.0, 95.0, None, None])
    st = evaluate(frame(*rows), builtin("B-P1"), AFTER_2026)
    assert st.evidence["swe"]["value"] == pytest.approx(3.5)  # neither < 2 nor > 5
    assert np.isnan(st.evidence["gpqa"]["value"])  # 3 GPQA scores: the top-5 spread is undefined
    assert st.status == "PENDING"


def test_p3_does_not_pass_on_one_measured_release():
    rows = [m("DeepSeek A", "DeepSeek", "2026-07", 80.0, gpqa_for(80.0, -3.0)),
            m("DeepSeek B", "DeepSeek", "2026-08", 82.0)]  # no GPQA Diamond score
    st = evaluate(frame(*rows), builtin("B-P3"), dt.date(2026, 11, 21))
    assert st.deadline_reached and st.evidence["h"]["n"] == 1
    assert st.status != "PASS"


# --------------------------------------------------------------------- 3. scope and dates
COUNT_ALL = {"c": {"kind": "count"}}


def _scope_rows():
    return [
        m("May", "Beta", "2026-05", 80.0),
        m("May 31", "Beta", "2026-05-31", 80.0),
        m("Jun 1", "Beta", "2026-06-01", 80.0),
        m("Jun", "Alpha", "2026-06", 80.0),
        m("Year 2026", "Beta", "2026", 80.0),
        m("Year 2025", "Beta", "2025", 80.0),
        m("No date", "Beta", None, 80.0),
        m("Empty date", "Alpha", "", 80.0),
        m("Nov", "Beta", "2026-11-20", 80.0),
        m("Future", "Beta", "2026-12-05", 80.0),
    ]


def test_scope_dates_and_exclusions():
    p = pred(COUNT_ALL, {"all": ["c >= 1"]}, {"any": ["c < 0"]}, deadline="2027-06")
    st = evaluate(frame(*_scope_rows()), p, dt.date(2026, 11, 21))
    # after the scope month (May 2026) and on or before as_of
    assert sorted(st.qualifying) == ["Jun", "Jun 1", "Nov"]
    assert st.evidence["c"]["value"] == 3
    reasons = {e["model"]: e["reason"] for e in st.excluded}
    assert set(reasons) == {"Year 2026", "No date", "Empty date"}
    assert reasons["No date"] == "no release date" and reasons["Empty date"] == "no release date"
    assert "2026" in reasons["Year 2026"] and "coarse" in reasons["Year 2026"]
    assert "2026-05-31" in reasons["Year 2026"]
    assert st.scope == "released after 2026-05-31"
    # as_of moves the window: the December release counts once it has happened
    later = evaluate(frame(*_scope_rows()), p, dt.date(2026, 12, 5))
    assert sorted(later.qualifying) == ["Future", "Jun", "Jun 1", "Nov"]


def test_scope_after_a_day_and_a_lab():
    p = pred(COUNT_ALL, {"all": ["c >= 1"]}, {"any": ["c < 0"]}, deadline="2027-06",
             scope={"released_after": "2026-05-15", "lab": "Beta"})
    assert p.released_after == dt.date(2026, 5, 15) and p.lab == "Beta"
    rows = _scope_rows() + [m("May 20", "Beta", "2026-05-20", 80.0), m("May 10", "Beta", "2026-05-10", 80.0),
                            m("Alpha May 20", "Alpha", "2026-05-20", 80.0)]
    st = evaluate(frame(*rows), p, dt.date(2026, 11, 21))
    assert sorted(st.qualifying) == ["Jun 1", "May 20", "May 31", "Nov"]
    reasons = {e["model"]: e["reason"] for e in st.excluded}
    # only the lab's models are listed; "2026-05" straddles 15 May
    assert set(reasons) == {"May", "Year 2026", "No date"}
    assert "2026-05" in reasons["May"] and "2026-05-15" in reasons["May"]
    assert "lab Beta" in st.scope


def test_scope_without_released_after_takes_every_release_of_the_lab():
    p = pred(COUNT_ALL, {"all": ["c >= 1"]}, {"any": ["c < 0"]}, deadline="2027-06",
             scope={"lab": "Alpha"}, defaults=False)
    assert p.released_after is None
    st = evaluate(frame(*_scope_rows()), p, dt.date(2026, 11, 21))
    assert sorted(st.qualifying) == ["Empty date", "Jun", "Ref A", "Ref B"]
    assert st.excluded == []


def test_release_deadline_counts_only_releases_up_to_as_of():
    rows = [m("DeepSeek A", "DeepSeek", "2026-07", 80.0, gpqa_for(80.0, -1.0)),
            m("DeepSeek B", "DeepSeek", "2026-12-02", 82.0, gpqa_for(82.0, 8.0)),
            m("DeepSeek C", "DeepSeek", "2026", 82.0, gpqa_for(82.0, 8.0))]
    st = evaluate(frame(*rows), builtin("B-P3"), dt.date(2026, 11, 21))
    assert st.status == "PENDING" and st.provisional == "PASS" and st.qualifying == ["DeepSeek A"]
    assert [e["model"] for e in st.excluded] == ["DeepSeek C"]
    st = evaluate(frame(*rows), builtin("B-P3"), dt.date(2026, 12, 2))
    assert st.status == "FAIL" and st.qualifying == ["DeepSeek A", "DeepSeek B"]


def test_other_labs_releases_do_not_count_for_a_lab_prediction():
    rows = new_models("Google", [80.0, 82.0], gpqa=[99.0, 99.0])
    st = evaluate(frame(*rows), builtin("B-P3"), dt.date(2026, 11, 21))
    assert st.status == "PENDING" and st.qualifying == [] and st.evidence["h"]["n"] == 0
    assert "0 of 2 qualifying release(s) so far" in st.reason
    st4 = evaluate(frame(*rows), builtin("B-P4"), dt.date(2026, 11, 21))
    assert st4.qualifying == ["Google N1", "Google N2"] and st4.status == "PASS"


# --------------------------------------------------------------------- 4. a deadline with no data
def test_past_deadline_without_data_is_pending_not_fail():
    p = pred(PEARSON, {"all": ["r > 0.6"]}, {"any": ["r.n < 5"]}, deadline="2026-12")
    st = evaluate(frame(), p, dt.date(2027, 6, 1))
    assert st.status == "PENDING" and st.deadline_reached and st.provisional == ""
    assert "the deadline 2026-12-31 has passed" in st.reason and "no model qualifies" in st.reason
    assert st.qualifying == []
    c = pred(COUNT_ALL, {"all": ["c >= 1"]}, {"any": ["c < 1"]}, deadline="2026-12")
    st = evaluate(frame(), c, dt.date(2027, 6, 1))
    assert st.status == "PENDING" and "no model qualifies" in st.reason


def test_shipped_predictions_long_after_their_deadlines_on_the_shipped_panel():
    rep = evaluate_predictions(panel("paper-frontier"), as_of=dt.date(2028, 1, 1))
    by = {p.id: p for p in rep.predictions}
    assert all(p.status == "PENDING" for p in rep.predictions)
    for pid in ("B-P1", "B-P2", "B-P5", "B-P6", "B-P7"):
        assert by[pid].deadline_reached
        assert "has passed" in by[pid].reason and "no model qualifies" in by[pid].reason
        assert by[pid].qualifying == []
    for pid in ("B-P3", "B-P4"):
        assert not by[pid].deadline_reached and "0 of 2" in by[pid].reason
    strict_json(rep)


# --------------------------------------------------------------------- 5. malformed files
BASE = """\
format: cape-predictions/1
source: a test file
defaults:
  scope: {released_after: 2026-05}
predictions:
  - id: U-1
    title: first
    deadline: 2026-12
    statistics:
      swe: {kind: spread, benchmark: swe_bench_verified, top: 3}
    pass:
      all:
        - "swe < 2"
    fail:
      any:
        - "swe > 5"
  - id: U-2
    title: second
    scope: {lab: Beta}
    deadline: {releases: 2}
    statistics:
      r: {kind: pearson, x: swe_bench_verified, y: gpqa_diamond}
      h: {kind: h}
    pass:
      all:
        - "r > 0.5"
        - "h.max < 0"
    fail:
      any:
        - "r < 0.3"
"""


def edit(line_no: int, new: str, text: str = BASE) -> str:
    lines = text.splitlines()
    lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


def test_base_file_is_valid():
    preds = load_predictions(text=BASE, name="t.yaml")
    assert [p.id for p in preds] == ["U-1", "U-2"]
    assert preds[1].lab == "Beta" and preds[1].releases == 2 and preds[1].released_after == SCOPE_END
    assert preds[0].source == "a test file" and preds[0].origin == "t.yaml"
    assert preds[1].pass_rule.text == "r > 0.5 and h.max < 0"


@pytest.mark.parametrize("line_no, new, where, message", [
    (13, '        - "swe << 2"', "t.yaml:13, field 'predictions[0].pass.all[0]'", "is not a condition"),
    (16, '        - "swe"', "t.yaml:16, field 'predictions[0].fail.any[0]'", "is not a condition"),
    (27, '        - "h.value < 0"', "t.yaml:27, field 'predictions[1].pass.all[1]'", "has no field 'value'"),
    (27, '        - "h < 0"', "t.yaml:27, field 'predictions[1].pass.all[1]'", "has no field 'value'"),
    (26, '        - "r.max > 0.5"', "t.yaml:26, field 'predictions[1].pass.all[0]'", "has no field 'max'"),
    (30, '        - "q < 0.3"', "t.yaml:30, field 'predictions[1].fail.any[0]'",
     "'q' is not one of this prediction's statistics"),
    (10, "      swe: {kind: spreed, benchmark: swe_bench_verified, top: 3}",
     "t.yaml:10, field 'predictions[0].statistics.swe.kind'", "unknown kind 'spreed'"),
    (10, "      swe: {kind: spread, benchmark: swe_bench_verified, top: 1}",
     "t.yaml:10, field 'predictions[0].statistics.swe.top'", "top must be an integer >= 2"),
    (10, "      swe: {kind: spread, top: 3}", "t.yaml:10, field 'predictions[0].statistics.swe'",
     "needs 'benchmark'"),
    (22, "      r: {kind: pearson, x: swe_bench_unverified, y: gpqa_diamond}",
     "t.yaml:22, field 'predictions[1].statistics.r.x'", "unknown benchmark 'swe_bench_unverified'"),
    (23, "      h: {kind: h, top: 3}", "t.yaml:23, field 'predictions[1].statistics.h.top'",
     "unknown field 'top'"),
    (8, "    deadline: next year", "t.yaml:8, field 'predictions[0].deadline'", "'next year' is not a date"),
    (8, "    deadline: 2026-13", "t.yaml:8, field 'predictions[0].deadline'", "is not a date"),
    (20, "    deadline: {releases: 0}", "t.yaml:20, field 'predictions[1].deadline'", "N >= 1"),
    (20, "    deadline: {releases: 2, month: 3}", "t.yaml:20, field 'predictions[1].deadline'", "N >= 1"),
    (17, "  - id: U-1", "t.yaml:17, field 'predictions[1].id'", "duplicate prediction id 'U-1'"),
    (18, "    titel: second", "t.yaml:18, field 'predictions[1].titel'", "unknown field 'titel'"),
    (19, "    scope: {lab: Beta, labs: X}", "t.yaml:19, field 'predictions[1].scope.labs'",
     "unknown scope field 'labs'"),
    (29, "      some:", "t.yaml:28, field 'predictions[1].fail'", "fail is {all: [conditions]}"),
    (1, "format: cape-predictions/9", "t.yaml:1, field 'format'", "unknown format 'cape-predictions/9'"),
])
def test_malformed_file_names_file_line_and_field(line_no, new, where, message):
    with pytest.raises(InputError) as exc:
        load_predictions(text=edit(line_no, new), name="t.yaml")
    text = str(exc.value)
    assert text.startswith(where + ": "), text
    assert message in text
    assert "\n" not in text


def test_malformed_error_location_attributes_and_path_label(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(edit(26, '        - "r.max > 0.5"'), encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_predictions(f)
    assert exc.value.location.file == f"{f}:26"
    assert exc.value.location.field == "predictions[1].pass.all[0]"
    assert str(exc.value).startswith(f"{f}:26, field 'predictions[1].pass.all[0]': ")
    with pytest.raises(CapeError, match="cannot read prediction file"):
        load_predictions(tmp_path / "absent.yaml")


def test_bad_yaml_syntax_names_the_line():
    text = edit(10, "      swe: {kind: spread, benchmark: swe_bench_verified, top: 3")
    with pytest.raises(InputError) as exc:
        load_predictions(text=text, name="t.yaml")
    assert str(exc.value).startswith("t.yaml:11: not valid YAML/JSON")


@pytest.mark.parametrize("text, where", [
    ("format: cape-predictions/1\nsource: x\n", "t.yaml:1: "),
    ("- id: U-1\n- id: U-2\n", "t.yaml:1: "),
    ("", "t.yaml: "),
])
def test_missing_predictions_list(text, where):
    with pytest.raises(InputError) as exc:
        load_predictions(text=text, name="t.yaml")
    assert str(exc.value).startswith(where) and "'predictions' list" in str(exc.value)


def test_empty_predictions_and_missing_fields():
    with pytest.raises(InputError, match=r"^t.yaml:2, field 'predictions': predictions is a non-empty list"):
        load_predictions(text="format: cape-predictions/1\npredictions: []\n", name="t.yaml")
    # drop U-1's fail rule (lines 14-16)
    lines = BASE.splitlines()
    text = "\n".join(lines[:13] + lines[16:]) + "\n"
    with pytest.raises(InputError, match=r"^t.yaml:6, field 'predictions\[0\]': missing field 'fail'"):
        load_predictions(text=text, name="t.yaml")
    with pytest.raises(InputError, match=r"^t.yaml:\d+, field 'predictions\[1\].pass.all': a rule lists"):
        load_predictions(text=BASE.replace('        - "r > 0.5"\n        - "h.max < 0"\n', "        []\n"),
                         name="t.yaml")


def test_json_file_is_read_like_yaml_and_errors_name_the_json_line(tmp_path):
    doc = yaml.safe_load(BASE)
    text = json.dumps(doc, indent=2)
    f = tmp_path / "mine.json"
    f.write_text(text, encoding="utf-8")
    from_json, from_yaml = load_predictions(f), load_predictions(text=BASE, name="t.yaml")
    key = lambda p: (p.id, p.title, p.statistics, p.pass_rule.text, p.fail_rule.text, p.deadline,  # noqa: E731
                     p.releases, p.released_after, p.lab, p.source)
    assert [key(p) for p in from_json] == [key(p) for p in from_yaml]
    doc["predictions"][1]["statistics"]["r"]["x"] = "no_such_bench"
    bad = json.dumps(doc, indent=2)
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "no_such_bench" in t)
    with pytest.raises(InputError) as exc:
        load_predictions(text=bad, name="mine.json")
    assert str(exc.value).startswith(f"mine.json:{line}, field 'predictions[1].statistics.r.x': ")


@pytest.mark.parametrize("new", ["    scope: Beta", "    scope: [Beta]"], ids=["string", "list"])
def test_scope_that_is_not_a_mapping(new):
    with pytest.raises(InputError) as exc:
        load_predictions(text=edit(19, new), name="t.yaml")
    assert str(exc.value).startswith("t.yaml:19, field 'predictions[1].scope': ")


def test_kind_that_is_a_list():
    with pytest.raises(InputError) as exc:
        load_predictions(text=edit(10, "      swe: {kind: [spread], benchmark: swe_bench_verified, top: 3}"),
                         name="t.yaml")
    assert str(exc.value).startswith("t.yaml:10, field 'predictions[0].statistics.swe.kind': ")


def test_impossible_calendar_deadline():
    with pytest.raises(InputError) as exc:
        load_predictions(text=edit(8, "    deadline: 2026-02-30"), name="t.yaml")
    assert str(exc.value).startswith("t.yaml:8")


def test_releases_true_is_rejected():
    with pytest.raises(InputError) as exc:
        load_predictions(text=edit(20, "    deadline: {releases: true}"), name="t.yaml")
    assert str(exc.value).startswith("t.yaml:20, field 'predictions[1].deadline': ")


def test_error_in_defaults_points_at_defaults():
    with pytest.raises(InputError) as exc:
        load_predictions(text=edit(4, "  scope: {released_afer: 2026-05}"), name="t.yaml")
    assert str(exc.value).startswith("t.yaml:4, field 'defaults.scope.released_afer': ")


def test_json_with_tab_indentation():
    text = json.dumps(yaml.safe_load(BASE), indent="\t")
    assert [p.id for p in load_predictions(text=text, name="t.json")] == ["U-1", "U-2"]


# --------------------------------------------------------------------- 6. combine_frames
def _hand(name, rows):
    df = pd.DataFrame(rows, columns=["model", "family", "release_date", "swe_bench_verified",
                                     "gpqa_diamond"]).set_index("model")
    df.attrs["cape"] = {"panel": name, "benchmarks": [c for c in ("swe_bench_verified", "gpqa_diamond")
                                                      if df[c].notna().any()]}
    return df


def test_combine_frames_later_scores_win():
    a = _hand("a", [("X", "Alpha", "2025-01", 50.0, 60.0), ("Y", "Alpha", "2025-02", 55.0, 65.0)])
    b = _hand("b", [("X", "Alpha", "2025-01", 70.0, None), ("Z", "Beta", "2026-07", 80.0, 90.0)])
    out = combine_frames([a, b])
    assert sorted(out.index) == ["X", "Y", "Z"]
    assert out.loc["X", "swe_bench_verified"] == 70.0  # b's score wins
    assert out.loc["X", "gpqa_diamond"] == 60.0  # b has none: a's stays
    assert out.loc["Y", "swe_bench_verified"] == 55.0 and out.loc["Z", "gpqa_diamond"] == 90.0
    assert out.loc["Z", "family"] == "Beta" and out.loc["Z", "release_date"] == "2026-07"
    assert out.attrs["cape"]["panel"] == "a + b"
    assert out.attrs["cape"]["benchmarks"] == ["swe_bench_verified", "gpqa_diamond"]
    # the other order: a wins
    assert combine_frames([b, a]).loc["X", "swe_bench_verified"] == 50.0
    # inputs are untouched, and one frame is returned as is
    assert a.loc["X", "swe_bench_verified"] == 50.0 and len(a) == 2
    assert combine_frames([a]) is a
    with pytest.raises(CapeError, match="no panels"):
        combine_frames([])


def test_combine_frames_with_the_shipped_panel():
    base = panel("paper-frontier")
    n = len(base)
    new = _hand("new", [("DeepSeek V4 Pro", "DeepSeek", "2026-04-24", 12.0, None),
                        ("DeepSeek V5", "DeepSeek", "2026-07", 85.0, 87.0)])
    out = combine_frames([base, new])
    assert len(out) == n + 1
    assert out.loc["DeepSeek V4 Pro", "swe_bench_verified"] == 12.0
    assert out.loc["DeepSeek V4 Pro", "gpqa_diamond"] == base.loc["DeepSeek V4 Pro", "gpqa_diamond"]
    assert out.attrs["cape"]["panel"] == "paper-frontier + new"
    st = {p.id: p for p in evaluate_predictions(out, as_of="2026-11-21").predictions}
    assert st["B-P3"].qualifying == ["DeepSeek V5"] and st["B-P3"].status == "PENDING"


def test_combine_frames_with_model_columns_keys_on_model():
    a = pd.DataFrame({"model": ["A", "B"], "swe_bench_verified": [1.0, 2.0]})
    b = pd.DataFrame({"model": ["C"], "swe_bench_verified": [9.0]})
    out = combine_frames([a, b])
    models = out["model"].tolist() if "model" in out.columns else list(out.index)
    assert sorted(models) == ["A", "B", "C"]


# --------------------------------------------------------------------- 7. the CLI
def _json(r) -> dict:
    assert r.returncode == 0, r.stderr

    def no_nan(c):
        raise AssertionError(f"{c} in JSON output")
    return json.loads(r.stdout, parse_constant=no_nan)


@pytest.mark.slow
def test_cli_shipped_panel_all_pending(cape_home):
    r = run_cli("predictions", "--as-of", "2026-11-21", home=cape_home)
    assert r.returncode == 0, r.stderr
    assert "paper-frontier" in r.stdout and "2026-11-21" in r.stdout
    for i in range(1, 8):
        assert f"B-P{i}" in r.stdout
    assert "PENDING" in r.stdout and not any(s in r.stdout for s in ("PASS ", "FAIL ", "UNDECIDED"))
    d = _json(run_cli("predictions", "--as-of", "2026-11-21", "--json", home=cape_home))
    assert d["command"] == "predictions" and d["as_of"] == "2026-11-21" and d["panel"] == "paper-frontier"
    assert [p["id"] for p in d["predictions"]] == [f"B-P{i}" for i in range(1, 8)]
    assert {p["status"] for p in d["predictions"]} == {"PENDING"}
    assert all(p["qualifying"] == [] for p in d["predictions"])  # nothing after May 2026


NEW_RELEASES = [  # model, lab, date, swe, gpqa
    ("DeepSeek V5.1", "DeepSeek", "2026-09-02", 88.0, 90.0),
    ("DeepSeek V5", "DeepSeek", "2026-07-10", 85.0, 87.0),
    ("DeepSeek V5.2", "DeepSeek", "2026-10-20", 80.0, 97.0),  # a third release: does not count
    ("Gemini 4 Pro", "Google", "2026-08", 82.0, 95.0),
    ("Gemini 4 Flash", "Google", "2026-10-05", 80.0, 86.0),
    ("Gemini 4 Ultra", "Google", "2026-12-01", 90.0, 70.0),  # after --as-of: does not count
]


def _frontier_line():
    f = panel("paper-frontier")
    post = (f["subset"].fillna("") == "post-cutoff") | f["flags"].fillna("").str.contains("post_cutoff")
    fit = f[~post & f["swe_bench_verified"].notna() & f["gpqa_diamond"].notna()]
    return np.polyfit(fit["swe_bench_verified"].astype(float), fit["gpqa_diamond"].astype(float), 1)


@pytest.mark.slow
def test_cli_ingest_new_releases_then_evaluate(cape_home, tmp_path):
    csv = tmp_path / "new.csv"
    csv.write_text("model,family,release_date,swe_bench_verified,gpqa_diamond\n"
                   + "".join(f"{a},{b},{c},{d},{e}\n" for a, b, c, d, e in NEW_RELEASES), encoding="utf-8")
    r = run_cli("ingest", str(csv), "--panel", "new", "--source", "test releases", home=cape_home)
    assert r.returncode == 0, r.stderr
    d = _json(run_cli("predictions", "--panel", "paper-frontier", "--panel", "new", "--as-of", "2026-11-21",
                      "--json", home=cape_home))
    assert d["panel"] == "paper-frontier + new"
    by = {p["id"]: p for p in d["predictions"]}
    # by hand: the frozen line, the first two releases of each lab up to 21 Nov 2026, the rules
    a, b = _frontier_line()
    h = {name: gpqa - (a * swe + b) for name, _, _, swe, gpqa in NEW_RELEASES}
    counted = {}
    for lab in ("DeepSeek", "Google"):
        rel = sorted((r_ for r_ in NEW_RELEASES if r_[1] == lab and r_[2] <= "2026-11-21"), key=lambda r_: r_[2])
        counted[lab] = [r_[0] for r_ in rel[:2]]
    ds = [h[n] for n in counted["DeepSeek"]]
    gg = [h[n] for n in counted["Google"]]
    p3 = "FAIL" if max(ds) > 5 else "PASS" if max(ds) < 0 else "UNDECIDED"
    p4 = "FAIL" if min(gg) < 0 else "PASS" if min(gg) > 3 else "UNDECIDED"
    assert (p3, p4) == ("PASS", "FAIL")  # the data above is chosen to give these
    assert by["B-P3"]["status"] == p3 and by["B-P4"]["status"] == p4
    assert by["B-P3"]["qualifying"] == counted["DeepSeek"] == ["DeepSeek V5", "DeepSeek V5.1"]
    assert by["B-P4"]["qualifying"] == counted["Google"] == ["Gemini 4 Pro", "Gemini 4 Flash"]
    assert by["B-P3"]["evidence"]["h"]["values"] == pytest.approx(ds, abs=1e-6)
    assert by["B-P4"]["evidence"]["h"]["values"] == pytest.approx(gg, abs=1e-6)
    assert by["B-P3"]["deadline_reached"] and by["B-P4"]["deadline_reached"]
    # the date-deadline predictions are still pending; P1 already looks like a FAIL (SWE spread 8)
    assert by["B-P1"]["status"] == "PENDING" and by["B-P1"]["provisional"] == "FAIL"
    assert by["B-P1"]["evidence"]["swe"]["value"] == pytest.approx(88.0 - 80.0)
    assert "Gemini 4 Ultra" not in by["B-P1"]["qualifying"] and len(by["B-P1"]["qualifying"]) == 5


def _frontier_count_after(month: str) -> int:
    f = panel("paper-frontier")
    dates = f["release_date"].dropna().astype(str)
    return int(sum(len(d) >= 7 and d[:7] > month for d in dates))


@pytest.mark.slow
def test_cli_user_prediction_file(cape_home):
    r = run_cli("predictions", "--file", str(PRED_FIXTURES / "user.yaml"), "--no-builtin", "--as-of",
                "2026-11-21", "--json", home=cape_home)
    d = _json(r)
    assert [p["id"] for p in d["predictions"]] == ["U-COUNT", "U-LATER"]
    cnt, later = d["predictions"]
    n = _frontier_count_after("2026-01")
    assert n >= 10
    assert cnt["status"] == "PASS" and cnt["evidence"]["c"]["value"] == n
    assert cnt["origin"] == str(PRED_FIXTURES / "user.yaml")
    assert later["status"] == "PENDING" and later["provisional"] in {"PASS", "FAIL"}
    assert not later["deadline_reached"]


@pytest.mark.slow
@pytest.mark.parametrize("args, pattern", [
    (["--file", str(PRED_FIXTURES / "bad_field.yaml")],
     re.escape(f"error: {PRED_FIXTURES / 'bad_field.yaml'}:12, field 'predictions[0].pass.all[1]': ")
     + ".*no field 'max'"),
    (["--file", str(PRED_FIXTURES / "user.yaml"), "--file", str(PRED_FIXTURES / "user.yaml")],
     r"error: prediction id\(s\) U-COUNT, U-LATER appear more than once"),
    (["--no-builtin"], r"error: no predictions to evaluate"),
    (["--as-of", "21.11.2026"], r"error: --as-of takes a date YYYY-MM-DD"),
], ids=["malformed-file", "duplicate-ids", "no-predictions", "bad-as-of"])
def test_cli_errors_are_one_line(cape_home, args, pattern):
    r = run_cli("predictions", *args, home=cape_home)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert re.match(pattern, lines[0]), lines[0]
    assert r.stdout == ""
