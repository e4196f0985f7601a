"""The pure parts of benchmarks/compare_lmeval.py (no lm-eval, no model, no network).

The data conversion to the Hugging Face ``truthful_qa`` format, the local task files (they
include lm-eval's own files and override only the data source), the comparison (it must
report a difference where one is constructed) and the plain message when lm-eval cannot run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_lmeval.py"


@pytest.fixture(scope="module")
def cl():
    spec = importlib.util.spec_from_file_location("compare_lmeval", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MC = [
    {"question": "What colour is the sky?",
     "mc1_targets": {"Blue.": 1, "Green.": 0, "Red.": 0},
     "mc2_targets": {"Blue.": 1, "Sky blue.": 1, "Green.": 0, "Red.": 0}},
    {"question": "Is water wet?",
     "mc1_targets": {"Yes.": 1, "No.": 0},
     "mc2_targets": {"No.": 0, "Yes.": 1}},
]


def test_hf_records_keep_the_files_order_and_labels(cl, tmp_path):
    src = tmp_path / "mc_task.json"
    src.write_text(json.dumps(MC))
    recs = cl.hf_records(src)
    assert recs[0] == {"question": "What colour is the sky?",
                       "mc1_targets": {"choices": ["Blue.", "Green.", "Red."], "labels": [1, 0, 0]},
                       "mc2_targets": {"choices": ["Blue.", "Sky blue.", "Green.", "Red."], "labels": [1, 1, 0, 0]}}
    assert recs[1]["mc2_targets"] == {"choices": ["No.", "Yes."], "labels": [0, 1]}  # order kept, not sorted
    out = cl.write_jsonl(recs, tmp_path / "d.jsonl")
    assert [json.loads(line) for line in out.read_text().splitlines()] == recs
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q", "mc1_targets": {}, "mc2_targets": {"a": 1}}]))
    with pytest.raises(ValueError, match="entry 1: 'mc1_targets'"):
        cl.hf_records(bad)


def test_task_files_include_lmevals_own_and_override_only_the_data(cl, tmp_path):
    lm_dir = tmp_path / "lm_eval" / "tasks" / "truthfulqa"
    data = tmp_path / "d.jsonl"
    paths = cl.write_tasks(lm_dir, data, tmp_path / "tasks")
    assert sorted(p.name for p in paths) == ["cape_local_truthfulqa_mc1.yaml", "cape_local_truthfulqa_mc2.yaml"]
    for key, path in zip(("mc1", "mc2"), sorted(paths)):
        cfg = yaml.safe_load(path.read_text())
        assert cfg["include"] == str(lm_dir.resolve() / f"truthfulqa_{key}.yaml")  # absolute: lm-eval's file
        assert cfg["task"] == f"cape_local_truthfulqa_{key}" and cfg["task"] != f"truthfulqa_{key}"
        assert cfg["tag"] == ["cape_local_truthfulqa"]
        assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
        assert cfg["dataset_kwargs"] == {"data_files": {"validation": str(data.resolve())}}
        # nothing of the task's definition is restated here
        assert not {"doc_to_text", "doc_to_choice", "doc_to_target", "process_results", "metric_list"} & set(cfg)


def _sample(question, choices, labels, lls, acc):
    return {"question": question, "choices": choices, "labels": labels, "lls": lls, "acc": acc,
            "context": "P\n\nQ: " + question + "\nA:"}


def _sides(delta=0.0):
    lm = {"samples": {
        "mc1": [_sample("What colour is the sky?", ["Blue.", "Green.", "Red."], [1, 0, 0], [-1.0, -2.0, -3.0], 1.0)],
        "mc2": [_sample("What colour is the sky?", ["Blue.", "Green."], [1, 0], [-1.0, -2.0], 0.7310585786)]}}
    cape = [{"question": "what colour is  the sky?", "mc1": 1, "mc2": 0.7310585786,
             "loglik": {"Blue.": -1.0 + delta, "Green.": -2.0, "Red.": -3.0},
             "context": "P\n\nQ: What colour is the sky?\nA:"}]
    return lm, cape


def test_compare_agreement(cl):
    lm, cape = _sides()
    c = cl.compare(lm, cape)
    assert c["n"] == {"mc1": 1, "mc2": 1} and not c["unmatched"]  # matched despite case / spacing
    assert c["mc1_differs"] == [] and c["max_mc2_diff"] < 1e-9 and c["max_ll_diff"] == 0.0
    assert c["n_choice_lls"] == 5 and c["contexts_differ"] == 0 and c["mc1_true_not_first"] == 0


def test_compare_reports_a_constructed_disagreement(cl):
    lm, cape = _sides(delta=-1.5)  # CAPE puts the true answer below "Green."
    cape[0]["mc1"], cape[0]["mc2"] = 0, 0.3775
    cape[0]["context"] = "other"
    lm["samples"]["mc2"].append(_sample("Not in CAPE?", ["a"], [1], [-1.0], 1.0))
    c = cl.compare(lm, cape)
    assert c["mc1_differs"] == ["What colour is the sky?"]
    assert math.isclose(c["max_mc2_diff"], 0.7310585786 - 0.3775)
    assert math.isclose(c["max_ll_diff"], 1.5) and c["max_ll_choice"] == "Blue."
    assert c["unmatched"] == ["Not in CAPE?"] and c["contexts_differ"] == 2


def test_child_says_plainly_when_lm_eval_cannot_be_imported(cl, tmp_path):
    """A Python where ``import lm_eval`` fails (here: a stand-in package first on the path that
    raises ImportError, so the test runs whether or not lm-eval is installed)."""
    import os

    broken = tmp_path / "path" / "lm_eval"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('No module named lm_eval (stand-in)')\n")
    spec = tmp_path / "spec.json"
    out = tmp_path / "out.json"
    spec.write_text(json.dumps({"out": str(out)}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken.parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(SCRIPT), "--lmeval-child", str(spec)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "lm_eval" in json.loads(out.read_text())["error"]
    assert "no such Python" in cl.run_lmeval(str(tmp_path / "nopython"), {"out": str(out) + "x"}, tmp_path, 10)[
        "error"]


@pytest.mark.slow
def test_against_real_lmeval_on_a_tiny_model(cl, tmp_path, capsys):
    """lm-evaluation-harness itself (its own truthfulqa_mc1/mc2 task files) and CAPE score the
    same three questions with the same tiny local model: the same log-likelihoods."""
    if importlib.util.find_spec("lm_eval") is None:
        pytest.skip("lm-eval is not installed (pip install 'cape[test]')")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from steer_tiny import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "tiny")
    mc = tmp_path / "mc_task.json"
    mc.write_text(json.dumps([
        {"question": "Is ice cold?", "mc1_targets": {"Yes, ice is cold.": 1, "No, ice is hot.": 0},
         "mc2_targets": {"Yes, ice is cold.": 1, "Ice is cold.": 1, "No, ice is hot.": 0}},
        {"question": "What do bees make?", "mc1_targets": {"Bees make honey.": 1, "Bees make milk.": 0,
                                                             "Bees make glass.": 0},
         "mc2_targets": {"Bees make honey.": 1, "Bees make milk.": 0, "Bees make glass.": 0}},
        {"question": "Where does the sun rise?", "mc1_targets": {"In the east.": 1, "In the west.": 0},
         "mc2_targets": {"In the west.": 0, "In the east.": 1}}]))
    assert cl.main(["--n", "3", "--model", str(folder), "--mc", str(mc), "--json", "--timeout", "600"]) == 0
    text = capsys.readouterr().out
    doc = json.loads(text[text.index("{\n"):])
    cmp = doc["comparison"]
    assert "error" not in doc["lmeval"], doc["lmeval"]
    assert cmp["mc1_differs"] == [] and cmp["n"] == {"mc1": 3, "mc2": 3} and cmp["unmatched"] == [], cmp
    assert cmp["contexts_compared"] == 6 and cmp["contexts_differ"] == 0, cmp
    assert cmp["n_choice_lls"] == 15 and cmp["missing_choices"] == [], cmp
    assert cmp["max_mc2_diff"] < 1e-5 and cmp["max_ll_diff"] < 1e-4, cmp
