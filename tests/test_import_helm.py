"""HELM run folders (run_spec.json + stats.json): real files from stanford-crfm/helm, read by
hand with json.load and by CAPE (tests/fixtures/helm/README.md gives their origin)."""

import json
import shutil

import pandas as pd
import pytest

from cape.errors import InputError
from cape.io import read_results
from cape.io.helm import find_helm_runs, is_helm_run, read_helm, scenario_benchmark

from conftest import FIXTURES, run_cli

SUITE = FIXTURES / "helm" / "v4"
BBQ_8B = SUITE / "bbq:subject=all,method=multiple_choice_joint,model=meta_llama-3-8b"
BBQ_70B = SUITE / "bbq:subject=all,method=multiple_choice_joint,model=meta_llama-3-70b"
HARM_8B = SUITE / "harm_bench:model=meta_llama-3-8b"


def by_hand(run, metric):
    """The unperturbed test-split stat of ``metric`` and the run spec, read with json.load."""
    spec = json.loads((run / "run_spec.json").read_text())
    stats = json.loads((run / "stats.json").read_text())
    plain = [s for s in stats if s["name"]["name"] == metric and s["name"]["split"] == "test"
             and "perturbation" not in s["name"] and "sub_split" not in s["name"]]
    assert len(plain) == 1
    return spec, plain[0], stats


def test_suite_round_trip_against_the_files():
    res = read_results(SUITE)
    assert res.formats == {str(SUITE): "helm"}
    s = res.dataset.scores.set_index(["model", "benchmark", "variant"])
    for run in (BBQ_8B, BBQ_70B):
        for metric in ("bbq_accuracy", "quasi_exact_match"):
            spec, stat, stats = by_hand(run, metric)
            ad = spec["adapter_spec"]
            row = s.loc[(ad["model"], "bbq_all", metric)]
            assert row["value"] == pytest.approx(100 * stat["mean"])
            assert row["n_shot"] == ad["max_train_instances"] == 0
            assert row["harness"] == "HELM"
            assert row["source"] == f"helm:v4/{run.name}"
            n = next(x for x in stats if x["name"] == {"name": "num_instances", "split": "test"})
            assert n["mean"] == ad["max_eval_instances"] == 100  # HELM scored its cap: a sample
            assert row["flags"] == "limited:max_eval_instances=100;unregistered"
            assert pd.isna(row["stderr"])  # empty: one value per run in stats.json
        # HELM's robustness/fairness "worst case" copies are in the file but not read
        qem = [x for x in stats if x["name"]["name"] == "quasi_exact_match"]
        assert {x["name"].get("perturbation", {}).get("name") for x in qem} == {None, "robustness", "fairness"}
    # two runs x two main metrics of BBQ (safety schema: bbq_accuracy; classic: quasi_exact_match)
    assert len(res.dataset.scores) == 4
    assert s.loc[("meta/llama-3-8b", "bbq_all", "bbq_accuracy"), "value"] == pytest.approx(66.0)
    assert s.loc[("meta/llama-3-70b", "bbq_all", "bbq_accuracy"), "value"] == pytest.approx(86.0)
    # model ids from adapter_spec.model; HELM files carry no parameter count, none is invented
    models = res.dataset.models.set_index("model")
    assert sorted(models.index) == ["meta/llama-3-70b", "meta/llama-3-8b"]
    assert models["params"].isna().all()
    assert "bbq_all" in res.unregistered
    # HarmBench's main metric is a judge score, not an accuracy: skipped with a note
    assert any(HARM_8B.name in line and "exact_match" in line for line in res.skipped)


def test_one_run_folder_or_its_run_spec():
    spec, stat, _ = by_hand(BBQ_8B, "bbq_accuracy")
    for path in (BBQ_8B, BBQ_8B / "run_spec.json"):
        res = read_results(path)
        row = res.dataset.scores.set_index("variant").loc["bbq_accuracy"]
        assert row["model"] == spec["adapter_spec"]["model"]
        assert row["value"] == pytest.approx(100 * stat["mean"])
    assert find_helm_runs(SUITE) == [BBQ_70B, BBQ_8B, HARM_8B]


def test_is_helm_run():
    spec = json.loads((BBQ_8B / "run_spec.json").read_text())
    stats = json.loads((BBQ_8B / "stats.json").read_text())
    assert is_helm_run(spec) and is_helm_run(BBQ_8B) and is_helm_run(SUITE)
    assert is_helm_run(BBQ_8B / "run_spec.json")
    assert not is_helm_run(stats) and not is_helm_run(BBQ_8B / "stats.json")
    assert not is_helm_run(FIXTURES / "lighteval") and not is_helm_run(SUITE / "absent")


