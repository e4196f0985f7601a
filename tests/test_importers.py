"""Importers: lm-evaluation-harness, Open LLM Leaderboard, wide and long tables."""

import json

import pandas as pd
import pytest

from cape.io import read_results


def scores_of(res):
    return res.dataset.scores.set_index(["model", "benchmark", "variant"])


def test_lmeval_folder(fixtures):
    res = read_results(fixtures / "lmeval")
    assert len(res.files) == 2 and set(res.formats.values()) == {"lm-eval"}
    s = scores_of(res)
    hs = s.loc[("EleutherAI/pythia-70m", "hellaswag", "acc_norm")]
    assert hs["value"] == pytest.approx(27.31) and hs["stderr"] == pytest.approx(0.44)
    assert hs["n_shot"] == 10 and hs["harness"] == "lm-evaluation-harness 0.4.5"
    assert hs["source"] == "lm-eval:EleutherAI__pythia-70m/results_2024-05-01T10-00-00.123456.json"
    assert s.loc[("EleutherAI/pythia-70m", "truthfulqa", "mc2"), "value"] == pytest.approx(47.05)
    assert s.loc[("EleutherAI/pythia-70m", "truthfulqa", "mc1"), "value"] == pytest.approx(24.48)
    assert s.loc[("EleutherAI/pythia-160m", "gsm8k", "exact_match:strict-match"), "value"] == pytest.approx(0.23)
    assert s.loc[("EleutherAI/pythia-160m", "mmlu", "acc"), "value"] == pytest.approx(23.10)
    # MMLU subtasks are covered by their group; perplexity is not a percentage
    assert not any("abstract" in b for b in res.dataset.scores["benchmark"])
    assert any("perplexity" in line for line in res.skipped)
    models = res.dataset.models.set_index("model")
    assert models.loc["EleutherAI/pythia-160m", "params"] == 162322944


def test_lmeval_na_stderr_is_missing(fixtures, tmp_path):
    doc = json.loads(next((fixtures / "lmeval").rglob("results_*.json")).read_text())
    doc["results"] = {"hellaswag": {"acc,none": 0.3, "acc_stderr,none": "N/A"}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    s = read_results(path).dataset.scores
    assert s["stderr"].isna().all() and s["value"].iloc[0] == pytest.approx(30.0)


def test_lmeval_unknown_task_is_kept_flagged_skipped_or_refused(fixtures, tmp_path):
    doc = json.loads(next((fixtures / "lmeval").rglob("results_*.json")).read_text())
    doc["results"]["my_private_task"] = {"acc,none": 0.5}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    # by default a researcher's own task is stored under its own name, flagged and listed
    res = read_results(path)
    own = res.dataset.scores[res.dataset.scores["benchmark"] == "my_private_task"]
    assert len(own) == 1 and own["value"].iloc[0] == pytest.approx(50.0) and own["variant"].iloc[0] == "acc"
    assert own["flags"].iloc[0] == "unregistered" and "my_private_task" in res.unregistered
    known = res.dataset.scores[res.dataset.scores["benchmark"] != "my_private_task"]
    assert not known["flags"].fillna("").str.contains("unregistered").any()
    res = read_results(path, skip_unknown=True)
    assert any("my_private_task" in line for line in res.skipped) and not res.unregistered
    with pytest.raises(Exception, match="unregistered"):
        read_results(path, strict=True)
    # a near typo of a known name is refused, never stored as a task of its own
    doc["results"]["hellaswagg"] = doc["results"].pop("my_private_task")
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception, match="unknown benchmark 'hellaswagg'.*did you mean 'hellaswag'"):
        read_results(path)


def test_openllm_results_file(fixtures):
    res = read_results(fixtures / "openllm")
    s = scores_of(res)
    m = "EleutherAI/pythia-410m"
    assert s.loc[(m, "arc_challenge", "acc_norm"), "n_shot"] == 25
    assert s.loc[(m, "truthfulqa", "mc2"), "value"] == pytest.approx(41.22)
    mmlu = s.loc[(m, "mmlu", "acc")]
    assert mmlu["value"] == pytest.approx((27 + 25.19 + 22.37) / 3)
    assert mmlu["flags"] == "partial_aggregate:3/57"


def test_wide_fractions_are_converted(fixtures):
    res = read_results(fixtures / "wide.csv")
    s = scores_of(res)
    assert s.loc[("org/tiny-1b", "hellaswag", "unspecified"), "value"] == pytest.approx(49.8)
    assert s.loc[("org/tiny-1b", "truthfulqa", "mc2"), "value"] == pytest.approx(40.2)
    arc = s.loc[("org/tiny-1b", "arc_challenge", "unspecified")]
    assert arc["n_shot"] == 25 and arc["source"] == "file:wide.csv"
    m = res.dataset.models.set_index("model")
    assert m.loc["org/tiny-400m", "params"] == 400_000_000 and m.loc["org/tiny-400m", "family"] == "tiny"


def test_long_table_and_explicit_units(fixtures, tmp_path):
    res = read_results(fixtures / "long.csv")
    s = scores_of(res)
    assert s.loc[("org/tiny-400m", "hellaswag", "acc_norm"), "stderr"] == pytest.approx(0.49)
    assert s.loc[("org/tiny-400m", "hellaswag", "acc_norm"), "source"] == "my-eval-run-1"
    # a column of tiny percentages next to normal ones is ambiguous until --units says
    p = tmp_path / "gsm.csv"
    p.write_text("model,hellaswag,gsm8k\na,30.0,0.3\nb,40.0,0.7\n")
    with pytest.raises(Exception, match="ambiguous"):
        read_results(p)
    s = scores_of(read_results(p, units="percent"))
    assert s.loc[("a", "gsm8k", "unspecified"), "value"] == pytest.approx(0.3)


def test_parquet_and_json_tables(fixtures, tmp_path):
    frame = pd.read_csv(fixtures / "wide.csv")
    frame.to_parquet(tmp_path / "w.parquet")
    (tmp_path / "w.json").write_text(frame.to_json(orient="records"))
    a = read_results(tmp_path / "w.parquet").dataset.scores["value"].tolist()
    b = read_results(tmp_path / "w.json").dataset.scores["value"].tolist()
    c = read_results(fixtures / "wide.csv").dataset.scores["value"].tolist()
    assert a == pytest.approx(c) and b == pytest.approx(c)


def test_family_and_kind_defaults(fixtures):
    res = read_results(fixtures / "lmeval", family="pythia", kind="base")
    m = res.dataset.models
    assert set(m["family"]) == {"pythia"} and set(m["kind"]) == {"base"}
