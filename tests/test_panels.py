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


# ------------------------------------------------------------ release dates, MoE sizes, instruct rows
RELEASE_TABLE = ROOT / "tools" / "release_dates.csv"
TODAY = "2026-11"
# No model of these families was released before this month (lower bounds from the families'
# first public releases; cleaned family labels for paper-base).
FAMILY_FIRST = {
    "Llama": "2023-02", "Llama-1": "2023-02", "Llama-2": "2023-07", "Llama-3": "2024-04",
    "Llama-3.1": "2024-07", "CodeLlama": "2023-08", "OpenLlama": "2023-05", "OpenLlamaV2": "2023-07",
    "Qwen": "2023-08", "Qwen1.5": "2024-02", "Qwen2": "2024-06", "Qwen2.5": "2024-09", "Qwen3": "2025-04",
    "Mistral": "2023-09", "Mixtral": "2023-12", "DeepSeek-V2": "2024-05", "DeepSeek-Coder-V2": "2024-06",
    "DeepSeek-Coder": "2023-11", "DeepSeek-LLM": "2023-11", "DeepSeek-MoE": "2024-01",
    "Yi": "2023-11", "Yi-200K": "2023-11", "Yi-1.5": "2024-05", "Gemma": "2024-02", "Gemma-2": "2024-06",
    "Jamba": "2024-03", "Falcon": "2023-01", "Phi": "2023-06", "Pythia": "2022-01", "BLOOM": "2022-03",
    "GPT-Neo/J": "2021-03", "GPT-Neo": "2021-03", "GPT-J": "2021-06", "GPT-NeoX": "2022-02",
    "OPT": "2022-05", "MPT": "2023-05", "XGLM": "2021-12", "StarCoder": "2023-05", "StarCoder2": "2024-02",
    "GPT-2": "2019-02", "InternLM2": "2024-01", "DeciLM": "2023-09", "StableLM": "2023-04",
    "RedPajama-INCITE-Base": "2023-05", "Amber": "2023-12", "Codegen": "2022-03", "SmolLM": "2024-07",
    "Cerebras-GPT": "2023-03", "BTLM": "2023-07", "H2O-Danube": "2024-01", "OLMo": "2024-02",
}


def _dated(name: str, clean: bool = False) -> pd.DataFrame:
    m = cape.load_models(name, clean=clean) if clean else cape.load_models(name)
    return m[m["release_date"].notna()].set_index("model")


@pytest.mark.parametrize("name, n_min", [("openllm-v1-base", 130), ("paper-base", 60)])
def test_release_dates_are_months_with_their_source(name, n_min):
    m = cape.load_models(name).set_index("model")
    table = pd.read_csv(RELEASE_TABLE, dtype=str, keep_default_na=False)
    table = table[table["panel"] == name].set_index("model")
    dated = m[m["release_date"].notna()]
    assert len(dated) >= n_min and set(dated.index) == set(table.index)
    assert dated["release_date"].str.fullmatch(r"(19|20)\d\d-(0[1-9]|1[0-2])").all()
    assert (dated["release_date_precision"] == "month").all()
    for model, row in dated.iterrows():
        assert row["release_date"] == table.loc[model, "release_date"]
        # the date's citation is in the row's source, after the source of the figures
        assert row["source"].endswith(f"; release date: {table.loc[model, 'source']}"), model
        assert len(table.loc[model, "source"]) > 15
    undated = m[m["release_date"].isna()]
    assert undated["release_date_precision"].isna().all()
    assert not undated["source"].str.contains("release date:").any()


@pytest.mark.parametrize("name", ["openllm-v1-base", "paper-base"])
def test_release_dates_within_family_history(name):
    dated = _dated(name, clean=(name == "paper-base"))  # paper-base: GPT-J/NeoX in their own families
    assert (dated["release_date"] <= TODAY).all()
    for model, row in dated.iterrows():
        assert row["family"] in FAMILY_FIRST, f"{model}: add its family's first release to FAMILY_FIRST"
        assert row["release_date"] >= FAMILY_FIRST[row["family"]], model


