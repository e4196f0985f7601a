"""The Open LLM Leaderboard v2 table (open-llm-leaderboard/contents): CAPE issue 13.

The fixture has the dataset's real header, four real rows and four constructed ones (see
tests/fixtures/openllm-v2/README.md). Before the fix the file was refused outright (its
metadata columns were taken for unknown benchmarks, a 0.0 parameter count rejected the
whole file) and, with --skip-unknown, stored the HTML link as the model id, the normalised
scores as accuracies and GPQA (all three subsets) as GPQA Diamond.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import cape
from cape.benchmarks import BENCHMARKS, try_resolve
from cape.errors import InputError
from cape.flags import FLAGS
from cape.io import read_results
from cape.io.leaderboard import NORMALISED, V2_TASKS, kind_from_type
from cape.schema import split_flags

# The leaderboard's random baselines (lower bounds) for the benchmarks normalised as a whole.
BASELINE = {"IFEval": 0.0, "MATH Lvl 5": 0.0, "GPQA": 0.25, "MMLU-PRO": 0.1}


@pytest.fixture
def csv_path(fixtures):
    return fixtures / "openllm-v2" / "contents.csv"


@pytest.fixture
def table(csv_path):
    """The fixture as the dataset's own types (bools, floats), for checks and conversions."""
    return pd.read_csv(csv_path)


@pytest.fixture
def result(csv_path):
    return read_results(csv_path)


def scores_of(res):
    return res.dataset.scores.set_index(["model", "benchmark", "variant"])


def kept_rows(table):
    """The rows the importer keeps: the first evaluation of each fullname."""
    return table.drop_duplicates("fullname", keep="first")


def test_model_id_is_fullname_never_the_html_link(result, table):
    ids = result.dataset.models["model"].tolist()
    assert ids == kept_rows(table)["fullname"].tolist()
    assert not any("<" in m or "href" in m for m in ids)
    assert set(result.dataset.scores["model"]) == set(ids)


def test_raw_scores_are_stored_as_percent_with_the_leaderboard_variants(result, table):
    s = scores_of(result)
    n = 0
    for rec in kept_rows(table).to_dict("records"):
        for task in V2_TASKS:
            raw = rec[task.column + " Raw"]
            if pd.isna(raw):
                continue
            row = s.loc[(rec["fullname"], task.benchmark, task.variant)]
            assert row["value"] == pytest.approx(raw * 100.0, abs=1e-9)
            assert row["n_shot"] == task.n_shot and task.task in row["harness"]
            n += 1
    assert n == 6 * 6  # six rows with raw scores, six benchmarks each
    # no normalised value for a model whose row has the raw one
    raw_models = set(kept_rows(table).dropna(subset=["GPQA Raw"])["fullname"])
    normalised = result.dataset.scores.query("variant == @NORMALISED")
    assert not set(normalised["model"]) & raw_models


def test_issue_example_gpqa_is_raw_37_5_not_normalised_16_67(result):
    s = scores_of(result)
    gpqa = s.loc[("example-org/merge-7B", "gpqa_all", "acc_norm"), "value"]
    assert gpqa == pytest.approx(37.5)
    # the real row: Yi-1.5-34B has GPQA Raw 0.3658 (normalised 15.44)
    assert s.loc[("01-ai/Yi-1.5-34B", "gpqa_all", "acc_norm"), "value"] == pytest.approx(36.577181208)
    # the constructed opposite: a stored 16.67 would be the normalised value, not accuracy
    assert not (result.dataset.scores["value"].sub(16.666666).abs() < 1e-3).any()


def test_gpqa_is_its_own_benchmark_not_diamond(result):
    b = set(result.dataset.scores["benchmark"])
    assert "gpqa_all" in b and "gpqa_diamond" not in b
    assert BENCHMARKS["gpqa_all"].items == 546 and BENCHMARKS["gpqa_diamond"].items == 198
    assert try_resolve("leaderboard_gpqa").benchmark == "gpqa_all"
    assert try_resolve("GPQA Diamond").benchmark == "gpqa_diamond"


def test_math_lvl5_and_musr_are_known_benchmarks():
    assert try_resolve("MATH Lvl 5").benchmark == "math_lvl5"
    assert try_resolve("leaderboard_math_hard").benchmark == "math_lvl5"
    assert try_resolve("minerva_math").benchmark == "math"  # the whole of MATH stays apart
    assert try_resolve("MUSR").benchmark == "musr" and BENCHMARKS["musr"].items == 756
    assert "strict_acc_mean" in BENCHMARKS["ifeval"].variants


