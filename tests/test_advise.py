"""Intervention suggestions (cape.analysis.advise, `cape advise`): every lever's rule on
constructed panels where the answer is known, in both directions; bad input; CLI."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cape.analysis.advise import STRENGTHS, Advice, advise, is_curated
from cape.analysis.results import Estimate
from cape.errors import CapeError
from conftest import cached_panel, run_cli

R = 200          # resamples: enough for stable intervals on these clean panels, and fast

# the reference curve of the constructed panels: TQA = A x^2 + B x + C, x = log10 N
A, B, C = 2.0, -38.0, 215.0


def curve(params: float) -> float:
    x = np.log10(params)
    return A * x * x + B * x + C


def _panel(rows: list[dict], name: str = "constructed") -> pd.DataFrame:
    df = pd.DataFrame(rows).set_index("model")
    df.attrs["cape"] = {"panel": name, "benchmarks": [c for c in ("hellaswag", "truthfulqa") if c in df]}
    return df


def web_panel(curated_offset: float = 8.0, seed: int = 0) -> pd.DataFrame:
    """Six web-trained families of five sizes on the curve (noise 0.5 pt), two curated
    families of three sizes ``curated_offset`` points above it."""
    rng = np.random.default_rng(seed)
    rows = []
    sizes = [1e8, 4e8, 1.4e9, 7e9, 3e10]
    for i, fam in enumerate(["WebA", "WebB", "WebC", "WebD", "WebE", "WebF"]):
        for j, n in enumerate(sizes):
            rows.append({"model": f"{fam}-{j}", "family": fam, "params": n * (1 + 0.05 * i),
                         "hellaswag": 30 + 10 * j + i, "truthfulqa": curve(n * (1 + 0.05 * i)) + rng.normal(0, 0.5)})
    for fam in ("Phi", "Qwen2"):
        for j, n in enumerate([2e9, 5e9, 1.2e10]):
            rows.append({"model": f"{fam}-{j}", "family": fam, "params": n, "hellaswag": 60 + 5 * j,
                         "truthfulqa": curve(n) + curated_offset + rng.normal(0, 0.5)})
    return _panel(rows)


def stub_replication(verdict: str, n_c: float = 3e9, ci=(2e9, 5e9)):
    """A replication result with only what advise reads (the real one is slow and tested in
    test_replication.py)."""
    est = Estimate("N_c (b) quadratic vertex, family resampling", n_c, 40, "vertex", ci, 0.95, "family bootstrap")
    return SimpleNamespace(verdict=verdict, verdict_reason=f"constructed: {verdict}", verdict_split="own N_c",
                           phase=pd.DataFrame({"split": ["own N_c"], "n_c": [n_c]}), nc_estimates=[est])


HOLDS = stub_replication("holds")


# ----------------------------------------------------------------------------- curation
def test_model_far_below_the_curve_gets_the_curation_lever_with_evidence():
    res = advise(web_panel(), params=7e9, scores={"hellaswag": 70, "truthfulqa": curve(7e9) - 12},
                 replication_result=HOLDS, n_resamples=R, seed=0)
    lv = res.lever("curation")
    assert lv.supported and lv.strength in ("moderate", "strong")
    h, hc, gap = lv.evidence
    assert h.value == pytest.approx(-12, abs=1.0) and h.ci[1] < 0 and h.n == 1 and h.n_resamples == R
    assert gap.value == pytest.approx(20, abs=2.0) and gap.ci[0] > 0
    assert hc.n == 4                                   # the 5B and 12B models of Phi and Qwen2 (2B is < 7B/3)
    assert "curation lever is supported" in lv.suggestion and f"h = {h.value:+.1f}" in lv.suggestion
    assert lv.strength == "moderate"                   # 4 curated models: fewer than the 5 strong asks for
    row = res.table.set_index("lever").loc["curation"]
    assert bool(row["supported"]) and row["value"] == pytest.approx(h.value) and row["n"] == 1


def test_model_on_the_curve_does_not_get_the_curation_lever():
    res = advise(web_panel(), params=7e9, scores={"hellaswag": 70, "truthfulqa": curve(7e9)},
                 replication_result=HOLDS, n_resamples=R, seed=0)
    lv = res.lever("curation")
    assert not lv.supported and lv.strength in ("none", "weak")
    assert lv.evidence[0].ci[0] < 0 < lv.evidence[0].ci[1] or lv.evidence[0].value >= 0
    assert "curation lever is supported" not in lv.suggestion


def test_curation_is_only_moderate_without_curated_families_of_similar_size():
    res = advise(web_panel(), params=1e8, scores={"hellaswag": 30, "truthfulqa": curve(1e8) - 12},
                 replication_result=HOLDS, n_resamples=R, seed=0)
    lv = res.lever("curation")
    assert lv.strength == "moderate" and len(lv.evidence) == 1       # no curated model within x3 of 100M
    assert "no curated family" in lv.suggestion


def test_family_target_uses_its_models_and_excludes_itself_from_the_comparison():
    res = advise(web_panel(), family="phi", replication_result=HOLDS, n_resamples=R, seed=0)
    assert res.family == "Phi" and res.n_target_models == 3 and "Phi" in res.curated
    lv = res.lever("curation")
    assert lv.evidence[0].value == pytest.approx(8, abs=1.0) and lv.strength == "none"   # already above
    assert set(res.comparators["family"]) == {"Qwen2"}


def test_is_curated_prefix_rule():
    assert is_curated("Qwen1.5", ["Qwen"]) and is_curated("OLMo-2", ["OLMo"]) and is_curated("phi", ["Phi"])
    assert not is_curated("Phind", ["Phi"]) and not is_curated("Llama", ["Phi", "OLMo", "Qwen"])


# ----------------------------------------------------------------------------- width
def width_panel(d_models, hs, tqa) -> pd.DataFrame:
    rows = [{"model": f"W-{i}", "family": "W", "params": 1e8 * 2 ** i, "d_model": d, "hellaswag": h, "truthfulqa": t}
            for i, (d, h, t) in enumerate(zip(d_models, hs, tqa))]
    return _panel(rows, "widths")


def test_width_that_changes_nothing_beyond_its_null_is_not_a_lever():
    # Pythia-like: widths double, HellaSwag rises, TruthfulQA falls (raw r strongly negative);
    # dividing by width makes r strongly positive, and so it does for shuffled scores
    res = advise(width_panel([512, 1024, 2048, 2560, 4096, 5120], [30, 40, 38, 55, 50, 68],
                             [45, 41, 44, 38, 40, 35]), family="W", replication_result=HOLDS, n_resamples=R, seed=0)
    lv = res.lever("width")
    r = lv.evidence[0]
    assert r.value > 0.8 and r.ci[0] <= r.value <= r.ci[1]            # inside the null interval
    assert lv.strength == "none" and not lv.supported and "NOT supported" in lv.suggestion


def test_width_above_its_null_is_not_refused():
    # equal-ish widths: the division does nothing, and two strongly related scores stay related,
    # far above the null of shuffled scores
    res = advise(width_panel([4096, 4096, 4160, 4096, 4160, 4096], [30, 36, 44, 50, 58, 66],
                             [30, 35, 45, 49, 59, 65]), family="W", replication_result=HOLDS, n_resamples=R, seed=0)
    lv = res.lever("width")
    assert lv.evidence[0].value > lv.evidence[0].ci[1]
    assert lv.strength != "none"                       # weak: no crossing family with a width to compare


def test_width_without_d_model_cannot_be_judged():
    lv = advise(web_panel(), params=7e9, scores={"hellaswag": 70, "truthfulqa": 40}, d_model=4096,
                replication_result=HOLDS, n_resamples=R, seed=0).lever("width")
    assert lv.strength == "none" and "no d_model" in lv.suggestion


def test_pythia_width_normalization_is_inside_its_null():
    lv = advise(cached_panel("paper-pythia"), family="Pythia", replication_result=HOLDS, n_resamples=R,
                seed=0).lever("width")
    assert lv.evidence[0].value == pytest.approx(0.963, abs=1e-3) and lv.strength == "none"


# ----------------------------------------------------------------------------- size
@pytest.mark.parametrize("verdict", ["does not hold", "undetermined"])
def test_size_lever_refused_unless_the_replication_holds(verdict):
    res = advise(web_panel(), params=5e8, scores={"hellaswag": 40, "truthfulqa": 40},
                 replication_result=stub_replication(verdict), n_resamples=R, seed=0)
    lv = res.lever("size")
    assert lv.strength == "none" and not lv.supported
    assert "do not support a size lever" in lv.suggestion and f"constructed: {verdict}" in lv.suggestion
    assert "scaling past N_c is supported" not in res.summary()
    assert res.replication_verdict == verdict and res.replication_reason == f"constructed: {verdict}"


def test_size_lever_supported_when_it_holds_and_the_target_is_below_n_c():
    lv = advise(web_panel(), params=5e8, scores={"hellaswag": 40, "truthfulqa": 40}, replication_result=HOLDS,
                n_resamples=R, seed=0).lever("size")
    assert lv.strength == "strong" and lv.supported and "scaling past N_c is supported" in lv.suggestion
    inside = advise(web_panel(), params=2.5e9, scores={"hellaswag": 40, "truthfulqa": 40},
                    replication_result=HOLDS, n_resamples=R, seed=0).lever("size")
    assert inside.strength == "weak"                   # below N_c but inside its interval
    above = advise(web_panel(), params=2e10, scores={"hellaswag": 40, "truthfulqa": 40},
                   replication_result=HOLDS, n_resamples=R, seed=0).lever("size")
    assert above.strength == "none" and "already above N_c" in above.suggestion


# ----------------------------------------------------------------------------- rotation
def test_rotation_supported_only_at_a_saturated_ceiling():
    rows = [{"model": f"M{i}", "family": f"F{i}", "params": 1e9 * (i + 1), "hellaswag": 85.0 + 0.05 * (i % 5),
             "truthfulqa": 20 + 2 * i} for i in range(25)]
    panel = _panel(rows)
    top = advise(panel, params=7e9, scores={"hellaswag": 85.1, "truthfulqa": 40}, replication_result=HOLDS,
                 n_resamples=R, seed=0)
    bench = top.benchmarks.set_index("benchmark")
    assert bench.loc["hellaswag", "strength"] == "strong" and top.lever("rotation").supported
    assert bench.loc["truthfulqa", "strength"] != "strong"      # spread 10 points: far above its floor
    low = advise(panel, params=7e9, scores={"hellaswag": 60, "truthfulqa": 40}, replication_result=HOLDS,
                 n_resamples=R, seed=0)
    assert low.benchmarks.set_index("benchmark").loc["hellaswag", "strength"] == "weak"
    assert not low.lever("rotation").supported


# ----------------------------------------------------------------------------- result, seeds
def test_result_table_one_row_per_lever_and_strength_labels():
    res = advise(web_panel(), params=7e9, scores={"hellaswag": 70, "truthfulqa": 30}, replication_result=HOLDS,
                 n_resamples=R, seed=0)
    assert isinstance(res, Advice)
    assert list(res.table["lever"]) == ["curation", "width", "rotation", "size"]
    assert set(res.table["strength"]) <= set(STRENGTHS)
    assert all(lv.evidence and lv.rule for lv in res.levers)           # no suggestion without evidence
    d = json.loads(json.dumps(res.to_dict()))
    assert d["table"][0]["lever"] == "curation" and d["levers"][0]["evidence"][0]["n"] == 1


def test_same_seed_same_result_other_seed_other_intervals():
    kw = dict(params=7e9, scores={"hellaswag": 70, "truthfulqa": 35}, replication_result=HOLDS, n_resamples=R)
    a, b = advise(web_panel(), seed=3, **kw), advise(web_panel(), seed=3, **kw)
    assert a.to_dict() == b.to_dict()
    c = advise(web_panel(), seed=4, **kw)
    assert c.lever("curation").evidence[0].ci != a.lever("curation").evidence[0].ci


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, field", [
    (dict(params=-7e9, scores={"hellaswag": 70, "truthfulqa": 40}), "params"),
    (dict(params="seven", scores={"hellaswag": 70, "truthfulqa": 40}), "params"),
    (dict(family="Pythiaa"), "family"),
    (dict(params=7e9, scores={"hellaswag": 70}), "truthfulqa"),
    (dict(params=7e9, scores={"hellaswag": 70, "truthfulqa": 140}), "truthfulqa"),
    (dict(params=7e9, scores={"hellaswag": 70, "truthfulqa": 40, "hellaswagg_x": 3}), "hellaswagg_x"),
    (dict(params=7e9, scores={"hellaswag": 70, "truthfulqa": 40}, d_model=-1), "d_model"),
    (dict(), "family"),
    (dict(family="WebA", params=7e9), "params"),
])
def test_bad_input_is_one_line_naming_the_field(kwargs, field):
    with pytest.raises(CapeError) as exc:
        advise(web_panel(), replication_result=HOLDS, n_resamples=R, seed=0, **kwargs)
    msg = str(exc.value)
    assert field in msg and "\n" not in msg


# ----------------------------------------------------------------------------- CLI
def test_cli_json_parses(cape_home):
    r = run_cli("advise", "--panel", "paper-base", "--family", "Phi", "--resamples", "50", "--json", home=cape_home)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["command"] == "advise" and d["family"] == "Phi"
    assert [row["lever"] for row in d["table"]] == ["curation", "width", "rotation", "size"]
    assert d["replication_verdict"] in ("holds", "does not hold", "undetermined")


def test_cli_bad_input_is_one_line(cape_home):
    r = run_cli("advise", "--params", "7e9", "--hellaswag", "78", home=cape_home)
    assert r.returncode == 2 and "truthfulqa" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_help_names_the_levers_and_json(cape_home):
    r = run_cli("advise", "--help", home=cape_home)
    assert r.returncode == 0 and "--json" in r.stdout
    assert all(w in r.stdout for w in ("curation", "width", "rotation", "size", "--family", "--params"))
