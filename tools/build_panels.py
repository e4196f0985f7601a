#!/usr/bin/env python3
"""Convert the reference data in ../shared/data into CAPE's built-in panels.

Run from the repository root:

    python tools/build_panels.py [--shared ../shared] [--out src/cape/panels/data]

It reads the figures from the preprints' release and the Open LLM Leaderboard snapshot,
writes them in CAPE's schema (``models.csv``, ``scores.csv``, ``errata.csv``,
``panel.json`` per panel), and cites the primary source on every row. Values are carried
over exactly as published; every known problem (../shared/docs/DATA_NOTES.md) becomes a
quality flag (see ``cape.flags``). Facts added from outside the reference data carry their
citation in the row's source: release months (tools/release_dates.csv), and the published
total and active parameter counts of mixture-of-experts models where the source's size is
not the total (flag ``params_corrected`` keeps the source's figure). The output is deterministic: the test suite rebuilds the
panels from ../shared and compares them byte for byte with the shipped files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cape.schema import MODEL_COLUMNS, SCORE_COLUMNS, Dataset, join_flags  # noqa: E402
from cape.units import parse_param_count, parse_release_date  # noqa: E402

PAPER_A = "arXiv:2605.18838"
PAPER_B = "arXiv:2605.18840"
RELEASE_A = f"{PAPER_A} release (MIT)"
RELEASE_B = f"{PAPER_B} release (MIT)"
OLL_V1 = "Open LLM Leaderboard v1 (lm-evaluation-harness)"
OLL_HARNESS = "lm-evaluation-harness, Open LLM Leaderboard v1 settings"
OSL = ("Ruan, Maddison & Hashimoto 2024, Observational Scaling Laws (arXiv:2405.10938), "
       "base_llm_benchmark_eval.csv (Apache-2.0)")

# Open LLM Leaderboard v1 settings (../shared/docs/METHODS.md section 1): benchmark ->
# (variant, shots). These are the harness definitions, not results.
OLL_SETTINGS = {
    "arc_challenge": ("acc_norm", 25),
    "hellaswag": ("acc_norm", 10),
    "mmlu": ("acc", 5),
    "truthfulqa": ("mc2", 0),
    "winogrande": ("acc", 5),
    "gsm8k": ("acc", 5),
}

# Organisations behind the families of the preprint's base panel (facts about the models).
ORGANISATION = {
    "BLOOM": "BigScience", "Cerebras-GPT": "Cerebras", "Falcon": "TII", "GPT-Neo": "EleutherAI",
    "GPT-J": "EleutherAI", "GPT-NeoX": "EleutherAI", "Gemma": "Google", "Llama-1": "Meta",
    "Llama-2": "Meta", "Llama-3": "Meta", "Mistral": "Mistral AI", "OLMo": "AI2", "OPT": "Meta",
    "Phi": "Microsoft", "Pythia": "EleutherAI", "Qwen2.5": "Alibaba", "Qwen3": "Alibaba",
    "Yi": "01.AI",
}

# Release months (tools/release_dates.csv: panel, model, release_date, source), each with the
# citation it comes from: the model card, the paper or the developer's release announcement.
# Models whose release month is not documented are left out of the table, so their date
# stays empty rather than guessed.
RELEASE_DATES = ROOT / "tools" / "release_dates.csv"

# Instruction-tuned models inside the base-model table of the observational scaling laws
# study (fact about the model, with its citation).
OSL_INSTRUCT = {
    "RWKV/rwkv-raven-14b": ("RWKV/rwkv-raven-14b model card: Raven is RWKV-4-Pile fine-tuned on "
                            "instruction and chat data (Alpaca, CodeAlpaca, Guanaco, GPT4All, ShareGPT)"),
}

# Mixture-of-experts rows of the same table: (total, active, citation) as their developers
# publish them; total None keeps the table's figure (already the total, rounded). Where the
# table's "Model Size (B)" is not the total (the active count, or for Qwen2-57B-A14B
# neither), params becomes the published total and the flag params_corrected keeps the
# table's figure.
OSL_PARAMS_FIXES = {
    "Qwen/Qwen2-57B-A14B": (57e9, 14e9, "Qwen2 technical report (arXiv:2407.10671): 57B total, "
                            "14B activated"),
    "mistralai/Mixtral-8x7B-v0.1": (None, 12.9e9, "Mistral AI, 'Mixtral of experts' (11 Dec 2023): "
                                    "46.7B total, 12.9B used per token"),
    "mistralai/Mixtral-8x22B-v0.1": (141e9, 39e9, "Mistral AI, 'Cheaper, Better, Faster, Stronger' "
                                     "(17 Apr 2024): 141B total, 39B active"),
    "deepseek-ai/DeepSeek-V2": (236e9, 21e9, "DeepSeek-V2 paper (arXiv:2405.04434): 236B total, "
                                "21B activated per token"),
    "deepseek-ai/DeepSeek-Coder-V2-Base": (236e9, 21e9, "DeepSeek-Coder-V2 paper (arXiv:2406.11931): "
                                           "236B total, 21B active"),
    "deepseek-ai/deepseek-moe-16b-base": (None, 2.8e9, "DeepSeekMoE paper (arXiv:2401.06066): 16.4B "
                                          "total, 2.8B activated"),
    "ai21labs/Jamba-v0.1": (52e9, 12e9, "Jamba paper (arXiv:2403.19887): 52B total, 12B active"),
    # not a mixture of experts: the source table gives the 7B v2 model 13B (the size of open_llama_13b)
    "openlm-research/open_llama_7b_v2": (7e9, None, "OpenLLaMA model card (openlm-research/open_llama_7b_v2): "
                                        "a 7B model"),
}

# Short field names in the preprint's JSON -> CAPE benchmark names.
PAPER_FIELDS = {"HS": "hellaswag", "TQA": "truthfulqa", "ARC": "arc_challenge",
                "WG": "winogrande", "MMLU": "mmlu"}


def _read_json(path: Path):
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _score(model, bench, value, *, source, variant=None, n_shot=None, harness=None, flags=""):
    return {"model": model, "benchmark": bench, "variant": variant, "value": float(value),
            "stderr": None, "n_shot": n_shot, "harness": harness, "source": source, "flags": flags}


def _add_release_dates(panel: str, models: list[dict]) -> None:
    """Fill release_date (month precision) from tools/release_dates.csv and append the date's
    citation to each dated row's source. A row naming no model of the panel, a duplicate, a
    date that is not YYYY-MM or a missing citation stops the build."""
    table = pd.read_csv(RELEASE_DATES, dtype=str, keep_default_na=False)
    table = table[table["panel"] == panel]
    by_model = {m["model"]: m for m in models}
    seen: set[str] = set()
    for i, r in table.iterrows():
        where = f"{RELEASE_DATES.name} row {i + 2} ({r['model']})"
        if r["model"] not in by_model:
            raise SystemExit(f"{where}: no model of that name in panel {panel}")
        if r["model"] in seen:
            raise SystemExit(f"{where}: the model is listed twice")
        seen.add(r["model"])
        rd = parse_release_date(r["release_date"], file=RELEASE_DATES.name, row=i + 2,
                                field="release_date")
        if rd is None or rd.precision != "month":
            raise SystemExit(f"{where}: release_date must be YYYY-MM, got '{r['release_date']}'")
        if not r["source"].strip():
            raise SystemExit(f"{where}: the date has no source")
        m = by_model[r["model"]]
        m["release_date"], m["release_date_precision"] = rd.iso, rd.precision
        m["source"] = f"{m['source']}; release date: {r['source'].strip()}"


def _paper_variant(bench: str) -> tuple[str, str]:
    """Variant as the preprint declares it, and the flag for TruthfulQA's mislabel."""
    if bench == "truthfulqa":
        return "mc1", "mc2_labelled_mc1"
    return OLL_SETTINGS[bench][0], ""