def test_skip_unknown_and_strict():
    rows = read_helm(SUITE, skip_unknown=True)
    assert not rows.scores and any("bbq:subject=all" in line for line in rows.skipped)
    with pytest.raises(InputError, match="no scores found"):
        read_results(SUITE, skip_unknown=True)
    with pytest.raises(InputError, match="limited:max_eval_instances=100") as err:
        read_results(BBQ_8B, strict=True)
    assert "stats.json" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, scenario, bench", [
    # run-entry descriptions from stanford-crfm/helm src/helm/benchmark/presentation/*.conf
    ("mmlu:model=text,subject=anatomy,data_augmentation=canonical", "mmlu", "mmlu"),
    ("truthful_qa:model=text,task=mc_single,data_augmentation=canonical", "truthful_qa", "truthfulqa"),
    ("commonsense:model=full_functionality_text,dataset=hellaswag,method=multiple_choice_separate_original,"
     "data_augmentation=canonical", "hellaswag", "hellaswag"),
    ("commonsense:model=full_functionality_text,dataset=openbookqa,method=multiple_choice_separate_calibrated,"
     "data_augmentation=canonical", "openbookqa", "openbookqa"),
    ("commonsense:model=ablation_full_functionality_text,dataset=commonsenseqa,method=multiple_choice_joint",
     "commonsenseqa", None),
    ("boolq:model=text,data_augmentation=canonical", "boolq", "boolq"),
    ("gsm:model=text_code", "gsm", "gsm8k"),
    ("ifeval:model=text", "ifeval", "ifeval"),
    ("mmlu_pro:subject=all,model=text", "mmlu_pro", "mmlu_pro"),
    ("gpqa:subset=main,model=text", "gpqa", None),
    ("gpqa:subset=diamond,model=text", "gpqa", "gpqa_diamond"),
    ("bbq:subject=all,method=multiple_choice_joint,model=meta_llama-3-8b", "bbq", None),
])
def test_scenario_names(name, scenario, bench):
    assert scenario_benchmark(name) == (scenario, bench)


# ---------------------------------------------------------------------------- bad input
def copy_run(tmp_path, run=BBQ_8B):
    dest = tmp_path / "suite" / run.name
    shutil.copytree(run, dest)
    return dest


def test_run_spec_without_stats_is_a_one_line_error(tmp_path):
    run = copy_run(tmp_path)
    (run / "stats.json").unlink()
    with pytest.raises(InputError) as err:
        read_results(run.parent)
    msg = str(err.value)
    assert msg.startswith(str(run / "stats.json")) and "no stats.json" in msg and "\n" not in msg


def test_broken_files_are_errors_naming_them(tmp_path):
    run = copy_run(tmp_path)
    text = (run / "stats.json").read_text()
    (run / "stats.json").write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match="truncated JSON") as err:
        read_results(run)
    assert str(run / "stats.json") in str(err.value)
    run = copy_run(tmp_path / "b")
    spec = json.loads((run / "run_spec.json").read_text())
    del spec["adapter_spec"]["model"]
    (run / "run_spec.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="adapter_spec.model") as err:
        read_results(run)
    assert str(run / "run_spec.json") in str(err.value)
    run = copy_run(tmp_path / "c")
    (run / "stats.json").write_text('{"name": "not a list"}')
    with pytest.raises(InputError, match="not a HELM stats list"):
        read_results(run)


@pytest.mark.slow  # three real `cape` subprocesses
def test_cli_ingest_and_show(cape_home, tmp_path):
    r = run_cli("ingest", str(SUITE), "--panel", "helm", home=cape_home)
    assert r.returncode == 0, r.stderr
    assert "added 4 scores, 2 models" in r.stdout and "bbq_all" in r.stdout
    shown = run_cli("show", "helm", home=cape_home)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "meta/llama-3-8b" in line)
    assert "66.00" in row and "limited:max_eval_instances=100" in row
    run = copy_run(tmp_path)
    (run / "stats.json").unlink()
    bad = run_cli("ingest", str(run.parent), "--panel", "bad", home=cape_home)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert str(run / "stats.json") in bad.stderr


def test_limited_and_shots_follow_the_run_spec(tmp_path):
    """The opposite cases, on a copy of a real run with one run-spec field changed: a cap the
    run did not reach is no sample (no flag); shots come from the stat HELM wrote when the
    asked-for count was not given."""
    for cap, flagged in ((1000, False), (None, False), (100, True)):
        run = copy_run(tmp_path / str(cap))
        spec = json.loads((run / "run_spec.json").read_text())
        spec["adapter_spec"]["max_eval_instances"] = cap
        spec["adapter_spec"]["max_train_instances"] = 5
        (run / "run_spec.json").write_text(json.dumps(spec))
        scores = read_results(run).dataset.scores
        assert scores["flags"].str.contains("limited").eq(flagged).all(), cap
        assert (scores["n_shot"] == 0).all()  # num_train_instances: 0 given, 5 asked for
