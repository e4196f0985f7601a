"""The built-in reference panels: contents, flags, clean rules, errata, and provenance."""

import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cape
from cape.flags import FLAGS, flag_name
from cape.panels import BUILTIN_PANELS, load_builtin
from cape.schema import Dataset, split_flags

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_MODELS = {"paper-base": 63, "paper-pythia": 8, "paper-nc": 14, "paper-frontier": 39,
                   "openllm-v1-base": 148}


def test_panel_model_counts():
    table = cape.list_panels()
    assert dict(zip(table["name"], table["models"])) == EXPECTED_MODELS


@pytest.mark.parametrize("name", BUILTIN_PANELS)
def test_builtin_panels_are_valid_and_cite_sources(name):
    panel = load_builtin(name)
    # the shipped data passes the same validator as any import
    checked = Dataset.from_frames(panel.models, panel.scores).validate()
    assert len(checked.models) == EXPECTED_MODELS[name]
    assert panel.scores["source"].notna().all() and (panel.scores["source"].str.len() > 10).all()
    assert panel.models["source"].notna().all()
    assert panel.scores["value"].between(0, 100).all()
    assert panel.models["params"].isna().all() or (panel.models["params"].dropna() > 0).all()
    for text in list(panel.models["flags"]) + list(panel.scores["flags"]):
        for f in split_flags(text):
            assert flag_name(f) in FLAGS, f"{name}: unregistered flag {f}"


def test_paper_pythia_holds_the_r_minus_0989_data():
    df = cape.load_panel("paper-pythia")
    assert list(df.index) == ["Pythia-70M", "Pythia-160M", "Pythia-410M", "Pythia-1B",
                              "Pythia-1.4B", "Pythia-2.8B", "Pythia-6.9B", "Pythia-12B"]
    assert df["d_model"].tolist() == [512, 768, 1024, 2048, 2048, 2560, 4096, 5120]
    assert df["params"].iloc[0] == 70_000_000
    r = np.corrcoef(df["hellaswag"].astype(float), df["truthfulqa"].astype(float))[0, 1]
    assert round(r, 3) == -0.989
    assert df.attrs["cape"]["variants"]["truthfulqa"] == ["mc1"]


def test_paper_base_flags_every_known_problem():
    m = cape.load_models("paper-base").set_index("model")
    assert "duplicate_of:Llama-3-8B" in m.loc["Llama3-8B", "flags"]
    assert "duplicate_of:Llama-3-70B" in m.loc["Llama3-70B", "flags"]
    assert m.loc["GPT-J-6B", "family"] == "Pythia"
    assert "family_mislabelled:GPT-J" in m.loc["GPT-J-6B", "flags"]
    assert "family_mislabelled:GPT-NeoX" in m.loc["GPT-NeoX-20B", "flags"]
    for name in ("Gemma-3-4B", "Gemma-4-E4B", "Qwen3-8B"):
        assert "untraceable" in m.loc[name, "flags"]
    assert {"instruct_model", "effective_params"} <= set(split_flags(m.loc["Gemma-4-E4B", "flags"]))
    assert m.loc["Gemma-4-E4B", "kind"] == "instruct"
    s = cape.load_scores("paper-base")
    tqa = s[s["benchmark"] == "truthfulqa"]
    assert (tqa["variant"] == "mc1").all()
    assert tqa["flags"].str.contains("mc2_labelled_mc1").all()
    falcon = tqa.set_index("model").loc[["Falcon-7B", "Falcon-40B"]]
    assert falcon["value"].tolist() == [34.26, 41.72]
    assert falcon["flags"].str.contains("conflicting_value_in_release").all()


def test_clean_resolves_by_stated_rules():
    raw = cape.load_panel("paper-base")
    cleaned = cape.load_panel("paper-base", clean=True)
    dropped = set(raw.index) - set(cleaned.index)
    assert dropped == {"Llama3-8B", "Llama3-70B", "Gemma-3-4B", "Gemma-4-E4B", "Qwen3-8B"}
    assert cleaned.loc["GPT-J-6B", "family"] == "GPT-J"
    assert cleaned.loc["GPT-NeoX-20B", "family"] == "GPT-NeoX"
    assert "Pythia-12B" in cleaned.index and "partially_estimated" in cleaned.loc["Pythia-12B", "flags"]
    assert cleaned.attrs["cape"]["variants"]["truthfulqa"] == ["mc2"]
    assert cleaned.loc["Llama-3-8B", "flags"] == ""  # its duplicate is gone
    log = "\n".join(cleaned.attrs["cape"]["log"])
    assert "dropped Llama3-8B (duplicate_of:Llama-3-8B)" in log and "relabelled" in log
    # values are untouched by cleaning
    assert cleaned.loc["Pythia-70M", "truthfulqa"] == raw.loc["Pythia-70M", "truthfulqa"]