# ----------------------------------------------------------------------------- paper-base
def build_paper_base(shared: Path) -> tuple[dict, Dataset, pd.DataFrame]:
    data = shared / "data" / "cape-paper"
    consolidated = _read_json(data / "base_models_consolidated.json")["models"]
    upstream = {r["Model"]: r for r in _read_json(data / "leaderboard_all_scores.json")}
    cape26 = {r["name"]: r for r in _read_json(data / "cape_26models_9families.json")["ranking_by_hD"]}
    pythia_note = _read_json(data / "ai_free_energy_data.json")["metadata"]["notes"]
    gemma4 = _read_json(data / "gemma4_results.json")

    consolidated_src = f"{RELEASE_A}, base_models_consolidated.json"
    names = [m["name"] for m in consolidated]
    # Duplicates: the same model under two names (e.g. "Llama-3-8B" and "Llama3-8B").
    canon = {n: re.sub(r"[-_ ]", "", n.lower()) for n in names}
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(canon[n], []).append(n)

    models, scores = [], []
    for m in consolidated:
        name, fam, src_tag = m["name"], m["family"], m["source"]
        flags: list[str] = []
        up = upstream.get(name)
        if src_tag == "leaderboard":
            up_src = up["Source"] if up else None
            if up_src == "HF-LLB-v1":
                score_src = f"{OLL_V1} via {RELEASE_A}, leaderboard_all_scores.json"
                harness, oll = OLL_HARNESS, True
            elif up_src == "Qwen-blog":
                score_src = f"Qwen2.5 release blog (Qwen team) via {RELEASE_A}, leaderboard_all_scores.json"
                harness, oll = None, False
                flags.append("source_mislabelled")
            else:
                raise SystemExit(f"paper-base: no upstream row for leaderboard model {name}")
        elif src_tag == "cape_26":
            if fam == "Pythia":
                score_src = (f"{RELEASE_A}, ai_free_energy_data.json (states: Open LLM Leaderboard / "
                             "llm-explorer.com)")
            else:
                score_src = f"{RELEASE_A}, cape_26models_9families.json (no upstream source given)"
            harness, oll = None, False
        else:
            # gemma3_results / gemma4_results / qwen3_results hold internal coupling values,
            # not the HellaSwag and TruthfulQA scores the consolidated file attributes to them.
            score_src = f"{RELEASE_A}, {src_tag}.json as cited by base_models_consolidated.json"
            harness, oll = None, False
            flags.append("untraceable")
        # known problems
        dupes = groups[canon[name]]
        if len(dupes) > 1:
            if src_tag == "leaderboard":
                flags.append("has_duplicate")
            else:
                keep = next(d for d in dupes if d != name)
                flags.append(f"duplicate_of:{keep}")
        if fam == "Pythia" and not name.startswith("Pythia"):
            correct = up["Family"] if up else None
            # The upstream file says "EleutherAI" (the organisation); GPT-J and GPT-NeoX are
            # each their own model line, so each becomes its own family.
            correct = {"GPT-J-6B": "GPT-J", "GPT-NeoX-20B": "GPT-NeoX"}.get(name, correct)
            flags.append(f"family_mislabelled:{correct}")
        if src_tag == "gemma4_results":
            if gemma4.get("model", "").endswith("-it"):
                flags.append("instruct_model")
            if "E4B" in name:
                flags.append("effective_params")
        if fam == "Pythia" and name in ("Pythia-6.9B", "Pythia-12B") and "estimated" in pythia_note:
            flags.append("partially_estimated")
        kind = "instruct" if "instruct_model" in flags else "base"
        family_for_org = fam
        fm = next((f for f in flags if f.startswith("family_mislabelled:")), None)
        if fm:
            family_for_org = fm.split(":", 1)[1]
        params = parse_param_count(m["N_B"], multiplier=10**9)
        models.append({
            "model": name, "display_name": name, "family": fam,
            "organisation": ORGANISATION.get(family_for_org), "kind": kind,
            "params": params.total, "flags": join_flags(flags), "source": consolidated_src,
        })
        for field, bench in PAPER_FIELDS.items():
            if m.get(field) is None:
                continue
            variant, sflag = _paper_variant(bench)
            sflags = [sflag] if sflag else []
            if bench == "truthfulqa" and name in cape26 and oll:
                other = cape26[name].get("TQA")
                if other is not None and abs(other - m["TQA"]) > 1e-9:
                    sflags.append("conflicting_value_in_release")
            scores.append(_score(name, bench, m[field], source=score_src, variant=variant,
                                 n_shot=OLL_SETTINGS[bench][1] if oll else None,
                                 harness=harness, flags=join_flags(sflags)))
    _add_release_dates("paper-base", models)
    meta = {
        "name": "paper-base",
        "title": "Preprint base-model panel (63 models, 16 families)",
        "description": ("The base models of arXiv:2605.18838 with HellaSwag, TruthfulQA, ARC, "
                        "WinoGrande and MMLU, values exactly as published in "
                        "base_models_consolidated.json. Known problems are flagged; "
                        "clean=True resolves them by the rules in cape.flags."),
        "primary_sources": [RELEASE_A, OLL_V1],
        "licence": "MIT (cape-paper release); figures only",
        "notes": [
            "TruthfulQA is labelled mc1 as the preprint's text says; the values are mc2-level "
            "(flag mc2_labelled_mc1; clean relabels them).",
            "The release's gamma12 field is not carried: it differences consecutive rows across "
            "families. Recompute couplings with CAPE.",
            "Variants and shots follow the preprint's declared Open LLM Leaderboard v1 settings; "
            "shots and harness are recorded only for rows traced to that leaderboard.",
            "Release dates (month precision) come from tools/release_dates.csv, each cited in the "
            "row's source; a model whose release month is not documented has no date.",
        ],
    }
    return meta, Dataset.from_frames(pd.DataFrame(models), pd.DataFrame(scores)), None


