"""lighteval results JSON: ``suite|task|shots`` and ``task|shots`` keys, read by hand and by CAPE."""

import json

import pandas as pd
import pytest

from cape.errors import InputError
from cape.io import read_results
from cape.io.harness import MMLU_SUBJECTS


def scores_of(res):
    return res.dataset.scores.set_index(["model", "benchmark", "variant"])


@pytest.fixture
def lev(fixtures):
    return fixtures / "lighteval"


def test_suite_keys_round_trip(lev):
    path = lev / "results_suite-keys.json"
    doc = json.loads(path.read_text())
    r = doc["results"]
    model = doc["config_general"]["model_name"]
    res = read_results(path)
    assert res.formats[str(path)] == "lighteval"
    s = scores_of(res)
    by_hand = [  # (key, metric, benchmark, variant, shots)
        ("leaderboard|arc:challenge|25", "acc", "arc_challenge", "acc", 25),
        ("leaderboard|arc:challenge|25", "acc_norm", "arc_challenge", "acc_norm", 25),
        ("leaderboard|hellaswag|10", "acc_norm", "hellaswag", "acc_norm", 10),
        ("lighteval|truthfulqa:mc|0", "truthfulqa_mc1", "truthfulqa", "mc1", 0),
        ("lighteval|truthfulqa:mc|0", "truthfulqa_mc2", "truthfulqa", "mc2", 0),
        ("leaderboard|winogrande|5", "acc", "winogrande", "acc", 5),
        ("leaderboard|gsm8k|5", "qem", "gsm8k", "qem", 5),
    ]
    for key, metric, bench, variant, shots in by_hand:
        row = s.loc[(model, bench, variant)]
        assert row["value"] == pytest.approx(100 * r[key][metric])
        assert row["stderr"] == pytest.approx(100 * r[key][f"{metric}_stderr"])
        assert row["n_shot"] == shots
        assert row["harness"] == "lighteval b35d4d8"
    # MMLU: the mean over the subjects in the file, flagged as partial; "_average" and "all" unread
    subjects = [v["acc"] for k, v in r.items() if "|mmlu:" in k and "_average" not in k]
    mmlu = s.loc[(model, "mmlu", "acc")]
    assert mmlu["value"] == pytest.approx(100 * sum(subjects) / len(subjects))
    assert mmlu["n_shot"] == 5 and mmlu["flags"] == f"partial_aggregate:{len(subjects)}/{MMLU_SUBJECTS}"
    # + hellaswag acc, mmlu, and bigbench:causal_judgment kept under its own name, flagged
    assert len(res.dataset.scores) == len(by_hand) + 3
    assert not {"all", "0", "5", "25", "10"} & set(res.dataset.scores["benchmark"])
    own = s.sort_index().loc[(model, "bigbench_causal_judgment")]
    key = next(k for k in r if "bigbench:causal_judgment" in k)
    assert own.index.tolist() == [m for m in r[key] if not m.endswith("_stderr")]
    assert own["value"].tolist() == pytest.approx([100 * r[key][m] for m in own.index])
    assert (own["flags"] == "unregistered").all() and "bigbench_causal_judgment" in res.unregistered
    skipped = read_results(lev / "results_suite-keys.json", skip_unknown=True)
    assert any("bigbench:causal_judgment" in line for line in skipped.skipped)
    assert list(res.dataset.models["model"]) == [model]


def test_task_keys_shots_from_key_and_flags(lev):
    """lighteval >= 0.10 writes ``task|shots``: the old reader took the shots for the task."""
    path = lev / "results_task-keys.json"
    doc = json.loads(path.read_text())
    r = doc["results"]
    res = read_results(path)
    s = scores_of(res)
    model = "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    assert doc["config_general"]["model_name"] == model
    gsm = s.loc[(model, "gsm8k", "extractive_match")]
    assert gsm["value"] == pytest.approx(100 * r["gsm8k|5"]["extractive_match"]) and gsm["n_shot"] == 5
    assert gsm["harness"] == "lighteval"  # lighteval_sha "?" names no version
    assert s.loc[(model, "arc_challenge", "acc"), "n_shot"] == 0
    assert s.loc[(model, "truthfulqa", "mc2"), "value"] == pytest.approx(100 * r["truthfulqa:mc|0"]["truthfulqa_mc2"])
    assert s.loc[(model, "ifeval", "prompt_level_strict_acc"), "value"] == pytest.approx(50.0)
    # the Open LLM Leaderboard v2 score needs both strict accuracies: this file has one only
    assert (model, "ifeval", "strict_acc_mean") not in s.index
    # max_samples: every score is a partial run
    assert all("limited:max_samples=100" in f for f in res.dataset.scores["flags"])
    mmlu = s.loc[(model, "mmlu", "acc")]
    assert mmlu["value"] == pytest.approx(100 * (r["mmlu:anatomy|0"]["acc"] + r["mmlu:astronomy|5"]["acc"]) / 2)
    assert pd.isna(mmlu["n_shot"])  # subjects ran 0- and 5-shot: no one count
    assert "mixed_shots:0,5" in mmlu["flags"]
    assert not {"all", "0", "5"} & set(res.dataset.scores["benchmark"])
    assert "agieval_aqua_rat" in res.unregistered        # kept under its own name, flagged
    with pytest.raises(InputError, match="limited:max_samples=100|unregistered"):
        read_results(path, strict=True)


def test_open_llm_leaderboard_v1_file_still_read_as_v1(lev):
    """A real v1 file (lighteval-written, suite ``harness``) keeps going to the v1 reader."""
    path = lev / "oll-v1_results_2023-12-02T14-37-45.308018.json"
    res = read_results(path)
    assert res.formats[str(path)] == "openllm"
    row = scores_of(res).loc[("monology/openinstruct-mistral-7b", "gsm8k", "acc")]
    assert row["value"] == pytest.approx(50.49279757391963) and row["n_shot"] == 5


def test_bad_lighteval_files(lev, tmp_path):
    doc = json.loads((lev / "results_task-keys.json").read_text())
    del doc["config_general"]["model_name"]
    bad = tmp_path / "no_model.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="config_general.model_name"):
        read_results(bad)
    doc = json.loads((lev / "results_task-keys.json").read_text())
    doc["results"]["gsm8k|5"]["extractive_match"] = 41.0  # a percentage where a fraction belongs
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"outside 0-1.*|results\.gsm8k\|5"):
        read_results(bad)


def test_ifeval_strict_acc_mean_when_both_strict_accuracies_are_there(lev, tmp_path):
    doc = json.loads((lev / "results_task-keys.json").read_text())
    doc["results"]["ifeval|0"]["inst_level_strict_acc"] = 0.6
    path = tmp_path / "results_2025-01-01T00-00-00.json"
    path.write_text(json.dumps(doc))
    s = scores_of(read_results(path))
    model = doc["config_general"]["model_name"]
    assert s.loc[(model, "ifeval", "strict_acc_mean"), "value"] == pytest.approx(100 * (0.5 + 0.6) / 2)