def test_frontier_panel_and_errata_layer():
    f = cape.load_panel("paper-frontier")
    assert (f["subset"] == "post-cutoff").sum() == 5
    assert set(f["subset"]) == {"core", "extended", "post-cutoff"}
    assert f.loc["DeepSeek-V3", "gpqa_diamond"] == 75.9  # as published
    assert f.loc["Claude 3.5 Sonnet", "release_date"] == "2024-06"
    assert f.loc["Claude Opus 4.7", "release_date_precision"] == "day"
    assert "repeats_scores_of:GLM-5" in f.loc["GLM-5.1", "flags"]
    assert "compute_tier" in f.loc["GPT-5.4 xhigh", "flags"]
    c = cape.load_panel("paper-frontier", corrected=True)
    assert c.loc["DeepSeek-V3", "gpqa_diamond"] == 59.1
    assert c.loc["DeepSeek-V2.5", "gpqa_diamond"] == 41.3
    assert c.loc["DeepSeek-V2.5", "swe_bench_verified"] == 16.8  # a note, not an erratum
    frozen = c[c["subset"] != "post-cutoff"]
    r = np.corrcoef(frozen["swe_bench_verified"].astype(float), frozen["gpqa_diamond"].astype(float))[0, 1]
    assert round(r, 3) == 0.825  # DATA_NOTES: corrected population r
    with pytest.raises(cape.CapeError, match="no errata layer"):
        cape.load_panel("paper-base", corrected=True)


def test_openllm_panel_is_percent_with_leaderboard_variants():
    s = cape.load_scores("openllm-v1-base")
    assert s["value"].max() > 1.5  # converted from fractions
    llama = s[(s["model"] == "meta-llama/Llama-2-7b-hf") & (s["benchmark"] == "hellaswag")].iloc[0]
    assert round(llama["value"], 2) == 77.74 and llama["variant"] == "acc_norm" and llama["n_shot"] == 10
    m = cape.load_models("openllm-v1-base").set_index("model")
    assert m.loc["meta-llama/Llama-2-7b-hf", "tokens"] == 2_000_000_000_000
    assert "tokens_units_suspect" in m.loc["cerebras/btlm-3b-8k-base", "flags"]


def test_select_by_alias_and_family():
    df = cape.load_panel("paper-base", benchmarks="HellaSwag,tqa", family="opt")
    assert len(df) == 8 and list(df.columns[-2:]) == ["hellaswag", "truthfulqa"]
    with pytest.raises(cape.CapeError, match="no family"):
        cape.load_panel("paper-base", family="gpt-5")


def test_variant_columns():
    df = cape.load_panel("paper-nc", variant_columns=True)
    assert {"hellaswag:acc_norm", "truthfulqa:mc2"} <= set(df.columns)


@pytest.mark.shared
def test_shipped_panels_rebuild_byte_for_byte_from_shared(shared_data, tmp_path):
    """The panels in the package are exactly what tools/build_panels.py makes of ../shared."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_panels.py"), "--shared", str(shared_data),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    shipped = ROOT / "src" / "cape" / "panels" / "data"
    for name in BUILTIN_PANELS:
        files = sorted(p.name for p in (shipped / name).iterdir())
        assert files == sorted(p.name for p in (tmp_path / name).iterdir())
        match, mismatch, errors = filecmp.cmpfiles(shipped / name, tmp_path / name, files, shallow=False)
        assert not mismatch and not errors, f"{name}: {mismatch or errors} differ from a fresh build"


@pytest.mark.shared
def test_panel_values_equal_the_reference_files(shared_data):
    """Spot the converter against the raw files: every published value is carried over exactly."""
    import json

    raw = json.loads((shared_data / "data/cape-paper/base_models_consolidated.json").read_text())["models"]
    df = cape.load_panel("paper-base")
    for m in raw:
        for field, bench in (("HS", "hellaswag"), ("TQA", "truthfulqa"), ("MMLU", "mmlu")):
            if m.get(field) is not None:
                assert df.loc[m["name"], bench] == m[field]
    osl = pd.read_csv(shared_data / "data/open-llm-leaderboard/base_llm_benchmark_eval.csv")
    o = cape.load_panel("openllm-v1-base")
    assert np.allclose(o.loc[osl["Model"], "truthfulqa"].astype(float), osl["TruthfulQA"] * 100)
