"""Review fixes (issue 12, audit and analysis defects): verdict flags that are numpy bools,
the A4 sign-change test (direction, place, clean data, guard, contradicting families),
Spearman's permutation p, no bootstrap interval for 3 models, N_c extrapolation flags, the
saturation wording, and the terminal audit table (short columns, --verbose, claims text
printed as data). Every "holds" test has its constructed opposite."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

import cape
from cape.analysis import coupling as cp
from cape.analysis import gamma, nc
from cape.analysis.saturation import saturation
from cape.audit import ANALYSES, Claim, Computation, Tolerance, run_audit, verdict
from cape.audit.analyses import Context
from cape.cli import app
from conftest import cached_panel

INTERVAL = (2.9e9, 13.4e9)


def _claim(values=None):
    return Claim("X1", "A", "a claim", "published", values or {}, Tolerance(0.1, False) if values else None,
                 "family_pearson", {})


# ------------------------------------------------------------ 1. numpy bools in verdict()
@pytest.mark.parametrize("flag, expected", [
    (np.False_, "reproduced but fragile"), (False, "reproduced but fragile"),
    (np.True_, "reproduced"), (True, "reproduced"), (None, "reproduced")])
def test_verdict_reads_numpy_and_python_sound_flags(flag, expected):
    comp = Computation({"r": -0.99}, sound="corrected data: swing -0.43", sound_agrees=flag)
    assert verdict(_claim({"r": -0.99}), comp)[0] == expected
    comp = Computation(holds=True, text="holds", sound="x", sound_agrees=flag)
    assert verdict(_claim(), comp)[0] == expected


@pytest.mark.parametrize("flag, expected", [
    (np.False_, "not reproduced"), (False, "not reproduced"), (np.True_, "reproduced"),
    (True, "reproduced"), (None, "not computable")])
def test_verdict_reads_numpy_and_python_holds(flag, expected):
    assert verdict(_claim(), Computation(holds=flag, text="t"))[0] == expected


def test_computation_flags_are_python_bools_even_when_assigned_later():
    c = Computation(holds=np.True_, sound_agrees=np.False_)
    assert c.holds is True and c.sound_agrees is False
    c.sound_agrees = np.bool_(False)
    assert c.sound_agrees is False
    c.holds = float("nan")
    assert c.holds is None


def test_lab_swing_returns_a_python_bool_and_b4_is_fragile():
    comp = ANALYSES["lab_swing"](Context(n_resamples=200), lab="DeepSeek")
    assert type(comp.sound_agrees) is bool and comp.sound_agrees is False
    res = run_audit(only=["B4"], n_resamples=200, replication=None)
    row = res.table.iloc[0]
    assert row["verdict"] == "reproduced but fragile"
    assert "corrected data: swing -0.43" in row["reason"]


# ------------------------------------------------------------ 2. A4: the sign change at N_c
def _family(name, sizes, steps, start=(30.0, 40.0)):
    """Rows of one family: sizes (parameters) and one (dA, dB) step per interval."""
    a, b = start
    rows = [(f"{name}-0", name, sizes[0], a, b)]
    for i, (da, db) in enumerate(steps, start=1):
        a, b = a + da, b + db
        rows.append((f"{name}-{i}", name, sizes[i], a, b))
    return rows


def _panel(*families) -> pd.DataFrame:
    rows = [r for f in families for r in f]
    df = pd.DataFrame(rows, columns=["model", "family", "params", "hellaswag", "truthfulqa"]).set_index("model")
    df.attrs["cape"] = {"panel": "constructed"}
    return df


SIZES = [1e9, 2e9, 4e9, 8e9, 16e9, 32e9]          # interval midpoints 1.41B ... 22.6B
FLIP = [(5, -2), (5, -2), (5, 2), (5, 2), (5, 2)]  # tax, tax | bonus ...: change at 4B
REVERSED = [(5, 2), (5, 2), (5, -2), (5, -2), (5, -2)]


def _test(frame, guard=1.0, interval=INTERVAL):
    return nc.sign_change_test(gamma.local_coupling(frame, guard=guard), interval)


def test_a4_tax_to_bonus_flip_inside_the_interval_holds():
    t = _test(_panel(*(_family(f"F{i}", SIZES, FLIP) for i in range(3))))
    assert t.holds and t.supporting == ["F0", "F1", "F2"] and not t.contradicting
    row = t.table.iloc[0]
    assert row["directions"] == ["up"] and row["changes"][0] == pytest.approx(4e9, rel=1e-6)


def test_a4_bonus_to_tax_flip_fails():
    t = _test(_panel(*(_family(f"F{i}", SIZES, REVERSED) for i in range(3))))
    assert not t.holds and t.contradicting == ["F0", "F1", "F2"] and not t.supporting
    assert "bonus -> tax at 4B" in t.table.iloc[0]["detail"]


def test_a4_flip_far_outside_the_interval_fails():
    sizes = [1e9, 1e10, 1e11, 1e12, 1e13]           # flip at 1e11, far above 13.4B
    t = _test(_panel(*(_family(f"F{i}", sizes, [(5, -2), (5, -2), (5, 2), (5, 2)]) for i in range(3))))
    assert not t.holds and not t.supporting
    assert "above the interval" in t.table.iloc[0]["detail"]
    # a change just above the interval, with nothing else against the claim, does not support it
    late = [(5, -2), (5, -2), (5, -2), (5, -2), (5, 2)]  # change between 11.3B and 22.6B: 16B
    t = _test(_panel(*(_family(f"F{i}", SIZES, late) for i in range(3))))
    assert not t.holds and not t.contradicting and set(t.table["status"]) == {"no change in the interval"}


def test_a4_flip_from_a_tiny_step_fails_under_the_guard():
    tiny = [(5, -2), (5, -2), (0.8, 0.5)]              # gamma +0.63 from a 0.8-point dA step
    frame = _panel(_family("F", [1e9, 3e9, 5e9, 9e9], tiny))   # midpoints 1.73B, 3.87B, 6.71B
    assert _test(frame, guard=0.5).holds               # the flip rests on that step only
    t = _test(frame, guard=1.0)
    assert not t.holds and t.table.iloc[0]["status"] == "no change in the interval"
    assert t.table.iloc[0]["detail"] == "always tax-signed"
    assert t.dropped[["model_lo", "model_hi"]].values.tolist() == [["F-2", "F-3"]]


def test_a4_contradicting_families_must_be_a_minority():
    ok = [_family(f"F{i}", SIZES, FLIP) for i in range(3)]
    bad = [_family(f"G{i}", SIZES, REVERSED) for i in range(2)]
    assert _test(_panel(*ok, bad[0])).holds            # 3 support, 1 contradicts
    t = _test(_panel(ok[0], *bad))                     # 1 supports, 2 contradict
    assert not t.holds and t.contradicting == ["G0", "G1"]
    # bonus-signed below the interval contradicts even without a change
    qwen = _family("Q", [5e8, 1e9, 2e9], [(5, 2), (5, 2)])
    t = _test(_panel(*ok, qwen))
    assert t.table.set_index("family").loc["Q", "status"] == "contradicts"


class _FrameContext(Context):
    def __init__(self, frame):
        super().__init__(n_resamples=100)
        self.frame = frame

    def panel(self, name, corrected=False, clean=False):
        return self.frame


def test_a4_audit_analysis_on_constructed_panels():
    claim = Claim("A4", "A", "sign change", "tax below, bonus above", {}, None, "family_sign_changes", {})
    args = {"panel": "constructed", "interval": ["2.9e9", 13.4e9], "guard": 1.0, "clean": True}
    good = ANALYSES["family_sign_changes"](_FrameContext(_panel(*(_family(f"F{i}", SIZES, FLIP)
                                                                  for i in range(3)))), **args)
    assert good.holds is True and verdict(claim, good)[0] == "reproduced"
    assert "3 of 3 families" in good.text and "F0 (tax -> bonus at 4B)" in good.text
    bad = ANALYSES["family_sign_changes"](_FrameContext(_panel(*(_family(f"F{i}", SIZES, REVERSED)
                                                                 for i in range(3)))), **args)
    assert bad.holds is False and verdict(claim, bad)[0] == "not reproduced"
    assert "Contradicting (3)" in bad.text


def test_a4_on_the_bundled_panel():
    frame = cached_panel("paper-base")
    res = run_audit(only=["A4"], n_resamples=100, replication=None)
    row = res.table.iloc[0]
    assert row["verdict"] == "not reproduced"
    assert "supporting: Falcon" in row["brief"] and "Qwen2.5" in row["brief"]
    assert "Cerebras-GPT-6.7B -> Cerebras-GPT-13B" in row["paper"]
    clean_frame = cape.load_panel("paper-base", clean=True)
    clean = _test(clean_frame)
    rows = clean.table.set_index("family")
    assert rows.loc["Pythia", "status"] == "no change in the interval"      # GPT-J-6B removed
    assert rows.loc["Pythia", "detail"] == "always tax-signed"
    assert rows.loc["Qwen2.5", "status"] == "contradicts"
    assert rows.loc["Cerebras-GPT", "status"] == "no change in the interval"
    raw = _test(frame).table.set_index("family")                              # GPT-J-6B as Pythia
    assert raw.loc["Pythia", "status"] == "contradicts" and "bonus -> tax" in raw.loc["Pythia", "detail"]
    half = _test(clean_frame, guard=0.5).table.set_index("family")
    assert half.loc["Cerebras-GPT", "status"] == "supports"                   # the 0.65-point step


# ------------------------------------------------------------ 3. Spearman's permutation p
def _scipy_spearman_p(x, y, n_resamples=np.inf, seed=0):
    ry = sps.rankdata(y)

    def stat(a, axis=-1):
        ra = sps.rankdata(a, axis=axis)
        ra = ra - ra.mean(axis=axis, keepdims=True)
        r2 = ry - ry.mean()
        return (ra * r2).sum(axis=axis) / np.sqrt((ra * ra).sum(axis=axis) * (r2 * r2).sum())

    return sps.permutation_test((np.asarray(x, float),), stat, permutation_type="pairings",
                                n_resamples=n_resamples, vectorized=True, rng=seed).pvalue


def _coupling_frame(*fams):
    rows = []
    for name, hs, tq in fams:
        rows += [(f"{name}-{i}", name, 1e8 * 2 ** i, h, t) for i, (h, t) in enumerate(zip(hs, tq))]
    return pd.DataFrame(rows, columns=["model", "family", "params", "hellaswag", "truthfulqa"]).set_index("model")


def test_spearman_p_is_exact_for_small_families():
    a4 = ([30, 35, 40, 45], [40, 39, 38, 37])                              # rho = -1 with n = 4
    a7 = ([30, 31, 33, 36, 40, 41, 47], [40, 41, 39, 39, 37, 38, 35])      # with a tie
    res = cp.family_coupling(_coupling_frame(("A", *a4), ("B", *a7)), n_bootstrap=200, seed=0)
    t = res.table.set_index("family")
    assert t.loc["A", "spearman"] == pytest.approx(-1.0)
    assert t.loc["A", "spearman_p"] == pytest.approx(2 / 24)              # not 0 (the t approximation)
    assert t.loc["A", "spearman_p"] == pytest.approx(_scipy_spearman_p(*a4))
    assert t.loc["B", "spearman_p"] == pytest.approx(_scipy_spearman_p(*a7))
    assert set(t.loc[["A", "B"], "spearman_method"]) == {"exact"}


def test_spearman_p_is_monte_carlo_above_nine():
    rng = np.random.default_rng(1)
    h = np.sort(rng.normal(50, 10, 12))
    q = 40 - 0.3 * h + rng.normal(0, 2, 12)
    res = cp.family_coupling(_coupling_frame(("C", h, q)), n_bootstrap=200, n_permutations=9_999, seed=0)
    row = res.table.iloc[0]
    assert row["spearman_method"].startswith("Monte Carlo")
    ref = _scipy_spearman_p(h, q, n_resamples=20_000)
    assert row["spearman_p"] == pytest.approx(ref, abs=0.01)


# ------------------------------------------------------------ 4. no interval for 3 models
def test_three_models_get_no_bootstrap_interval_but_four_do():
    res = cp.family_coupling(_coupling_frame(("T", [30, 35, 40], [40, 38, 37.5]),
                                             ("F", [30, 35, 40, 45], [40, 38, 37.5, 36])),
                             n_bootstrap=500, seed=0)
    t = res.table.set_index("family")
    assert math.isnan(t.loc["T", "ci_low"]) and math.isnan(t.loc["T", "ci_high"])
    assert "n = 3: too few models for a bootstrap interval (10 distinct resamples)" in t.loc["T", "note"]
    assert np.isfinite(t.loc["F", "ci_low"]) and np.isfinite(t.loc["F", "ci_high"])
    assert "n = 3: too few models for a bootstrap interval" in res.summary()


def test_cli_coupling_prints_the_note_for_three_models():
    r = CliRunner().invoke(app, ["coupling", "--panel", "paper-base", "--resamples", "200", "--seed", "0"])
    assert r.exit_code == 0, r.output
    falcon = next(ln for ln in r.output.splitlines() if "Falcon" in ln)
    assert "n = 3: too few models" in falcon and "[" not in falcon.split("│")[5]
    assert "10 distinct resamples" in r.output and "spearman p" in r.output


# ------------------------------------------------------------ 5. N_c extrapolation
def test_vertex_below_the_panel_is_flagged_and_inside_is_not():
    x = np.repeat(np.linspace(9, 11, 5), 2)
    y = (x - 8) ** 2 + np.tile([0.01, -0.01], 5)
    est = nc.quadratic_vertex(x, y, n_resamples=200, seed=0).estimate
    assert est.value == pytest.approx(1e8, rel=0.05)
    assert "extrapolated: below the smallest size in the panel (1B)" in est.note
    inside = nc.quadratic_vertex(x, (x - 10) ** 2 + np.tile([0.01, -0.01], 5), n_resamples=200, seed=0).estimate
    assert not inside.note or "extrapolated" not in inside.note


def test_leave_one_family_out_flags_estimates_outside():
    res = nc.critical_scale(cached_panel("paper-nc"), n_resamples=300, seed=0)
    lofo = res.leave_one_family_out.set_index("left_out")
    assert bool(lofo.loc["Pythia", "extrapolated"]) and bool(lofo.loc["Pythia", "outside_full_ci"])
    assert "below the smallest size in the panel (7B)" in lofo.loc["Pythia", "flags"]
    assert not lofo.loc["Llama-1", "extrapolated"] and lofo.loc["Llama-1", "flags"] == ""
    r = CliRunner().invoke(app, ["nc", "--resamples", "300", "--seed", "0"])
    assert r.exit_code == 0, r.output
    assert "where the estimate lies" in r.output and "extrapolated: below the smallest size" in r.output


# ------------------------------------------------------------ 6. saturation wording
def _frontier(swe, gpqa):
    return pd.DataFrame({"model": [f"m{i}" for i in range(len(swe))], "swe_bench_verified": swe,
                         "gpqa_diamond": gpqa})


def test_saturation_text_matches_the_numbers():
    wide, narrow = [60, 64, 68, 72, 76, 50], [80, 80.5, 81, 81.5, 82, 70]
    # SWE above its floor, GPQA within: no "too"
    s = saturation(_frontier(wide, narrow), n_resamples=200, seed=0)
    t = s.table.set_index("benchmark")
    assert not t.loc["swe_bench_verified", "within_noise"] and t.loc["gpqa_diamond", "within_noise"]
    assert "within its own floor too" not in s.recommendation
    assert "gpqa_diamond, by contrast, is within its own floor" in s.recommendation
    # both within: "too" is right
    s = saturation(_frontier(narrow, narrow), n_resamples=200, seed=0)
    assert "but gpqa_diamond is within its own floor too" in s.recommendation
    # SWE within, GPQA above
    s = saturation(_frontier(narrow, wide), n_resamples=200, seed=0)
    assert "gpqa_diamond is above its own floor" in s.recommendation and "too" not in s.recommendation


# ------------------------------------------------------------ 7. the terminal audit table
def test_audit_table_short_columns_verbose_and_literal_markup(tmp_path):
    f = tmp_path / "claims.yaml"
    f.write_text("format: cape-claims/1\nclaims:\n"
                 "  - id: Z1\n    claim: \"[red]danger[/red] claim\"\n    published: \"[bold]x[/bold]\"\n"
                 "    analysis: not_computable\n    args: {reason: \"[blue]why[/blue]; more detail here\"}\n")
    runner = CliRunner()
    r = runner.invoke(app, ["audit", "--claims", str(f), "--no-replication"])
    assert r.exit_code == 0, r.output
    assert "[red]danger[/red] claim" in r.output and "[bold]x[/bold]" in r.output
    assert "[blue]why[/blue]" in r.output and "more detail here" not in r.output   # brief reason only
    assert r.output.count("[blue]why[/blue]") == 1                                  # no column repeats it
    v = runner.invoke(app, ["audit", "--claims", str(f), "--no-replication", "--verbose"])
    assert v.exit_code == 0 and "[blue]why[/blue]; more detail here" in v.output


def test_audit_table_figure_and_brief_are_short():
    res = run_audit(only=["A4", "B4"], n_resamples=100, replication=None)
    t = res.table.set_index("id")
    assert t.loc["A4", "figure"].startswith("1 of ") and "contradict" in t.loc["A4", "figure"]
    assert len(t.loc["A4", "brief"]) < 120 < len(t.loc["A4", "reason"])
    assert t.loc["B4", "brief"] == "within tolerance 0.1; but corrected data: swing -0.43"
    assert t.loc["B4", "figure"] == "first 11.2, last -4.653, swing -15.853"


def test_brief_reason_keeps_brackets_whole():
    from cape.audit import brief_reason

    claim = _claim({"r": -0.99})
    comp = Computation({"r": -0.99}, sound="the null gives r +0.91 (95% in [+0.74, +0.99]; P = 0.24); more",
                       sound_agrees=np.False_)
    v = verdict(claim, comp)[0]
    assert v == "reproduced but fragile"
    assert brief_reason(claim, comp, v) == \
        "within tolerance 0.1; but the null gives r +0.91 (95% in [+0.74, +0.99]; P = 0.24)"