def test_release_dates_cover_the_families_and_staged_releases():
    o = cape.load_models("openllm-v1-base").set_index("model")
    for fam in ("Llama", "Llama-2", "Llama-3", "Llama-3.1", "Qwen", "Qwen1.5", "Qwen2", "Mixtral",
                "Gemma", "Gemma-2", "Pythia", "BLOOM", "OPT", "XGLM", "CodeLlama", "StarCoder2", "GPT-2",
                "Cerebras-GPT", "OLMo", "SmolLM", "DeepSeek-Coder", "Yi-1.5", "OpenLlama", "StableLM"):
        assert o.loc[o["family"] == fam, "release_date"].notna().all(), fam
    d = o["release_date"]
    # sizes of one family released at different times carry their own month
    assert [d[f"openai-community/{m}"] for m in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")] == \
        ["2019-02", "2019-05", "2019-08", "2019-11"]
    assert d["codellama/CodeLlama-7b-hf"] == "2023-08" and d["codellama/CodeLlama-70b-hf"] == "2024-01"
    assert d["Qwen/Qwen1.5-7B"] == "2024-02" and d["Qwen/Qwen1.5-32B"] == d["Qwen/Qwen1.5-110B"] == "2024-04"
    assert (d["Qwen/Qwen-7B"], d["Qwen/Qwen-14B"], d["Qwen/Qwen-72B"]) == ("2023-08", "2023-09", "2023-11")
    assert d["google/gemma-2-9b"] == "2024-06" and d["google/gemma-2-2b"] == "2024-07"
    assert d["tiiuae/falcon-7b"] == "2023-05" and d["tiiuae/falcon-180B"] == "2023-09"
    assert d["facebook/opt-30b"] == "2022-05" and d["facebook/opt-66b"] == "2022-06"
    assert d["bigcode/starcoderbase"] < d["bigcode/starcoder2-15b"]
    assert d["mistralai/Mixtral-8x7B-v0.1"] < d["mistralai/Mixtral-8x22B-v0.1"]
    assert d["allenai/OLMo-7B-hf"] == "2024-02" and d["allenai/OLMo-7B-0424-hf"] == "2024-04"
    # undocumented months stay empty rather than guessed
    assert o.loc[o["family"] == "RWKV", "release_date"].isna().all()
    p = cape.load_models("paper-base").set_index("model")["release_date"]
    assert p.isna().sum() == 3 and pd.isna(p["Gemma-4-E4B"])
    assert (p["GPT-J-6B"], p["GPT-NeoX-20B"], p["Qwen2.5-7B"]) == ("2021-06", "2022-02", "2024-09")


def _builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_panels_under_test", ROOT / "tools" / "build_panels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("row, message", [
    ("p,a,2023,cite", "must be YYYY-MM"),
    ("p,a,2023-07-04,cite", "must be YYYY-MM"),
    ("p,zz,2023-07,cite", "no model of that name"),
    ("p,a,2023-07,", "no source"),
    ("p,a,2023-13,cite", "not a valid date"),
])
def test_release_date_table_refuses_bad_rows(tmp_path, monkeypatch, row, message):
    bp = _builder()
    table = tmp_path / "release_dates.csv"
    table.write_text(f"panel,model,release_date,source\n{row}\n", encoding="utf-8")
    monkeypatch.setattr(bp, "RELEASE_DATES", table)
    models = [{"model": "a", "source": "S"}]
    with pytest.raises((SystemExit, cape.CapeError), match=message):
        bp._add_release_dates("p", models)
    # a good row fills the date and appends its citation
    table.write_text("panel,model,release_date,source\np,a,2023-7,Paper X\n", encoding="utf-8")
    bp._add_release_dates("p", models)
    assert models[0]["release_date"] == "2023-07" and models[0]["source"] == "S; release date: Paper X"
    table.write_text("panel,model,release_date,source\np,a,2023-07,X\np,a,2023-08,Y\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="listed twice"):
        bp._add_release_dates("p", [{"model": "a", "source": "S"}])


def test_openllm_moe_rows_hold_total_and_active_params():
    m = cape.load_models("openllm-v1-base").set_index("model")
    q = m.loc["Qwen/Qwen2-57B-A14B"]
    assert q["params"] == 57_000_000_000 and q["active_params"] == 14_000_000_000
    assert "params_corrected:24B" in split_flags(q["flags"])
    assert "arXiv:2407.10671" in q["source"]
    expected = {  # model: (total, active, the source table's figure if it was not the total)
        "mistralai/Mixtral-8x7B-v0.1": (45e9, 12.9e9, None),
        "mistralai/Mixtral-8x22B-v0.1": (141e9, 39e9, "39B"),
        "deepseek-ai/DeepSeek-V2": (236e9, 21e9, "21B"),
        "deepseek-ai/DeepSeek-Coder-V2-Base": (236e9, 21e9, "21B"),
        "deepseek-ai/deepseek-moe-16b-base": (16e9, 2.8e9, None),
        "ai21labs/Jamba-v0.1": (52e9, 12e9, "12B"),
    }
    for model, (total, active, was) in expected.items():
        row = m.loc[model]
        assert (row["params"], row["active_params"]) == (int(total), int(active)), model
        assert 0 < row["active_params"] < row["params"]
        assert "; params: " in row["source"]
        corrected = [f for f in split_flags(row["flags"]) if flag_name(f) == "params_corrected"]
        assert corrected == ([f"params_corrected:{was}"] if was else []), model
    # a dense model the source table gave the wrong size: open_llama_7b_v2 is a 7B model, not 13B
    v2 = m.loc["openlm-research/open_llama_7b_v2"]
    assert v2["params"] == 7_000_000_000 and pd.isna(v2["active_params"])
    assert "params_corrected:13B" in split_flags(v2["flags"]) and "OpenLLaMA model card" in v2["source"]
    # other dense rows have no active count and no correction
    dense = m.drop(index=list(expected) + ["Qwen/Qwen2-57B-A14B", "openlm-research/open_llama_7b_v2"])
    assert dense["active_params"].isna().all()
    assert not dense["flags"].fillna("").str.contains("params_corrected").any()
    # clean keeps the corrected rows (the rule is keep)
    assert {"Qwen/Qwen2-57B-A14B", "ai21labs/Jamba-v0.1"} <= set(cape.load_models("openllm-v1-base", clean=True)["model"])


@pytest.mark.shared
def test_params_corrected_keeps_the_source_figure(shared_data):
    osl = pd.read_csv(shared_data / "data/open-llm-leaderboard/base_llm_benchmark_eval.csv").set_index("Model")
    m = cape.load_models("openllm-v1-base").set_index("model")
    flagged = m[m["flags"].fillna("").str.contains("params_corrected")]
    assert len(flagged) == 6
    for model, row in flagged.iterrows():
        arg = next(f for f in split_flags(row["flags"]) if flag_name(f) == "params_corrected").split(":")[1]
        assert float(arg.rstrip("B")) == osl.loc[model, "Model Size (B)"]
        assert row["params"] != int(osl.loc[model, "Model Size (B)"] * 1e9)
    assert osl.loc["Qwen/Qwen2-57B-A14B", "Model Size (B)"] == 24.0


def test_rwkv_raven_is_flagged_instruct_and_dropped_by_clean():
    m = cape.load_models("openllm-v1-base").set_index("model")
    raven = m.loc["RWKV/rwkv-raven-14b"]
    assert raven["kind"] == "instruct" and "instruct_model" in split_flags(raven["flags"])
    assert "model card" in raven["source"]
    assert m.loc["RWKV/rwkv-4-14b-pile", "kind"] == "base"
    assert (m.drop(index="RWKV/rwkv-raven-14b")["kind"] == "base").all()
    cleaned = cape.load_panel("openllm-v1-base", clean=True)
    assert "RWKV/rwkv-raven-14b" not in cleaned.index and "RWKV/rwkv-4-14b-pile" in cleaned.index
    assert len(cleaned) == EXPECTED_MODELS["openllm-v1-base"] - 1
    assert "dropped RWKV/rwkv-raven-14b (instruct_model)" in cleaned.attrs["cape"]["log"]