# --------------------------------------------------------------------------- paper-pythia
def build_paper_pythia(shared: Path):
    path = shared / "data" / "cape-paper" / "ai_free_energy_data.json"
    d = _read_json(path)
    pm, bs = d["pythia_models"], d["benchmark_scores"]
    src = f"{RELEASE_A}, ai_free_energy_data.json (states: {d['metadata']['source']})"
    note = d["metadata"]["notes"]
    fields = {"ARC": "arc_challenge", "HellaSwag": "hellaswag", "MMLU": "mmlu",
              "TruthfulQA": "truthfulqa", "WinoGrande": "winogrande", "GSM8K": "gsm8k"}
    models, scores = [], []
    for i, short in enumerate(pm["names"]):
        mid = f"Pythia-{short}"
        flags = ["partially_estimated"] if short in ("6.9B", "12B") and "estimated" in note else []
        models.append({
            "model": mid, "display_name": mid, "family": "Pythia", "organisation": "EleutherAI",
            "kind": "base", "params": parse_param_count(pm["N"][i]).total,
            "d_model": pm["d_model"][i], "n_layers": pm["n_layers"][i], "n_heads": pm["n_heads"][i],
            "flags": join_flags(flags), "source": src,
        })
        for key, bench in fields.items():
            v = bs[key][i]
            if v is None:
                continue
            variant, sflag = _paper_variant(bench)
            scores.append(_score(mid, bench, v, source=src, variant=variant, flags=sflag))
    meta = {
        "name": "paper-pythia",
        "title": "Pythia suite with architecture (the data behind r = -0.989)",
        "description": ("The 8 Pythia models of arXiv:2605.18838 with ARC, HellaSwag, MMLU, "
                        "TruthfulQA, WinoGrande, GSM8K, d_model, layers and heads, as in "
                        "ai_free_energy_data.json."),
        "primary_sources": [RELEASE_A],
        "licence": "MIT (cape-paper release); figures only",
        "notes": [f"The release notes: '{note}'.",
                  "TruthfulQA labelled mc1 as the preprint's text says; values are mc2-level."],
    }
    return meta, Dataset.from_frames(pd.DataFrame(models), pd.DataFrame(scores)), None


