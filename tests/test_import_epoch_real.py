"""Excerpts of Epoch AI's own Benchmarking Hub CSVs (CC BY 4.0; origin in
tests/fixtures/epoch/README.md), read by hand with ``csv`` and by CAPE."""

import csv
import json
from datetime import datetime

import pandas as pd
import pytest
from typer.testing import CliRunner

from cape.cli import app
from cape.errors import InputError
from cape.io import read_results

FILES = {"gpqa_diamond.csv": ("gpqa_diamond", "acc"), "swe_bench_verified.csv": ("swe_bench_verified", "resolved")}


@pytest.fixture
def real(fixtures):
    return fixtures / "epoch" / "real"


def by_hand(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def newest_runs(rows):
    """One row per model version: the run with the latest ``Started at``."""
    best = {}
    for r in rows:
        t = datetime.fromisoformat(r["Started at"].replace("Z", "+00:00"))
        if r["Model version"] not in best or t > best[r["Model version"]][0]:
            best[r["Model version"]] = (t, r)
    return {m: r for m, (_, r) in best.items()}


def test_real_epoch_files_round_trip(real):
    paths = [real / name for name in FILES]
    res = read_results(paths)
    assert set(res.formats.values()) == {"epoch"}
    scores = res.dataset.scores.set_index(["model", "benchmark"])
    models = res.dataset.models.set_index("model")
    for path in paths:
        bench, variant = FILES[path.name]
        rows = by_hand(path)
        kept = newest_runs(rows)
        assert (res.dataset.scores["benchmark"] == bench).sum() == len(kept)
        for model, r in kept.items():
            got = scores.loc[(model, bench)]
            assert got["value"] == pytest.approx(100 * float(r["mean_score"]))  # mean_score, not best
            assert got["stderr"] == pytest.approx(100 * float(r["stderr"]))
            assert got["variant"] == variant and pd.isna(got["n_shot"])
            m = models.loc[model]
            assert m["family"] == m["organisation"] == r["Organization"]
            assert m["kind"] == "frontier" and pd.isna(m["params"])  # Epoch gives no parameter count
            assert m["release_date"] == r["Release date"]
            if r["Training compute (FLOP)"]:
                assert float(m["flops"]) == pytest.approx(float(r["Training compute (FLOP)"]))
            else:
                assert pd.isna(m["flops"])
    # the real file's quirks, seen in it by hand
    gpqa = {r["Model version"]: r for r in by_hand(real / "gpqa_diamond.csv")}
    r1 = gpqa["DeepSeek-R1"]
    assert r1["mean_score"] != r1["Best score (across scorers)"]
    assert scores.loc[("DeepSeek-R1", "gpqa_diamond"), "value"] == pytest.approx(100 * float(r1["mean_score"]))
    assert "\n" in gpqa["gpt-5-2025-08-07_high"]["Training compute notes"]  # a quoted multi-line cell
    assert "," in gpqa["Eurus-2-7B-PRIME"]["Organization"]                 # several labs in one cell
    assert models.index.is_unique  # models in both files: one row each


def test_epoch_reruns_keep_the_newest_run(real, tmp_path):
    """Epoch lists a re-run beside the first run (claude-opus-4-6 on 2026-02-10 and 2026-02-18).
    The old reader refused the real file ('appears twice'); the newest run is kept, the older
    noted."""
    path = real / "swe_bench_verified.csv"
    rows = by_hand(path)
    twice = {r["Model version"] for r in rows if sum(x["Model version"] == r["Model version"] for x in rows) > 1}
    assert twice == {"claude-opus-4-6", "gpt-5.1-2025-11-13_high"}
    res = read_results(path)
    for model in twice:
        runs = sorted((r for r in rows if r["Model version"] == model), key=lambda r: r["Started at"])
        got = res.dataset.scores.set_index("model").loc[model, "value"]
        assert got == pytest.approx(100 * float(runs[-1]["mean_score"]))
        assert got != pytest.approx(100 * float(runs[0]["mean_score"]))
        assert any(model in line and runs[0]["Started at"] in line and "older run" in line for line in res.skipped)
    # the opposite: two runs with the same start time cannot be ordered and are refused
    text = path.read_text()
    head = text.split("\n", 1)[0]
    same = [r for r in rows if r["Model version"] == "claude-opus-4-6"]
    same[1]["Started at"] = same[0]["Started at"]
    bad = tmp_path / "swe_bench_verified.csv"
    with open(bad, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=head.split(","), lineterminator="\n")
        w.writeheader()
        w.writerows(same)
    with pytest.raises(InputError, match="appears twice"):
        read_results(bad)


def test_other_bundle_files_refused_by_name_or_skipped(real, tmp_path):
    """The bundle's mirrors of other boards name their score column per file: refused with a
    clear line (before, the generic table reader failed with 'no benchmark columns found'), or
    skipped with a note under skip_unknown. Headers are the real files' headers."""
    headers = {
        "hella_swag_external.csv": "Model version,Overall accuracy,Release date,Organization,Country,"
        "Training compute (FLOP),Training compute notes,Name,Shots,Notes,Source,Source link,id",
        "swe_bench_bash.csv": "Model version,% Resolved,Release date,Organization,Country,"
        "Training compute (FLOP),Training compute notes,Avg. Cost ($),Date run,Notes,Source,"
        "Source link,SWE-Agent Release Version,id",
    }
    for name, head in headers.items():
        path = tmp_path / name
        path.write_text(head + "\nsome-model,0.5,2025-01-01,Lab,,,,,0,,,,rec1\n")
        with pytest.raises(InputError, match=f"Epoch file '{name}' is not read"):
            read_results(path)
        res = read_results([path, real / "gpqa_diamond.csv"], skip_unknown=True)
        assert any(name in line and "not read" in line for line in res.skipped)
        assert set(res.dataset.scores["benchmark"]) == {"gpqa_diamond"}


def test_cli_ingest_and_show_real_epoch_files(real, cape_home):
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", *(str(real / n) for n in FILES), "--panel", "epoch-real", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["show", "epoch-real", "--json"])
    assert r.exit_code == 0, r.output
    shown = {m["model"]: m for m in json.loads(r.output)["models"]}
    gpqa = {r["Model version"]: r for r in by_hand(real / "gpqa_diamond.csv")}
    swe = newest_runs(by_hand(real / "swe_bench_verified.csv"))
    assert set(shown) == set(gpqa) | set(swe)
    for model, row in gpqa.items():
        assert shown[model]["gpqa_diamond"] == pytest.approx(100 * float(row["mean_score"]), abs=0.01)
    for model, row in swe.items():
        assert shown[model]["swe_bench_verified"] == pytest.approx(100 * float(row["mean_score"]), abs=0.01)


def test_a_folder_of_epoch_csvs_is_read_with_run_dates(real, tmp_path, fixtures):
    """`cape ingest FOLDER` picks up Epoch CSVs beside lm-eval JSON; an ordinary table in the
    folder is not read (it is named as a file instead) and is listed as skipped."""
    import shutil

    folder = tmp_path / "bundle"
    shutil.copytree(real, folder)
    shutil.copy(fixtures / "lmeval-real" / "v0.4_qwen2.5-1.5b_0shot.json", folder / "qwen.json")
    (folder / "notes.csv").write_text("model,hellaswag\nm,50\n")
    res = read_results(folder, skip_unknown=True)
    assert sorted(set(res.formats.values())) == ["epoch", "lm-eval"]
    assert any(s.endswith("notes.csv: not a results file") for s in res.skipped)
    scores = res.dataset.scores
    rows = newest_runs(by_hand(real / "gpqa_diamond.csv"))
    got = scores[scores["benchmark"] == "gpqa_diamond"].set_index("model")
    assert len(got) == len(rows)
    for model, r in rows.items():
        assert got.loc[model, "value"] == pytest.approx(float(r["mean_score"]) * 100)
        started = pd.Timestamp(r["Started at"]).tz_convert(None).isoformat()
        assert got.loc[model, "run_date"] == started
    # the same folder without the Epoch files: nothing Epoch is read
    for name in FILES:
        (folder / name).unlink()
    res = read_results(folder, skip_unknown=True)
    assert set(res.formats.values()) == {"lm-eval"}
    # and a folder with only an ordinary table holds no result files: one clear line
    only = tmp_path / "tables"
    only.mkdir()
    (only / "notes.csv").write_text("model,hellaswag\nm,50\n")
    with pytest.raises(InputError, match="holds no result files.*Epoch AI CSVs"):
        read_results(only)
