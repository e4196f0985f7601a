"""`--run` and `--shots` on the analysis commands (issue 13): a user with several runs or
shot counts of a score picks the one an analysis uses, from the command line, and gets
the same numbers as the Python API with the same choice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cape import analysis, api

from conftest import run_cli

PAIR = "hellaswag:truthfulqa"
FAST = ("--resamples", "200", "--permutations", "99", "--seed", "0", "--json")


def _r(res_json) -> float:
    return json.loads(res_json)["table"][0]["r"]


@pytest.fixture
def two_runs(tmp_path, cape_home):
    """paper-pythia stored as 'mine', plus a second run (source 'rerun-2024-06') that gives
    every model another hellaswag value at the same variant and shots: a conflict that only
    --run resolves."""
    api.export_panel("paper-pythia", tmp_path / "pythia.csv")
    api.ingest(tmp_path / "pythia.csv", "mine")
    s = api.load_scores("mine")
    hs = s[s["benchmark"] == "hellaswag"].copy()
    bump = np.where(np.arange(len(hs)) % 2 == 0, 4.0, -4.0)  # changes the within-family r
    rerun = hs.assign(value=hs["value"].astype(float) + bump, source="rerun-2024-06")
    rerun[["model", "benchmark", "variant", "value", "n_shot", "source"]].to_csv(tmp_path / "rerun.csv", index=False)
    api.ingest(tmp_path / "rerun.csv", "mine", units="percent")
    assert hs["source"].nunique() == 1
    return cape_home, str(hs["source"].iloc[0])


def test_run_picks_the_reading_an_analysis_uses(two_runs):
    two_runs, first = two_runs
    # without a choice the benchmark is in conflict: asking for it is an error naming it
    res = run_cli("coupling", "--panel", "mine", "--pair", PAIR, *FAST, home=two_runs)
    assert res.returncode == 2 and "hellaswag" in res.stderr and "--run" in res.stderr
    got = {}
    for run in ("rerun-2024-06", first):
        res = run_cli("coupling", "--panel", "mine", "--pair", PAIR, "--run", run, *FAST, home=two_runs)
        assert res.returncode == 0, res.stderr
        ref = analysis.family_coupling(api.load_panel("mine", run=run), PAIR, n_permutations=99,
                                       n_bootstrap=200, seed=0)
        got[run] = _r(res.stdout)
        assert got[run] == pytest.approx(float(ref.table["r"].iloc[0]))
    assert got["rerun-2024-06"] != pytest.approx(got[first], abs=1e-3)
    # the same option on other commands
    res = run_cli("gamma", "--panel", "mine", "--pair", PAIR, "--run", "rerun-2024-06", "--resamples", "50",
                  "--seed", "0", "--json", home=two_runs)
    assert res.returncode == 0, res.stderr
    res = run_cli("show", "mine", "--run", "rerun-2024-06", "--json", "-b", "hellaswag", home=two_runs)
    shown = {m["model"]: m["hellaswag"] for m in json.loads(res.stdout)["models"]}
    s = api.load_scores("mine")
    want = s[(s["benchmark"] == "hellaswag") & (s["source"] == "rerun-2024-06")].set_index("model")["value"]
    assert shown == pytest.approx(want.astype(float).to_dict())


def test_shots_picks_the_shot_count_an_analysis_uses(tmp_path, cape_home):
    api.export_panel("paper-pythia", tmp_path / "pythia.csv")
    frame = pd.read_csv(tmp_path / "pythia.csv")
    hs = frame[frame["benchmark"] == "hellaswag"].copy()
    base = int(hs["n_shot"].iloc[0]) if hs["n_shot"].notna().all() else 0
    other = base + 15
    frame.loc[hs.index, "n_shot"] = base
    extra = hs.assign(n_shot=other, value=hs["value"] + np.where(np.arange(len(hs)) % 2 == 0, 5.0, -5.0),
                      source="another-shot-count")
    pd.concat([frame, extra]).to_csv(tmp_path / "both.csv", index=False)
    api.ingest(tmp_path / "both.csv", "shots")
    r = {}
    for n in (base, other):
        res = run_cli("coupling", "--panel", "shots", "--pair", PAIR, "--shots", f"hellaswag={n}", *FAST,
                      home=cape_home)
        assert res.returncode == 0, res.stderr
        r[n] = _r(res.stdout)
        ref = analysis.family_coupling(api.load_panel("shots", shots={"hellaswag": n}), PAIR,
                                       n_permutations=99, n_bootstrap=200, seed=0)
        assert r[n] == pytest.approx(float(ref.table["r"].iloc[0]))
    assert r[base] != pytest.approx(r[other], abs=1e-3)
    # a plain count applies to every benchmark; a model without it has no value (none here)
    res = run_cli("coupling", "--panel", "shots", "--pair", PAIR, "--shots", str(other), *FAST, home=cape_home)
    assert res.returncode == 2 and "truthfulqa" in res.stderr  # no truthfulqa at that count


@pytest.mark.parametrize("bad", ["eight", "gsm8k=x", "=8", "-1", "gsm8k=-2"])
def test_a_bad_shots_value_is_one_line(bad, cape_home):
    res = run_cli("coupling", "--panel", "paper-pythia", "--shots", bad, *FAST, home=cape_home)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 2 and "--shots" in lines[0] and "Traceback" not in res.stderr