# ------------------------------------------------------------------------------- paper-nc
def build_paper_nc(shared: Path):
    path = shared / "data" / "cape-paper-extra" / "nc_bootstrap_points.csv"
    df = pd.read_csv(path)
    src = f"{RELEASE_A}, N_c bootstrap and Llama-2 hold-out points (cape-paper-extra/nc_bootstrap_points.csv)"
    org = {"Pythia": "EleutherAI", "Llama-1": "Meta", "Llama-2": "Meta"}
    models, scores = [], []
    for _, r in df.iterrows():
        models.append({"model": r["model"], "display_name": r["model"], "family": r["family"],
                       "organisation": org.get(r["family"]), "kind": "base",
                       "params": parse_param_count(float(r["params"])).total, "flags": "",
                       "source": src})
        for bench in ("hellaswag", "truthfulqa"):
            variant, shots = OLL_SETTINGS[bench]
            scores.append(_score(r["model"], bench, r[bench], source=src, variant=variant,
                                 n_shot=shots, harness=OLL_HARNESS))
    meta = {
        "name": "paper-nc",
        "title": "The 14 points behind the N_c bootstrap and the Llama-2 hold-out",
        "description": ("Pythia (8), Llama-1 (3) and Llama-2 (3) with HellaSwag (10-shot "
                        "acc_norm) and TruthfulQA (0-shot mc2), as used by the preprint's "
                        "quadratic-vertex N_c bootstrap and its held-out Llama-2 prediction."),
        "primary_sources": [RELEASE_A, OLL_V1],
        "licence": "MIT (cape-paper release); figures only",
        "notes": ["These Pythia scores differ from paper-pythia's: the release holds three "
                  "different Pythia score vectors."],
    }
    return meta, Dataset.from_frames(pd.DataFrame(models), pd.DataFrame(scores)), None