def test_normalised_only_row_is_stored_as_variant_normalised(result, table):
    s = result.dataset.scores
    m = "example-org/normalised-only-moe"
    mine = s[s["model"] == m]
    assert set(mine["variant"]) == {NORMALISED} and len(mine) == 6
    rec = table.set_index("fullname").loc[m]
    for task in V2_TASKS:
        got = mine[mine["benchmark"] == task.benchmark]["value"].item()
        assert got == pytest.approx(rec[task.column])


def test_fixture_follows_the_leaderboard_normalisation(table):
    """normalised = max(raw - b, 0) / (1 - b) * 100: true of the real rows and the constructed ones."""
    full = table.dropna(subset=["GPQA Raw"])
    for col, b in BASELINE.items():
        expect = (full[col + " Raw"] - b).clip(lower=0) / (1 - b) * 100
        assert (full[col] - expect).abs().max() < 1e-9, col
    # and the constructed case fails the check when the normalised value is taken for raw
    assert not ((full["GPQA"] / 100 - full["GPQA Raw"]).abs() < 1e-9).all()


def test_params_kind_flags_and_the_zero_params_row(result):
    models = result.dataset.models.set_index("model")
    assert models.loc["01-ai/Yi-1.5-34B", "params"] == 34_389_000_000
    assert models.loc["0-hero/Matter-0.2-7B-DPO", "params"] == 7_242_000_000
    unknown = models.loc["example-org/size-unknown"]
    assert pd.isna(unknown["params"]) and "params_unknown" in split_flags(unknown["flags"])
    assert len(result.dataset.scores.query("model == 'example-org/size-unknown'")) == 6
    kinds = models["kind"].astype(object).where(models["kind"].notna(), None).to_dict()
    assert kinds == {"0-hero/Matter-0.2-7B-DPO": "instruct", "01-ai/Yi-1.5-34B": "base",
                     "01-ai/Yi-1.5-34B-Chat": "instruct", "01-ai/Yi-1.5-9B": "base",
                     "example-org/merge-7B": None, "example-org/size-unknown": None,
                     "example-org/normalised-only-moe": "base"}
    flags = {m: set(split_flags(f)) for m, f in models["flags"].items()}
    assert flags["example-org/merge-7B"] == {"leaderboard_flagged", "merged"}
    assert flags["example-org/normalised-only-moe"] == {"moe", "hub_unavailable"}
    assert flags["01-ai/Yi-1.5-34B"] == set()
    assert all(f in FLAGS for fs in flags.values() for f in fs)


def test_metadata_is_kept_on_the_model_rows(result):
    m = result.dataset.models.set_index("model").loc["01-ai/Yi-1.5-34B"]
    assert m["precision"] == "bfloat16" and m["architecture"] == "LlamaForCausalLM"
    assert m["licence"] == "apache-2.0" and m["base_model"] == "01-ai/Yi-1.5-34B"
    assert m["upload_date"] == "2024-05-11" and m["submission_date"] == "2024-06-12"
    assert bool(m["official_provider"]) is True and bool(m["chat_template"]) is False
    assert m["leaderboard_type"] == "🟢 pretrained" and m["generation"] == 0
    assert m["co2_kg"] == pytest.approx(22.7033978747449)


def test_second_evaluation_of_a_model_is_skipped_and_reported(result):
    assert any("row 7" in line and "example-org/merge-7B" in line and "float16" in line
               for line in result.skipped)
    # the first row (GPQA Raw 0.375) is kept, not the second (0.38)
    assert scores_of(result).loc[("example-org/merge-7B", "gpqa_all", "acc_norm"), "value"] == pytest.approx(37.5)


