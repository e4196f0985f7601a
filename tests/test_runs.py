"""Several runs of one model (issue 13): newest run wins, older runs kept as history, an
explicit pick, a conflict on one benchmark never blocks another, and shots are part of a
score's identity in the wide view.

The two runs are a real lm-evaluation-harness 0.4 file (tests/fixtures/lmeval-real,
Qwen2.5-1.5B, results_2025-03-03T00-05-12.300060.json upstream) stored under its upstream
name, and a copy of it where we changed only the timestamp in the file name and the
``date`` field (one day later) and one value (hellaswag acc_norm 0.678550... -> 0.70).
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cape import analysis, api
from cape.errors import CapeError
from cape.panels import runs

from conftest import FIXTURES, run_cli

REAL = FIXTURES / "lmeval-real"
QWEN = REAL / "v0.4_qwen2.5-1.5b_0shot.json"
OLD = "results_2025-03-03T00-05-12.300060.json"
NEW = "results_2025-03-04T00-05-12.300060.json"
LLAMA = "huggyllama/llama-7b"  # the 0.3 llama files name a local path (see test_import_lmeval_real)


def _two_runs(tmp_path, *, new_value_in=NEW):
    """A folder as lm-eval leaves it after two runs of one model; returns (folder, old, new)
    hellaswag acc_norm in percent. ``new_value_in`` says which run gets the changed value."""
    folder = tmp_path / "results" / "Qwen__Qwen2.5-1.5B"
    folder.mkdir(parents=True)
    doc = json.loads(QWEN.read_text())
    original = doc["results"]["hellaswag"]["acc_norm,none"] * 100
    shutil.copy(QWEN, folder / OLD)
    later = dict(doc, date=doc["date"] + 86400)
    (folder / NEW).write_text(json.dumps(later))
    # the changed value goes into the run named by new_value_in (its name and its date)
    target = folder / new_value_in
    changed = json.loads(target.read_text())
    changed["results"]["hellaswag"]["acc_norm,none"] = 0.70
    target.write_text(json.dumps(changed))
    return folder.parent, original, 70.0


def test_newest_run_wins_and_says_so(tmp_path):
    folder, old, new = _two_runs(tmp_path)
    api.ingest(folder, "qwen", skip_unknown=True)
    df = api.load_panel("qwen")
    assert df.loc["Qwen/Qwen2.5-1.5B", "hellaswag"] == pytest.approx(new)
    info = df.attrs["cape"]
    assert info["left_out"] == {}
    assert any("older runs kept as history" in line for line in info["log"])
    # the other benchmarks are there, read from the same runs
    assert {"arc_challenge", "mmlu", "winogrande"} <= set(info["benchmarks"])


def test_the_rule_can_say_the_opposite_when_the_new_value_is_in_the_older_run(tmp_path):
    folder, old, new = _two_runs(tmp_path, new_value_in=OLD)
    api.ingest(folder, "qwen", skip_unknown=True)
    # now the file with the later timestamp holds the upstream value: that one wins
    assert api.load_panel("qwen").loc["Qwen/Qwen2.5-1.5B", "hellaswag"] == pytest.approx(old)


def test_history_lists_every_run_with_its_status(tmp_path):
    folder, old, new = _two_runs(tmp_path)
    api.ingest(folder, "qwen", skip_unknown=True)
    plain = api.load_scores("qwen")
    assert "status" not in plain.columns  # the plain long form is unchanged
    hist = api.load_scores("qwen", history=True)
    hs = hist[(hist["benchmark"] == "hellaswag") & (hist["variant"] == "acc_norm")].set_index("status")
    assert len(hs) == 2
    assert hs.loc["older run", "value"] == pytest.approx(old)
    # the run date is the file's own `date` (seconds since the epoch, UTC), not its name
    start = json.loads(QWEN.read_text())["date"]
    utc = lambda t: pd.Timestamp(t, unit="s").round("us").isoformat()  # noqa: E731
    assert hs.loc["older run", "run_date"] == utc(start) == "2025-03-02T23:52:52.260894"
    assert hs.loc["current", "value"] == pytest.approx(new)
    assert hs.loc["current", "run_date"] == utc(start + 86400)
    assert hist["current"].sum() == (hist["status"] == "current").sum() == len(hist) // 2
    res = run_cli("show", "qwen", "--history", "--json", "-b", "hellaswag")
    assert res.returncode == 0, res.stderr
    statuses = sorted(r["status"] for r in json.loads(res.stdout)["scores"])
    assert statuses == ["current", "current", "older run", "older run"]


def test_an_explicit_run_is_used(tmp_path):
    folder, old, new = _two_runs(tmp_path)
    api.ingest(folder, "qwen", skip_unknown=True)
    picked = api.load_panel("qwen", run="2025-03-03")
    assert picked.loc["Qwen/Qwen2.5-1.5B", "hellaswag"] == pytest.approx(old)
    hist = api.load_scores("qwen", run="2025-03-03")
    assert set(hist.loc[hist["source"].str.contains(NEW), "status"]) == {"not picked"}
    with pytest.raises(CapeError, match="no score comes from a run matching '1999'"):
        api.load_panel("qwen", run="1999")


def _pythia_with_conflicting_gsm8k(tmp_path):
    """paper-pythia in a stored panel, plus a second source giving Pythia-1B another gsm8k
    value at the same variant and shots (no run date orders the two)."""
    api.export_panel("paper-pythia", tmp_path / "pythia.csv")
    api.ingest(tmp_path / "pythia.csv", "mine")
    s = api.load_scores("mine")
    row = s[(s["model"] == "Pythia-1B") & (s["benchmark"] == "gsm8k")].iloc[0]
    other = pd.DataFrame([{"model": "Pythia-1B", "benchmark": "gsm8k", "variant": row["variant"],
                           "value": float(row["value"]) + 1.5, "n_shot": row["n_shot"],
                           "source": "another paper"}])
    other.to_csv(tmp_path / "other.csv", index=False)
    api.ingest(tmp_path / "other.csv", "mine", units="percent")
    return row


def test_a_conflict_on_gsm8k_does_not_block_hellaswag_truthfulqa(tmp_path):
    row = _pythia_with_conflicting_gsm8k(tmp_path)
    df = api.load_panel("mine")
    info = df.attrs["cape"]
    assert "gsm8k" not in df.columns and "gsm8k" in info["left_out"]
    assert any(line.startswith("left out gsm8k:") for line in info["log"])
    mine = analysis.family_coupling(df, "hellaswag:truthfulqa", n_permutations=99, n_bootstrap=200, seed=0)
    ref = analysis.family_coupling(api.load_panel("paper-pythia"), "hellaswag:truthfulqa",
                                   n_permutations=99, n_bootstrap=200, seed=0)
    assert mine.table["r"].tolist() == pytest.approx(ref.table["r"].tolist())
    assert mine.table["n"].tolist() == ref.table["n"].tolist() == [8]
    # the conflicting benchmark itself is refused, with the conflict counted right
    with pytest.raises(CapeError) as err:
        analysis.family_coupling(df, "gsm8k:truthfulqa", n_permutations=99, n_bootstrap=200, seed=0)
    msg = str(err.value)
    shots = f"{int(row['n_shot'])}-shot" if pd.notna(row["n_shot"]) else "shots unknown"
    assert (f"model 'Pythia-1B' has 2 different gsm8k ({row['variant']}, {shots}) values "
            f"{float(row['value']):g}, {float(row['value']) + 1.5:g} from 2 sources") in msg


def test_two_variants_in_conflict_still_count_two_values(tmp_path):
    """Two runs without a date (renamed files), differing in acc and acc_norm: four rows,
    two values per score; the message says 2, not 4."""
    folder = tmp_path / "runs"
    folder.mkdir()
    doc = json.loads(QWEN.read_text())
    shutil.copy(QWEN, folder / "first.json")
    hs = dict(doc["results"]["hellaswag"], **{"acc_norm,none": 0.70, "acc,none": 0.52})
    (folder / "second.json").write_text(json.dumps(dict(doc, results=dict(doc["results"], hellaswag=hs))))
    api.ingest(folder, "undated", skip_unknown=True)
    df = api.load_panel("undated")
    why = df.attrs["cape"]["left_out"]["hellaswag"]
    assert " has 2 different hellaswag " in why and "from 2 sources" in why
    assert "arc_challenge" in df.columns  # the rest of the runs is usable
    # the same two files with equal values are no conflict (the verdict can go either way)
    (folder / "second.json").write_text(QWEN.read_text())
    api.ingest(folder, "same", skip_unknown=True)
    assert api.load_panel("same").attrs["cape"]["left_out"] == {}


def test_gsm8k_8_shot_and_0_shot_are_not_a_clash(tmp_path):
    files = [REAL / "v0.3_llama-7B_gsm8k_8-shot.json", REAL / "v0.3_llama-7B_mathematical_reasoning_0-shot.json"]
    api.ingest(files, "llama", skip_unknown=True, model=LLAMA)
    by_hand = {n: json.loads(f.read_text())["results"]["gsm8k"]["acc"] * 100
               for n, f in zip((8, 0), files)}
    assert by_hand[8] != by_hand[0]
    eight = api.load_panel("llama", shots={"gsm8k": 8})
    assert eight.loc[LLAMA, "gsm8k"] == pytest.approx(by_hand[8])
    assert eight.attrs["cape"]["shots"]["gsm8k"] == [8]
    assert eight.attrs["cape"]["left_out"] == {}
    zero = api.load_panel("llama", shots=0)
    assert zero.loc[LLAMA, "gsm8k"] == pytest.approx(by_hand[0])
    five = api.load_panel("llama", shots={"gsm8k": 5})  # asked for shots it does not have
    assert "gsm8k" not in five.columns  # no model has it: no column, and the log says why
    assert f"gsm8k: 1 model(s) have no 5-shot score (shots asked for): {LLAMA}" in five.attrs["cape"]["log"]
    # default: the shot count most models have; one model with one of each -> the smaller, said
    default = api.load_panel("llama")
    assert default.attrs["cape"]["shots"]["gsm8k"] == [0]
    assert any(line.startswith("gsm8k: models with several shot counts use the 0-shot")
               for line in default.attrs["cape"]["log"])
    # both readings are current: they measure different things
    hist = api.load_scores("llama", history=True, benchmarks="gsm8k")
    assert set(hist["status"]) == {"current"} and sorted(hist["n_shot"]) == [0, 8]


def test_runs_orders_by_the_file_name_time():
    scores = pd.DataFrame({
        "model": ["m"] * 3, "benchmark": ["hellaswag"] * 3, "variant": ["acc"] * 3,
        "value": [50.0, 51.0, 52.0], "n_shot": [0, 0, 0],
        "source": ["lm-eval:m/results_2024-05-02T10-00-00.json",
                   "lm-eval:m/results_2024-05-01T10-00-00.json",
                   "lm-eval:m/results_2024-05-02T10-00-00.json"],
    })
    # two runs with the same time and different values: a conflict, not a guess
    assert set(runs(scores)["status"]) == {"conflict", "older run"}
    scores.loc[2, "source"] = "lm-eval:m/results_2024-05-03T09-00-00.json"
    out = runs(scores)
    assert out["status"].tolist() == ["older run", "older run", "current"]


def test_the_coupling_command_runs_on_a_panel_with_a_conflict_and_names_it(tmp_path, cape_home):
    _pythia_with_conflicting_gsm8k(tmp_path)
    res = run_cli("coupling", "--panel", "mine", "--pair", "hellaswag:truthfulqa", "--resamples", "200",
                  "--permutations", "99", "--seed", "0", "--json", home=cape_home)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["table"][0]["n"] == 8
    assert "left out gsm8k" in res.stderr and "2 different gsm8k" in res.stderr
    bad = run_cli("coupling", "--panel", "mine", "--pair", "gsm8k:truthfulqa", home=cape_home)
    assert bad.returncode != 0 and "has 2 different gsm8k" in bad.stderr


def test_the_run_date_comes_from_the_file_when_files_are_renamed(tmp_path):
    """Files renamed (no time in the name) and stored under a chosen source still order by
    lm-eval's own `date`; and where a file's name and `date` disagree, `date` decides."""
    folder, old, new = _two_runs(tmp_path)
    qwen = folder / "Qwen__Qwen2.5-1.5B"
    flat = tmp_path / "flat"
    flat.mkdir()
    # the newer run (changed value) gets the name that sorts first and reads as older
    shutil.copy(qwen / NEW, flat / "results_2020-01-01T00-00-00.json")
    shutil.copy(qwen / OLD, flat / "run-b.json")
    api.ingest(flat, "renamed", skip_unknown=True)
    assert api.load_panel("renamed").loc["Qwen/Qwen2.5-1.5B", "hellaswag"] == pytest.approx(new)
    hist = api.load_scores("renamed", history=True, benchmarks="hellaswag")
    assert sorted(hist["status"]) == ["current", "current", "older run", "older run"]
    # the opposite: without a `date`, the name's time is all there is, and it decides
    for name in ("results_2020-01-01T00-00-00.json", "run-b.json"):
        doc = json.loads((flat / name).read_text())
        doc.pop("date")
        (flat / name).write_text(json.dumps(doc))
    (flat / "run-b.json").rename(flat / "results_2019-01-01T00-00-00.json")
    api.ingest(flat, "by-name", skip_unknown=True)
    assert api.load_panel("by-name").loc["Qwen/Qwen2.5-1.5B", "hellaswag"] == pytest.approx(new)
    (flat / "results_2019-01-01T00-00-00.json").rename(flat / "results_2021-01-01T00-00-00.json")
    api.ingest(flat, "by-name-2", skip_unknown=True)
    assert api.load_panel("by-name-2").loc["Qwen/Qwen2.5-1.5B", "hellaswag"] == pytest.approx(old)


def test_a_long_table_can_carry_run_dates(tmp_path):
    table = tmp_path / "runs.csv"
    table.write_text("model,benchmark,variant,value,n_shot,source,run_date\n"
                     "m,hellaswag,acc_norm,50,0,lab-eval-a,2024-05-02T10:00:00\n"
                     "m,hellaswag,acc_norm,55,0,lab-eval-b,2024-05-01\n"
                     "m,truthfulqa,mc2,40,0,lab-eval-a,2024-05-02T12:00:00+02:00\n")
    api.ingest(table, "dated", units="percent")
    hist = api.load_scores("dated", history=True).set_index(["benchmark", "source"])
    assert hist.loc[("hellaswag", "lab-eval-a"), "status"] == "current"
    assert hist.loc[("hellaswag", "lab-eval-b"), "status"] == "older run"
    assert hist.loc[("truthfulqa", "lab-eval-a"), "run_date"] == "2024-05-02T10:00:00"  # to UTC
    assert api.load_panel("dated").loc["m", "hellaswag"] == 50
    # swap the dates: the other reading wins
    table.write_text(table.read_text().replace("2024-05-02T10:00:00\n", "2024-04-30T10:00:00\n"))
    api.ingest(table, "dated-2", units="percent")
    assert api.load_panel("dated-2").loc["m", "hellaswag"] == 55


def test_a_bad_run_date_is_refused_naming_file_row_and_field(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("model,benchmark,value,source,run_date\nm,hellaswag,50,a,2024-05-02\n"
                     "m,truthfulqa,40,a,last tuesday\n")
    with pytest.raises(CapeError) as err:
        api.ingest(table, "bad", units="percent")
    msg = str(err.value)
    assert "bad.csv" in msg and "row 3" in msg and "run_date" in msg and "last tuesday" in msg
    with pytest.raises(CapeError):
        api.load_panel("bad")  # nothing was written


def test_a_score_stored_without_a_run_date_gets_it_on_reingest(tmp_path):
    """A store written before schema 3 holds scores without run_date: ingesting the same file
    again fills it in, counts the scores unchanged and raises no conflict."""
    from sqlalchemy import update

    from cape.store import Store, schema
    folder, old, new = _two_runs(tmp_path)
    _, first = api.ingest(folder, "later", skip_unknown=True)
    store = Store()
    with store.engine.begin() as conn:
        conn.execute(update(schema.scores).values(run_date=None))
    assert api.load_scores("later")["run_date"].isna().all()
    _, again = api.ingest(folder, "later", skip_unknown=True)
    assert again.scores_unchanged == first.scores_added and again.scores_added == 0
    assert api.load_scores("later")["run_date"].notna().all()