# ------------------------------------------------------------------------- paper-frontier
def _errata_from_notes(shared: Path) -> list[dict]:
    """Read the DeepSeek corrections from DATA_NOTES.md (figures, with their citation)."""
    text = (shared / "docs" / "DATA_NOTES.md").read_text(encoding="utf-8")
    text = " ".join(text.split())
    m = re.search(r"DeepSeek-V2\.5 GPQA ([\d.]+) and DeepSeek-V3 GPQA ([\d.]+) are their MMLU-Pro scores",
                  text)
    t = re.search(r"The DeepSeek-V3 technical report \(Table (\d+)\) gives GPQA Diamond ([\d.]+) "
                  r"\(V2\.5\) and ([\d.]+) \(V3\)", text, re.I)
    s = re.search(r"The same table gives SWE-bench Verified ([\d.]+) for V2\.5 \(panel: ([\d.]+)", text)
    if not (m and t and s):
        raise SystemExit("DATA_NOTES.md: could not find the DeepSeek errata sentences")
    table = t.group(1)
    cite = f"DeepSeek-V3 Technical Report (arXiv:2412.19437), Table {table}"
    return [
        {"model": "DeepSeek-V2.5", "benchmark": "gpqa_diamond", "variant": "acc",
         "published": float(m.group(1)), "value": float(t.group(2)), "layer": "errata",
         "source": cite, "note": "the panel's value is DeepSeek-V2.5's MMLU-Pro score"},
        {"model": "DeepSeek-V3", "benchmark": "gpqa_diamond", "variant": "acc",
         "published": float(m.group(2)), "value": float(t.group(3)), "layer": "errata",
         "source": cite, "note": "the panel's value is DeepSeek-V3's MMLU-Pro score"},
        {"model": "DeepSeek-V2.5", "benchmark": "swe_bench_verified", "variant": "resolved",
         "published": float(s.group(2)), "value": float(s.group(1)), "layer": "note",
         "source": cite, "note": "the panel's value may be an earlier checkpoint; not applied"},
    ]


