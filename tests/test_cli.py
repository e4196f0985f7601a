"""The `cape` command as a user runs it (a real subprocess, a real SQLite file)."""

import json

import pytest

from conftest import FIXTURES, run_cli

pytestmark = pytest.mark.slow  # real subprocesses; CI runs them


def test_panels_json_lists_the_five_reference_panels(cape_home):
    r = run_cli("panels", "--json", home=cape_home)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {x["name"]: x["models"] for x in rows} == {
        "paper-base": 63, "paper-pythia": 8, "paper-nc": 14, "paper-frontier": 39, "openllm-v1-base": 148}


def test_show_paper_pythia_two_benchmarks(cape_home):
    r = run_cli("show", "paper-pythia", "--benchmarks", "hellaswag,truthfulqa", home=cape_home)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "Pythia-" in line]
    assert len(rows) == 8
    assert "27.30" in rows[0] and "47.10" in rows[0]
    assert "HellaSwag" in r.stdout and "TruthfulQA" in r.stdout and "MMLU" not in r.stdout


def test_show_json_and_long(cape_home):
    r = run_cli("show", "paper-frontier", "--corrected", "--json", home=cape_home)
    payload = json.loads(r.stdout)
    v3 = next(m for m in payload["models"] if m["model"] == "DeepSeek-V3")
    assert v3["gpqa_diamond"] == 59.1 and payload["corrected"] is True and len(payload["log"]) == 2
    r = run_cli("show", "paper-nc", "--long", "--json", home=cape_home)
    assert len(json.loads(r.stdout)["scores"]) == 28


def test_show_clean_prints_what_it_did(cape_home):
    r = run_cli("show", "paper-base", "--clean", "--family", "llama-3", home=cape_home)
    assert r.returncode == 0
    assert "dropped Llama3-8B (duplicate_of:Llama-3-8B)" in r.stdout
    assert "Llama3-70B" not in r.stdout.split("dropped")[0]


def test_ingest_show_export_cycle(cape_home, tmp_path):
    r = run_cli("ingest", str(FIXTURES / "lmeval"), "--panel", "mine", "--family", "pythia", home=cape_home)
    assert r.returncode == 0, r.stderr
    assert "added 22 scores, 2 models" in r.stdout
    again = run_cli("ingest", str(FIXTURES / "lmeval"), "--panel", "mine", "--json", home=cape_home)
    rep = json.loads(again.stdout)
    assert rep["changed"] is False and rep["scores_unchanged"] == 22
    listed = json.loads(run_cli("panels", "--json", home=cape_home).stdout)
    assert {"name": "mine", "models": 2} .items() <= next(x for x in listed if x["name"] == "mine").items()
    out = tmp_path / "mine.csv"
    r = run_cli("export", "mine", "--format", "csv", "-o", str(out), "--json", home=cape_home)
    assert json.loads(r.stdout)["rows"] == 22 and out.is_file()
    r = run_cli("show", "mine", "--family", "pythia", "--json", home=cape_home)
    assert {m["model"] for m in json.loads(r.stdout)["models"]} == {"EleutherAI/pythia-70m", "EleutherAI/pythia-160m"}


@pytest.mark.parametrize("command", ["panels", "show", "ingest", "export", "benchmarks", "flags"])
def test_every_command_has_help(command, cape_home):
    r = run_cli(command, "--help", home=cape_home)
    assert r.returncode == 0 and "Usage" in r.stdout and "--json" in r.stdout


def test_errors_are_one_line_exit_2_no_traceback(cape_home):
    r = run_cli("show", "paper-bse", home=cape_home)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert "did you mean 'paper-base'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--debug", "show", "paper-bse", home=cape_home)
    assert "Traceback" in r.stderr


def test_usage_errors_are_one_line_too(cape_home):
    r = run_cli("ingest", home=cape_home)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_version_and_reference_listings(cape_home):
    assert run_cli("--version", home=cape_home).stdout.startswith("cape ")
    b = json.loads(run_cli("benchmarks", "--json", home=cape_home).stdout)
    assert next(x for x in b if x["name"] == "gpqa_diamond")["items"] == 198
    f = json.loads(run_cli("flags", "--json", home=cape_home).stdout)
    assert {"duplicate_of", "untraceable", "mc2_labelled_mc1"} <= {x["flag"] for x in f}
