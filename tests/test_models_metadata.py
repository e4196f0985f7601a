"""Model metadata tables (`cape models set/list`) and deletions (`cape rm`), on real SQLite
files: the real lm-eval 0.3 LLaMA-7B file has no parameter count; a metadata table adds it
to one panel, all or nothing, and nothing else changes."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from cape import api
from cape.errors import CapeError, InputError
from cape.io import read_results
from cape.store import Store

from conftest import FIXTURES, run_cli

REAL = FIXTURES / "lmeval-real"
CSR = REAL / "v0.3_llama-7B_common_sense_reasoning_0-shot.json"
GSM = REAL / "v0.3_llama-7B_gsm8k_8-shot.json"
#: The 0.3 files name a local checkpoint (pretrained=/gaueko1/.../7B), so the id is given.
MID = "huggyllama/llama-7b"


def _ingest(panel: str, *files) -> None:
    api.ingest(list(files or (CSR, GSM)), panel, skip_unknown=True, model=MID)


def _csv(tmp_path, text: str, name: str = "meta.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _dump(db, panel: str) -> tuple[list, list]:
    """Every stored row of one panel, straight from the SQLite file (ids included)."""
    con = sqlite3.connect(db)
    try:
        models = con.execute("SELECT * FROM models WHERE panel = ? ORDER BY id", (panel,)).fetchall()
        scores = con.execute("SELECT s.* FROM scores s JOIN models m ON m.id = s.model_id "
                             "WHERE m.panel = ? ORDER BY s.id", (panel,)).fetchall()
    finally:
        con.close()
    return models, scores


def _export(panel: str, path) -> bytes:
    api.export_panel(panel, path)
    return path.read_bytes()


@pytest.fixture
def two_panels(cape_home, tmp_path):
    _ingest("mine")
    _ingest("other", CSR)
    db = cape_home / "cape.db"
    return db, _dump(db, "other"), _export("other", tmp_path / "other-before.csv")


# ------------------------------------------------------------------------ set metadata
def test_real_v03_file_has_no_params_and_a_metadata_table_sets_them(two_panels, tmp_path):
    db, other_rows, other_bytes = two_panels
    assert json.loads(CSR.read_text())["config"]["model_args"].startswith("pretrained=/")
    assert api.load_models("mine")["params"].isna().all()
    meta = _csv(tmp_path, f"model,params,release_date,family,organisation,d_model,n_layers,tokens\n"
                          f"{MID},6.7B,2023-02-24,LLaMA,Meta,4096,32,1T\n")
    report = api.set_metadata("mine", meta)
    assert report.models_updated == 1 and not report.models_added
    changed = {c["field"]: (c["old"], c["new"]) for c in report.changes}
    assert changed["params"] == (None, 6_700_000_000)
    wide = api.load_panel("mine")
    row = wide.loc[MID]
    assert row["params"] == 6_700_000_000
    assert (row["release_date"], row["family"], row["organisation"]) == ("2023-02-24", "LLaMA", "Meta")
    assert (row["d_model"], row["n_layers"], row["tokens"]) == (4096, 32, 10**12)
    # the scores are those of the file, untouched
    doc = json.loads(CSR.read_text())
    assert row["hellaswag"] == pytest.approx(100 * doc["results"]["hellaswag"]["acc_norm"])
    # the other panel, which holds the same model id, is unchanged to the byte
    assert _dump(db, "other") == other_rows
    assert _export("other", tmp_path / "other-after.csv") == other_bytes
    assert api.load_models("other")["params"].isna().all()
    # applying it again changes nothing
    again = api.set_metadata("mine", meta)
    assert not again.changed and again.models_unchanged == 1


def test_units_in_any_spelling_and_empty_cells_keep_values(two_panels, tmp_path):
    api.set_metadata("mine", _csv(tmp_path, f"model,params,family\n{MID},6.7e9,LLaMA\n"))
    api.set_metadata("mine", _csv(tmp_path, f"model,params_b,family\n{MID},6.74,\n", "b.csv"))
    m = api.load_models("mine").set_index("model").loc[MID]
    assert m["params"] == 6_740_000_000 and m["family"] == "LLaMA"


def test_dry_run_shows_changes_and_writes_nothing(two_panels, tmp_path):
    db, *_ = two_panels
    before = _dump(db, "mine")
    report = api.set_metadata("mine", _csv(tmp_path, f"model,params\n{MID},7B\n"), dry_run=True)
    assert report.dry_run and report.changes == [{"model": MID, "field": "params", "old": None,
                                                  "new": 7_000_000_000}]
    assert _dump(db, "mine") == before


def test_bad_row_writes_nothing_and_names_file_row_field(two_panels, tmp_path):
    db, *_ = two_panels
    before = Store().row_counts(), _dump(db, "mine")
    bad = _csv(tmp_path, f"model,params\n{MID},6.7B\nother-model,lots\n")
    with pytest.raises(InputError) as exc:
        api.set_metadata("mine", bad, add=True)
    msg = str(exc.value)
    assert str(bad) in msg and "row 3" in msg and "field 'params'" in msg and "lots" in msg
    bad_date = _csv(tmp_path, f"model,release_date\n{MID},2023-13\n", "d.csv")
    with pytest.raises(InputError, match=r"d\.csv, row 2, field 'release_date'"):
        api.set_metadata("mine", bad_date)
    assert (Store().row_counts(), _dump(db, "mine")) == before


def test_active_params_above_stored_params_is_refused(two_panels, tmp_path):
    db, *_ = two_panels
    api.set_metadata("mine", _csv(tmp_path, f"model,params\n{MID},6.7B\n"))
    before = _dump(db, "mine")
    with pytest.raises(InputError, match=r"a\.csv, row 2, field 'active_params'.*exceed"):
        api.set_metadata("mine", _csv(tmp_path, f"model,active_params\n{MID},8B\n", "a.csv"))
    assert _dump(db, "mine") == before


def test_unknown_models_are_listed_unless_add(two_panels, tmp_path):
    db, other_rows, _ = two_panels
    meta = _csv(tmp_path, f"model,params\n{MID},6.7B\nEleutherAI/pythia-1b,1B\nfoo/bar,2B\n")
    before = Store().row_counts()
    with pytest.raises(CapeError) as exc:
        api.set_metadata("mine", meta)
    msg = str(exc.value)
    assert "EleutherAI/pythia-1b" in msg and "foo/bar" in msg and "row 4" in msg and "--add" in msg
    assert Store().row_counts() == before  # not even the known model was updated
    report = api.set_metadata("mine", meta, add=True)
    assert report.models_added == ["EleutherAI/pythia-1b", "foo/bar"]
    models = api.load_models("mine").set_index("model")
    assert models.loc["foo/bar", "params"] == 2_000_000_000 and models.loc[MID, "params"] == 6_700_000_000
    assert _dump(db, "other") == other_rows


def test_score_columns_are_not_metadata(two_panels, tmp_path):
    with pytest.raises(InputError, match="column 'hellaswag' is not model metadata"):
        api.set_metadata("mine", _csv(tmp_path, f"model,params,hellaswag\n{MID},7B,70\n"))


def test_builtin_and_missing_panels_are_refused(two_panels, tmp_path):
    meta = _csv(tmp_path, f"model,params\n{MID},7B\n")
    with pytest.raises(CapeError, match="read-only"):
        api.set_metadata("paper-pythia", meta)
    with pytest.raises(CapeError, match="no panel named 'mien'"):
        api.set_metadata("mien", meta)


def test_ingest_of_a_metadata_table_names_the_command(tmp_path):
    meta = _csv(tmp_path, "model,params\nEleutherAI/pythia-1b,1B\n")
    with pytest.raises(InputError) as exc:
        read_results(meta)
    assert "metadata table" in str(exc.value) and "cape models set" in str(exc.value)
    # a table with no benchmark and a column that is not metadata keeps the old message
    with pytest.raises(InputError, match="no benchmark columns found") as exc:
        read_results(_csv(tmp_path, "model,colour\nx,red\n", "c.csv"), skip_unknown=True)
    assert "metadata table" not in str(exc.value)


# ------------------------------------------------------------------------------ delete
def test_delete_models_and_a_run_touch_nothing_else(two_panels, tmp_path):
    db, other_rows, other_bytes = two_panels
    sources = Store().panel_sources("mine")
    assert set(sources) == {f"lm-eval:{CSR.name}", f"lm-eval:{GSM.name}"}
    out = api.delete_source("mine", GSM.name)  # a file name names its run
    assert out == {"scores": sources[f"lm-eval:{GSM.name}"], "models": 0}
    assert set(Store().panel_sources("mine")) == {f"lm-eval:{CSR.name}"}
    assert "gsm8k" not in api.load_panel("mine").columns
    with pytest.raises(CapeError, match="no scores from source 'nope.json'"):
        api.delete_source("mine", "nope.json")
    with pytest.raises(CapeError, match="no model 'nope'"):
        api.delete_models("mine", ["nope", MID])
    assert len(api.load_models("mine")) == 1  # nothing removed by the refused call
    assert api.delete_models("mine", MID) == {"models": 1, "scores": sources[f"lm-eval:{CSR.name}"]}
    assert api.load_models("mine").empty
    # removing the last run of a model removes the model too
    _ingest("mine", CSR)
    assert api.delete_source("mine", f"lm-eval:{CSR.name}")["models"] == 1
    assert _dump(db, "other") == other_rows
    assert _export("other", tmp_path / "other-after.csv") == other_bytes


# --------------------------------------------------------------------------------- CLI
def test_cli_in_process_prompt_and_models(two_panels, tmp_path, monkeypatch, capsys):
    """The same commands in this process (fast): the prompt reads standard input."""
    from cape.cli import main

    db, other_rows, _ = two_panels
    meta = _csv(tmp_path, f"model,params\n{MID},6.7B\n")
    assert main(["models", "set", "mine", str(meta), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"][0]["new"] == 6_700_000_000
    assert main(["models", "list", "mine", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["params"] == 6_700_000_000
    mine = _dump(db, "mine")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no answer: refused
    assert main(["rm", "mine", "--model", MID]) == 2
    assert "refusing" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("no\n"))
    assert main(["rm", "mine"]) == 1
    assert _dump(db, "mine") == mine
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["rm", "mine", "--source", GSM.name]) == 0
    assert "1 score(s)" in capsys.readouterr().out
    assert main(["rm", "mine", "--yes"]) == 0
    assert Store().panel_names() == ["other"] and _dump(db, "other") == other_rows
    assert main(["rm", "mine", "-m", MID, "-s", CSR.name, "--yes"]) == 2


def _cli(*args, home, stdin=subprocess.DEVNULL, input=None):
    """Like conftest.run_cli, with control over standard input."""
    env = dict(os.environ, CAPE_HOME=str(home))
    kw = {"input": input} if input is not None else {"stdin": stdin}
    return subprocess.run([sys.executable, "-m", "cape.cli", *args], capture_output=True, text=True,
                          env=env, **kw)


@pytest.mark.slow  # real subprocesses
def test_cli_models_set_list_and_ingest_hint(tmp_path):
    home = tmp_path / "h"
    r = run_cli("ingest", str(CSR), "-p", "mine", "--skip-unknown", "--model", MID, home=home)
    assert r.returncode == 0, r.stderr
    meta = _csv(tmp_path, f"model,params\n{MID},6.7B\n")
    r = run_cli("ingest", str(meta), "-p", "mine", home=home)
    assert r.returncode == 2 and "metadata table" in r.stderr and "cape models set" in r.stderr
    r = run_cli("models", "set", "mine", str(meta), "--dry-run", home=home)
    assert r.returncode == 0 and "[dry run]" in r.stdout and "6700000000" in r.stdout
    r = run_cli("models", "list", "mine", "--json", home=home)
    assert json.loads(r.stdout)["models"][0]["params"] is None
    r = run_cli("models", "set", "mine", str(meta), home=home)
    assert r.returncode == 0, r.stderr
    r = run_cli("models", "list", "mine", "--json", home=home)
    assert json.loads(r.stdout)["models"][0]["params"] == 6_700_000_000
    assert "6.7B" in run_cli("models", "list", "mine", home=home).stdout
    bad = _csv(tmp_path, f"model,params\n{MID},-3B\n", "bad.csv")
    r = run_cli("models", "set", "mine", str(bad), home=home)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "bad.csv, row 2, field 'params'" in r.stderr


@pytest.mark.slow  # real subprocesses
def test_cli_rm_asks_refuses_without_stdin_and_leaves_other_panels(tmp_path):
    home = tmp_path / "h"
    for panel in ("mine", "other"):
        assert run_cli("ingest", str(CSR), "-p", panel, "--skip-unknown", "--model", MID,
                       home=home).returncode == 0
    db = home / "cape.db"
    other = _dump(db, "other")
    mine = _dump(db, "mine")
    r = _cli("rm", "mine", home=home)  # no standard input: refused, nothing removed
    assert r.returncode == 2 and "--yes" in r.stderr and "refusing" in r.stderr
    r = _cli("rm", "mine", home=home, input="n\n")
    assert r.returncode == 1 and "Nothing removed" in r.stdout
    assert _dump(db, "mine") == mine
    r = _cli("rm", "mine", "--model", MID, home=home, input="y\n")
    assert r.returncode == 0, r.stderr
    assert _dump(db, "mine")[0] == [] and _dump(db, "other") == other
    assert _cli("ingest", str(CSR), "-p", "mine", "--skip-unknown", "--model", MID, home=home).returncode == 0
    r = _cli("rm", "mine", "--source", CSR.name, "--yes", "--json", home=home)
    assert r.returncode == 0 and json.loads(r.stdout)["scores"] == len(other[1])
    r = _cli("rm", "mine", "--yes", home=home)
    assert r.returncode == 0, r.stderr
    assert "mine" not in Store(f"sqlite:///{db}").panel_names()
    assert _dump(db, "other") == other
    r = _cli("rm", "paper-pythia", "--yes", home=home)
    assert r.returncode == 2 and "read-only" in r.stderr


def test_a_run_in_a_folder_is_named_by_its_bare_file_name(tmp_path):
    """lm-eval folders store `lm-eval:org__model/results_<time>.json`: the bare file name names
    that run when it is unique, and two runs with the same bare name are refused by name."""
    a = tmp_path / "out" / "org__a"
    b = tmp_path / "out" / "org__b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    doc = json.loads(GSM.read_text())
    (a / "results_2024-05-01T10-00-00.json").write_text(json.dumps(doc))
    (b / "results_2024-05-02T10-00-00.json").write_text(json.dumps(doc))
    api.ingest(tmp_path / "out", "runs", model="org/a")
    out = api.delete_source("runs", "results_2024-05-01T10-00-00.json", dry_run=True)
    assert out["scores"] == 1
    assert api.resolve_source("runs", "results_2024-05-02T10-00-00.json") == (
        "lm-eval:org__b/results_2024-05-02T10-00-00.json")
    (b / "results_2024-05-02T10-00-00.json").rename(b / "results_2024-05-01T10-00-00.json")
    api.ingest(tmp_path / "out", "runs-2", model="org/a")
    with pytest.raises(CapeError, match="matches several sources"):
        api.resolve_source("runs-2", "results_2024-05-01T10-00-00.json")