def build_paper_frontier(shared: Path):
    data = shared / "data" / "cape-paper"
    panel = _read_json(data / "frontier_34models.json")
    dates = {m["name"]: m.get("date") for m in _read_json(data / "frontier_final_consolidated.json")["models"]}
    post = _read_json(data / "post_cutoff_april2026.json")["models"]
    errata = _errata_from_notes(shared)
    errata_keys = {(e["model"], e["benchmark"]) for e in errata if e["layer"] == "errata"}
    src = f"{RELEASE_B}, frontier_34models.json (lab-reported model-card and leaderboard scores)"
    date_src = f"{RELEASE_B}, frontier_final_consolidated.json (release dates)"
    post_src = f"{RELEASE_B}, post_cutoff_april2026.json (lab-reported scores)"

    rows = [(m, "frontier", src) for m in panel["models"]] + [(m, "post", post_src) for m in post]
    by_pair: dict[tuple[float, float], list[str]] = {}
    by_swe: dict[float, list[str]] = {}
    for m, _, _ in rows:
        by_pair.setdefault((m["swe"], m["gpqa"]), []).append(m["name"])
        by_swe.setdefault(m["swe"], []).append(m["name"])

    models, scores = [], []
    for m, which, score_src in rows:
        name = m["name"]
        flags = []
        if which == "post":
            flags.append("post_cutoff")
            subset = "post-cutoff"
            date = m.get("date")
            model_src = post_src
        else:
            subset = m["subset"].lower()
            date = dates.get(name)
            model_src = date_src
        if re.search(r"\b(std|xhigh)\b", name):
            flags.append("compute_tier")
        same = [o for o in by_pair[(m["swe"], m["gpqa"])] if o != name]
        if same and which == "post":
            flags.append(f"repeats_scores_of:{same[0]}")
        elif not same:
            swe_same = [o for o in by_swe[m["swe"]] if o != name]
            # A later model whose SWE-bench value equals an earlier, unrelated model's.
            if swe_same and name.startswith("Grok"):
                flags.append(f"swe_equals_other_model:{swe_same[0]}")
        rd = parse_release_date(date) if date else None
        models.append({"model": name, "display_name": name, "family": m["lab"],
                       "organisation": m["lab"], "kind": "frontier",
                       "release_date": rd.iso if rd else None,
                       "release_date_precision": rd.precision if rd else None,
                       "flags": join_flags(flags), "source": model_src, "subset": subset})
        gflags = ["errata_available"] if (name, "gpqa_diamond") in errata_keys else []
        if name == "Claude Haiku 4.5":
            gflags.append("estimated")
        scores.append(_score(name, "swe_bench_verified", m["swe"], source=score_src, variant="resolved"))
        scores.append(_score(name, "gpqa_diamond", m["gpqa"], source=score_src, variant="acc",
                             flags=join_flags(gflags)))
    meta = {
        "name": "paper-frontier",
        "title": "Frontier panel: 34 models from 10 labs, plus 5 post-cutoff releases",
        "description": ("SWE-bench Verified and GPQA Diamond for the frontier models of "
                        "arXiv:2605.18840 (subset core/extended as published) and the five "
                        "post-cutoff releases (subset post-cutoff). The DeepSeek errata are a "
                        "separate layer, applied only with corrected=True / --corrected."),
        "primary_sources": [RELEASE_B, "lab model cards and public leaderboards (self-reported)"],
        "licence": "MIT (cape-paper release); figures only",
        "notes": [
            "The release uses three different 'core' subsets (n = 23, 25, 27); the subset column "
            "is frontier_34models.json's (23 core).",
            "Release dates have mixed precision; release_date_precision records it.",
            "The family of a frontier model is its lab.",
        ],
    }
    return meta, Dataset.from_frames(pd.DataFrame(models), pd.DataFrame(scores)), pd.DataFrame(errata)