@pytest.mark.parametrize("fmt", ["parquet", "json", "rows"])
def test_parquet_and_json_exports_read_the_same(result, table, tmp_path, fmt):
    if fmt == "parquet":
        path = tmp_path / "contents.parquet"
        table.to_parquet(path, index=False)
    else:
        path = tmp_path / "contents.json"
        records = json.loads(table.to_json(orient="records", force_ascii=False))
        doc = records if fmt == "json" else {
            "features": [{"feature_idx": i, "name": c} for i, c in enumerate(table.columns)],
            "rows": [{"row_idx": i, "row": r, "truncated_cells": []} for i, r in enumerate(records)]}
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    other = read_results(path)
    cols = ["model", "benchmark", "variant", "value", "n_shot"]
    a = result.dataset.scores[cols].reset_index(drop=True)
    b = other.dataset.scores[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    mcols = ["model", "params", "kind", "flags"]
    pd.testing.assert_frame_equal(result.dataset.models[mcols].reset_index(drop=True),
                                  other.dataset.models[mcols].reset_index(drop=True), check_dtype=False)


def test_ingest_round_trip_through_the_store(csv_path):
    cape.ingest(csv_path, "olb-v2")
    scores = cape.load_scores("olb-v2").set_index(["model", "benchmark", "variant"])
    assert scores.loc[("01-ai/Yi-1.5-9B", "math_lvl5", "exact_match"), "value"] == pytest.approx(11.404833836858005)
    assert scores.loc[("01-ai/Yi-1.5-9B", "musr", "acc_norm"), "value"] == pytest.approx(43.278124999999995)
    assert scores.loc[("example-org/normalised-only-moe", "gpqa_all", NORMALISED), "value"] == pytest.approx(20 / 3)
    # the panel's gpqa_all column holds raw scores only; normalised ones have a column of their own
    wide = cape.load_panel("olb-v2")
    assert pd.isna(wide.loc["example-org/normalised-only-moe", "gpqa_all"])
    assert wide.loc["example-org/normalised-only-moe", "gpqa_all:normalised"] == pytest.approx(20 / 3)
    assert wide.attrs["cape"]["variants"]["gpqa_all"] == ["acc_norm"]
    assert wide["gpqa_all:normalised"].notna().sum() == 1
    models = cape.load_models("olb-v2").set_index("model")
    assert models.loc["01-ai/Yi-1.5-34B-Chat", "kind"] == "instruct"
    assert models.loc["01-ai/Yi-1.5-34B-Chat", "params"] == 34_389_000_000
    assert pd.isna(models.loc["example-org/size-unknown", "params"])
    assert "params_unknown" in split_flags(models.loc["example-org/size-unknown", "flags"])
    assert not any("<" in m for m in models.index)
    # clean drops the model the leaderboard flags, and only it
    clean = cape.load_models("olb-v2", clean=True)
    assert set(models.index) - set(clean["model"]) == {"example-org/merge-7B"}


def test_kind_from_type_labels():
    assert kind_from_type("🟢 pretrained") == "base"
    assert kind_from_type("🟩 continuously pretrained") == "base"
    assert kind_from_type("💬 chat models (RLHF, DPO, IFT, ...)") == "instruct"
    for label in ("🔶 fine-tuned on domain-specific datasets", "🤝 base merges and moerges",
                  "🌸 multimodal", "❓ other", "", None):
        assert kind_from_type(label) is None


# ------------------------------------------------------------------ bad input
def _write(table, tmp_path, name="bad.csv"):
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


def test_html_in_fullname_is_an_error(table, tmp_path):
    bad = table.copy()
    bad.loc[2, "fullname"] = bad.loc[2, "Model"]
    with pytest.raises(InputError, match=r"bad\.csv, row 4, field 'fullname': model id is HTML markup"):
        read_results(_write(bad, tmp_path))


def test_html_model_column_without_fullname_is_an_error(table, tmp_path):
    """A generic table whose model column is the leaderboard's link is refused, not stored."""
    bad = table[["Model", "IFEval"]].rename(columns={"Model": "model"})
    with pytest.raises(InputError, match=r"row 2, field 'model': model id is HTML markup"):
        read_results(_write(bad, tmp_path))


@pytest.mark.parametrize("col, cell, message", [
    ("GPQA Raw", "37.5", "outside 0-1"),
    ("GPQA", "160", "outside 0-100"),
    ("MUSR Raw", "n/a", "'n/a' is not a number"),
    ("#Params (B)", "-7", "must not be negative"),
    ("Flagged", "maybe", "not true or false"),
])
def test_bad_cells_name_file_row_and_field(table, tmp_path, col, cell, message):
    bad = table.astype(object)
    bad.loc[3, col] = cell
    with pytest.raises(InputError, match=rf"bad\.csv, row 5, field '{re.escape(col)}'.*{message}"):
        read_results(_write(bad, tmp_path))


def test_unknown_extra_column_is_reported_not_guessed(table, tmp_path):
    extra = table.assign(**{"Pretraining tokens (T)": 1.0})
    res = read_results(_write(extra, tmp_path))
    assert any("Pretraining tokens (T)" in line for line in res.skipped)
    assert len(res.dataset.scores) == len(read_results(_write(table, tmp_path, "ok.csv")).dataset.scores)