# ------------------------------------------------------------------------ openllm-v1-base
def build_openllm(shared: Path):
    path = shared / "data" / "open-llm-leaderboard" / "base_llm_benchmark_eval.csv"
    df = pd.read_csv(path)
    columns = {"MMLU": "mmlu", "ARC-C": "arc_challenge", "HellaSwag": "hellaswag",
               "Winograd": "winogrande", "TruthfulQA": "truthfulqa", "GSM8K": "gsm8k",
               "XWinograd": "xwinograd", "HumanEval": "humaneval"}
    other = {"xwinograd": ("acc", None), "humaneval": ("pass@1", None)}
    models, scores = [], []
    for i, r in df.iterrows():
        mid = r["Model"]
        flags = []
        tokens = None if pd.isna(r["Pretraining Data Size (T)"]) else int(round(r["Pretraining Data Size (T)"] * 1e12))
        flops = None if pd.isna(r["FLOPs (1E21)"]) else float(r["FLOPs (1E21)"]) * 1e21
        params = parse_param_count(float(r["Model Size (B)"]), multiplier=10**9).total
        # A dense transformer trains on at most a few thousand tokens per parameter in this
        # era; a figure 1000x above the rest of the table (BTLM: 627 "T" for SlimPajama's
        # 627B tokens) is flagged rather than changed.
        if tokens is not None and tokens / params > 1e5:
            flags.append("tokens_units_suspect")
        source, active = OSL, None
        if mid in OSL_PARAMS_FIXES:
            total, active_n, cite = OSL_PARAMS_FIXES[mid]
            active = int(active_n) if active_n is not None else None
            if total is not None:
                flags.append(f"params_corrected:{float(r['Model Size (B)']):g}B")
                params = int(total)
            source = f"{source}; params: {cite}"
        kind = "base"
        if mid in OSL_INSTRUCT:
            flags.append("instruct_model")
            kind = "instruct"
            source = f"{source}; instruct: {OSL_INSTRUCT[mid]}"
        models.append({"model": mid, "display_name": mid.split("/")[-1], "family": r["Model Family"],
                       "kind": kind, "params": params, "active_params": active, "tokens": tokens,
                       "flops": flops, "flags": join_flags(flags), "source": source})
        for col, bench in columns.items():
            v = r[col]
            if pd.isna(v):
                continue
            variant, shots = OLL_SETTINGS.get(bench) or other[bench]
            scores.append(_score(mid, bench, round(float(v) * 100.0, 10), source=OSL,
                                 variant=variant, n_shot=shots,
                                 harness=OLL_HARNESS if bench in OLL_SETTINGS else None))
    _add_release_dates("openllm-v1-base", models)
    n_fam = df["Model Family"].nunique()
    corrected = [m.split("/")[-1] for m, (total, _, _) in OSL_PARAMS_FIXES.items() if total is not None]
    meta = {
        "name": "openllm-v1-base",
        "title": f"Open LLM Leaderboard v1 base models ({len(df)} models, {n_fam} family labels)",
        "description": ("Base models with size, pretraining tokens and FLOPs, and MMLU, ARC-C, "
                        "HellaSwag, WinoGrande, TruthfulQA (mc2), GSM8K, XWinograd and HumanEval "
                        "from the observational scaling laws study, converted from fractions to "
                        "percent. An independent panel for checking the preprints' claims."),
        "primary_sources": [OSL, OLL_V1],
        "licence": "Apache-2.0 (observational scaling laws data)",
        "notes": [
            f"The source README speaks of 40 families; the table has {n_fam} distinct family labels.",
            "The column 'Winograd' is WinoGrande 5-shot under the leaderboard settings.",
            "params is the total parameter count. For mixture-of-experts models the source's "
            "Model Size (B) is sometimes the active count or neither ("
            + ", ".join(corrected) + "); those rows carry the developer's published total and "
            "active counts, cited in the source, and the flag params_corrected keeps the "
            "source's figure. active_params is filled for every mixture-of-experts row.",
            "RWKV/rwkv-raven-14b is an instruction-tuned model (flag instruct_model, kind "
            "instruct); clean drops it.",
            "Release dates (month precision) come from tools/release_dates.csv, each cited in the "
            "row's source; a model whose release month is not documented has no date.",
        ],
    }
    return meta, Dataset.from_frames(pd.DataFrame(models), pd.DataFrame(scores)), None


BUILDERS = {
    "paper-base": build_paper_base,
    "paper-pythia": build_paper_pythia,
    "paper-nc": build_paper_nc,
    "paper-frontier": build_paper_frontier,
    "openllm-v1-base": build_openllm,
}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")


def write_panel(name: str, shared: Path, out: Path) -> None:
    meta, ds, errata = BUILDERS[name](shared)
    ds = ds.validate().public()
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    cols = list(MODEL_COLUMNS) + [c for c in ds.models.columns if c not in MODEL_COLUMNS]
    _write_csv(ds.models[cols], folder / "models.csv")
    _write_csv(ds.scores[list(SCORE_COLUMNS)], folder / "scores.csv")
    if errata is not None:
        _write_csv(errata, folder / "errata.csv")
    elif (folder / "errata.csv").exists():
        (folder / "errata.csv").unlink()
    (folder / "panel.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "cape" / "panels" / "data")
    ap.add_argument("--panel", action="append", choices=sorted(BUILDERS))
    args = ap.parse_args(argv)
    if not (args.shared / "data").is_dir():
        print(f"error: {args.shared / 'data'} not found (pass --shared)", file=sys.stderr)
        return 2
    for name in args.panel or BUILDERS:
        write_panel(name, args.shared, args.out)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
