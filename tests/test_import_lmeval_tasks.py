"""lm-eval tasks a user expects to be read (CAPE issue 13, "refused, though a user expects it
to work"): lm-eval 0.3 MMLU subjects, the Open LLM Leaderboard v2 suites (``leaderboard_*``),
tasks CAPE does not know (``truthfulqa_gen``, GLUE) and model ids that are local paths.

Real files are in tests/fixtures/lmeval-real (see its README); each is read by hand here and
compared with what CAPE reads. The leaderboard-suite file is constructed (no real lm-eval
``leaderboard`` results file with a citable origin was found): its layout is the one lm-eval
0.4 writes for ``--tasks leaderboard``, its values are made up.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cape.benchmarks import suggest
from cape.errors import InputError
from cape.io import read_results
from cape.io.harness import MMLU_SUBJECTS, read_openllm
from conftest import FIXTURES, run_cli

REAL = FIXTURES / "lmeval-real"
MMLU_03 = REAL / "v0.3_llama-7B_mmlu_5-shot.json"
TQA_GEN = REAL / "v0.4.8_gpt-neo-125M_truthfulqa_gen_limit20.json"
QWEN_0SHOT = REAL / "v0.4_qwen2.5-1.5b_0shot.json"
LLAMA = "huggyllama/llama-7b"


def load(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# ------------------------------------------------------------------ lm-eval 0.3 MMLU
def test_v03_mmlu_subjects_become_mmlu_the_mean_over_subjects():
    doc = load(MMLU_03)
    subjects = [t for t in doc["results"] if t.startswith("hendrycksTest-")]
    assert len(subjects) == 57 and len(doc["results"]) == 57  # no aggregate in the file
    by_hand = 100 * sum(doc["results"][t]["acc"] for t in subjects) / len(subjects)
    res = read_results(MMLU_03, model=LLAMA)
    s = res.dataset.scores
    assert len(s) == 1
    row = s.iloc[0]
    assert (row["model"], row["benchmark"], row["variant"]) == (LLAMA, "mmlu", "acc")
    assert row["value"] == pytest.approx(by_hand, abs=1e-9)
    assert row["n_shot"] == doc["config"]["num_fewshot"] == 5
    assert (row["flags"] or "") == ""
    assert list(res.dataset.models["model"]) == [LLAMA]


def test_v03_mmlu_uses_the_open_llm_leaderboard_v1_formula():
    """One formula: the same subjects as a v1 leaderboard file give the same MMLU."""
    doc = load(MMLU_03)
    v1 = {"config_general": {"model_name": LLAMA},
          "results": {f"harness|{t}|5": m for t, m in doc["results"].items()}}
    want = read_openllm(v1, label="v1.json", source=None, skip_unknown=False).scores[0]["value"]
    got = read_results(MMLU_03, model=LLAMA).dataset.scores["value"].iloc[0]
    assert got == pytest.approx(want, abs=1e-12)


def test_v03_mmlu_missing_subjects_are_a_partial_aggregate(tmp_path):
    doc = load(MMLU_03)
    for t in list(doc["results"])[:7]:
        del doc["results"][t]
    s = read_results(write(tmp_path, "part.json", doc), model=LLAMA).dataset.scores
    assert list(s["flags"]) == [f"partial_aggregate:50/{MMLU_SUBJECTS}"]


# ------------------------------------------------------------------ model ids
def test_local_path_model_id_is_refused_naming_the_model_option():
    doc = load(MMLU_03)
    assert doc["config"]["model_args"].startswith("pretrained=/gaueko1/")
    with pytest.raises(InputError) as exc:
        read_results(MMLU_03)
    line = str(exc.value)
    assert "\n" not in line and "local path" in line and "--model" in line
    assert MMLU_03.name in line and "/gaueko1/" in line


@pytest.mark.parametrize("model_args", ["pretrained=/data/ckpt/7B", "pretrained=./out/step1000",
                                        "pretrained=~/models/llama", "pretrained=runs/a/b"])
def test_path_like_ids_are_refused_and_model_sets_the_id(tmp_path, model_args):
    doc = load(QWEN_0SHOT)
    doc["config"]["model_args"] = model_args
    doc.pop("model_name", None)
    path = write(tmp_path, "run.json", doc)
    with pytest.raises(InputError, match="--model"):
        read_results(path, skip_unknown=True)
    res = read_results(path, skip_unknown=True, model="Qwen/Qwen2.5-1.5B")
    assert set(res.dataset.scores["model"]) == {"Qwen/Qwen2.5-1.5B"}


def test_hub_id_is_not_path_like():
    res = read_results(QWEN_0SHOT, skip_unknown=True)
    assert set(res.dataset.scores["model"]) == {"Qwen/Qwen2.5-1.5B"}


def test_file_without_a_model_name_takes_model(tmp_path):
    doc = load(QWEN_0SHOT)
    doc["config"].pop("model_args")
    doc.pop("model_name", None)
    path = write(tmp_path, "anon.json", doc)
    with pytest.raises(InputError, match="--model"):
        read_results(path, skip_unknown=True)
    assert set(read_results(path, skip_unknown=True, model="m").dataset.scores["model"]) == {"m"}


def test_cli_ingest_model_option(cape_home):
    r = run_cli("ingest", str(MMLU_03), "--panel", "llama", home=cape_home)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--model" in r.stderr
    r = run_cli("ingest", str(MMLU_03), "--panel", "llama", "--model", LLAMA, home=cape_home)
    assert r.returncode == 0, r.stderr
    shown = run_cli("show", "llama", home=cape_home)
    assert LLAMA in shown.stdout


# ------------------------------------------------------------------ leaderboard suites
BBH_SUB = ["leaderboard_bbh_navigate", "leaderboard_bbh_snarks"]
GPQA_SUB = ["leaderboard_gpqa_diamond", "leaderboard_gpqa_extended", "leaderboard_gpqa_main"]
MATH_SUB = ["leaderboard_math_algebra_hard", "leaderboard_math_geometry_hard"]
MUSR_SUB = ["leaderboard_musr_murder_mysteries", "leaderboard_musr_team_allocation"]


def leaderboard_doc(*, groups: bool = True) -> dict:
    """The layout lm-eval 0.4 writes for ``--tasks leaderboard`` (values made up)."""
    res = {
        "leaderboard": {"acc,none": 0.11, "acc_norm,none": 0.29, "exact_match,none": 0.002,
                        "alias": "leaderboard"},
        "leaderboard_bbh": {"acc_norm,none": 0.2935, "acc_norm_stderr,none": 0.0057},
        "leaderboard_gpqa": {"acc_norm,none": 0.2584, "acc_norm_stderr,none": 0.0127},
        "leaderboard_ifeval": {"prompt_level_strict_acc,none": 0.1257,
                               "prompt_level_strict_acc_stderr,none": 0.0143,
                               "inst_level_strict_acc,none": 0.2374,
                               "inst_level_strict_acc_stderr,none": "N/A",
                               "prompt_level_loose_acc,none": 0.1275,
                               "inst_level_loose_acc,none": 0.2410},
        "leaderboard_math_hard": {"exact_match,none": 0.0023, "exact_match_stderr,none": 0.0013},
        "leaderboard_mmlu_pro": {"acc,none": 0.1120, "acc_stderr,none": 0.0029},
        "leaderboard_musr": {"acc_norm,none": 0.4167, "acc_norm_stderr,none": 0.0175},
    }
    for sub in BBH_SUB + GPQA_SUB + MUSR_SUB:
        res[sub] = {"acc_norm,none": 0.3, "acc_norm_stderr,none": 0.03}
    for sub in MATH_SUB:
        res[sub] = {"exact_match,none": 0.0, "exact_match_stderr,none": 0.0}
    shots = {**{s: 3 for s in BBH_SUB}, **{s: 0 for s in GPQA_SUB + MUSR_SUB}, **{s: 4 for s in MATH_SUB},
             "leaderboard_ifeval": 0, "leaderboard_mmlu_pro": 5}
    doc = {"results": res, "n-shot": shots,
           "config": {"model": "hf", "model_args": "pretrained=EleutherAI/pythia-160m"}}
    if groups:
        doc["group_subtasks"] = {
            "leaderboard_bbh": BBH_SUB, "leaderboard_gpqa": GPQA_SUB,
            "leaderboard_math_hard": MATH_SUB, "leaderboard_musr": MUSR_SUB,
            "leaderboard_ifeval": [], "leaderboard_mmlu_pro": [],
            "leaderboard": ["leaderboard_bbh", "leaderboard_gpqa", "leaderboard_ifeval",
                            "leaderboard_math_hard", "leaderboard_mmlu_pro", "leaderboard_musr"]}
    return doc


# (benchmark, variant) -> (lm-eval task, metric key, shots)
LEADERBOARD_WANT = {
    ("bbh", "acc_norm"): ("leaderboard_bbh", "acc_norm,none", 3),
    ("gpqa_all", "acc_norm"): ("leaderboard_gpqa", "acc_norm,none", 0),
    ("math_lvl5", "exact_match"): ("leaderboard_math_hard", "exact_match,none", 4),
    ("musr", "acc_norm"): ("leaderboard_musr", "acc_norm,none", 0),
    ("mmlu_pro", "acc"): ("leaderboard_mmlu_pro", "acc,none", 5),
    ("ifeval", "prompt_level_strict_acc"): ("leaderboard_ifeval", "prompt_level_strict_acc,none", 0),
    ("ifeval", "inst_level_strict_acc"): ("leaderboard_ifeval", "inst_level_strict_acc,none", 0),
    ("ifeval", "prompt_level_loose_acc"): ("leaderboard_ifeval", "prompt_level_loose_acc,none", 0),
    ("ifeval", "inst_level_loose_acc"): ("leaderboard_ifeval", "inst_level_loose_acc,none", 0),
}


@pytest.mark.parametrize("groups", [True, False], ids=["group_subtasks", "flat"])
def test_leaderboard_suites_are_read_into_the_v2_benchmarks(tmp_path, groups):
    doc = leaderboard_doc(groups=groups)
    res = read_results(write(tmp_path, "lb.json", doc))  # no --skip-unknown: nothing refused
    s = res.dataset.scores.set_index(["benchmark", "variant"])
    assert set(s["model"]) == {"EleutherAI/pythia-160m"}
    assert set(s.index) == set(LEADERBOARD_WANT) | {("ifeval", "strict_acc_mean")}
    for (bench, variant), (task, key, shots) in LEADERBOARD_WANT.items():
        row = s.loc[(bench, variant)]
        assert row["value"] == pytest.approx(100 * doc["results"][task][key]), (bench, variant)
        assert row["n_shot"] == shots, (bench, variant)
    ife = doc["results"]["leaderboard_ifeval"]
    mean = 100 * (ife["prompt_level_strict_acc,none"] + ife["inst_level_strict_acc,none"]) / 2
    assert s.loc[("ifeval", "strict_acc_mean"), "value"] == pytest.approx(mean)
    assert pd.isna(s.loc[("ifeval", "inst_level_strict_acc"), "stderr"])  # the file says "N/A"
    assert s.loc[("ifeval", "prompt_level_strict_acc"), "stderr"] == pytest.approx(1.43)
    # the umbrella group is noted, never stored; subtasks are covered by their group or noted
    assert any("'leaderboard'" in line for line in res.skipped)
    if not groups:
        for sub in BBH_SUB + GPQA_SUB:
            assert any(f"'{sub}'" in line for line in res.skipped), sub


def test_leaderboard_group_shots_come_from_subtasks_not_the_groups_zero(tmp_path):
    doc = leaderboard_doc()
    doc["n-shot"]["leaderboard_bbh"] = 0  # as lm-eval writes for a group
    s = read_results(write(tmp_path, "lb.json", doc)).dataset.scores
    assert s.query("benchmark == 'bbh'")["n_shot"].tolist() == [3]


# ------------------------------------------------------------------ unknown tasks, hints
def test_truthfulqa_gen_is_kept_under_its_own_name_without_a_misleading_hint():
    doc = load(TQA_GEN)
    assert list(doc["results"]) == ["truthfulqa_gen"]
    res = read_results(TQA_GEN)
    s = res.dataset.scores.set_index("variant")
    assert set(s["benchmark"]) == {"truthfulqa_gen"} and "truthfulqa_gen" in res.unregistered
    # the proportions (*_acc) are stored as percent, by hand from the file; BLEU/ROUGE maxima
    # and differences are not percentages and are skipped with a note
    m = doc["results"]["truthfulqa_gen"]
    for metric in ("bleu_acc", "rouge1_acc", "rouge2_acc", "rougeL_acc"):
        assert s.loc[metric, "value"] == pytest.approx(100 * m[f"{metric},none"])
        assert set(str(s.loc[metric, "flags"]).split(";")) == {"limited:20/817", "unregistered"}
    assert not any(v.endswith(("_max", "_diff")) for v in s.index)
    assert any("bleu_max" in line and "not a percentage" in line for line in res.skipped)
    with pytest.raises(InputError) as exc:
        read_results(TQA_GEN, strict=True)
    assert "did you mean" not in str(exc.value)


def test_glue_tasks_are_kept_flagged_with_no_hint():
    doc = load(QWEN_0SHOT)
    res = read_results(QWEN_0SHOT)
    s = res.dataset.scores
    own = s[s["benchmark"].isin(list(res.unregistered))].set_index(["benchmark", "variant"])
    assert own.loc[("mrpc", "f1"), "value"] == pytest.approx(100 * doc["results"]["mrpc"]["f1,none"])
    assert own.loc[("rte", "acc"), "value"] == pytest.approx(100 * doc["results"]["rte"]["acc,none"])
    assert (own["flags"].astype(str) == "unregistered").all()
    # cola reports only mcc (not a proportion): nothing stored, so it is not listed either
    assert "cola" not in res.unregistered and "cola" not in set(s["benchmark"])
    assert not any("openbookqa" in line or "did you mean" in line for line in res.skipped)


@pytest.mark.parametrize("name", ["cola", "mmlu_formal_logic", "truthfulqa_gen", "mathqa", "mnli",
                                  "rte", "mrpc", "swag", "prost", "lambada_standard"])
def test_no_hint_for_other_tasks(name):
    assert suggest(name) is None


@pytest.mark.parametrize("name, want", [("hellaswagg", "hellaswag"), ("hellaswagg_acc", "hellaswag"),
                                        ("truthfullqa", "truthfulqa"), ("arc_chalenge", "arc_challenge"),
                                        ("winogrand", "winogrande"), ("gsm8", "gsm8k")])
def test_typos_still_get_a_hint(name, want):
    assert suggest(name) == want


def test_leaderboard_group_without_its_row_is_the_size_weighted_mean(tmp_path):
    doc = leaderboard_doc()
    for group in ("leaderboard_bbh", "leaderboard_gpqa"):
        del doc["results"][group]
    sizes = {"leaderboard_gpqa_diamond": 198, "leaderboard_gpqa_extended": 546,
             "leaderboard_gpqa_main": 448, "leaderboard_bbh_navigate": 250, "leaderboard_bbh_snarks": 178}
    values = {"leaderboard_gpqa_diamond": 0.25, "leaderboard_gpqa_extended": 0.27,
              "leaderboard_gpqa_main": 0.24, "leaderboard_bbh_navigate": 0.45, "leaderboard_bbh_snarks": 0.52}
    for t, v in values.items():
        doc["results"][t]["acc_norm,none"] = v
    doc["n-samples"] = {t: {"original": n, "effective": n} for t, n in sizes.items()}
    s = read_results(write(tmp_path, "lb.json", doc)).dataset.scores.set_index("benchmark")
    for bench, subs, flags in (("gpqa_all", GPQA_SUB, ""), ("bbh", BBH_SUB, "partial_aggregate:2/24")):
        by_hand = 100 * sum(values[t] * sizes[t] for t in subs) / sum(sizes[t] for t in subs)
        row = s.loc[bench]
        assert row["value"] == pytest.approx(by_hand), bench
        assert row["variant"] == "acc_norm" and (row["flags"] or "") == flags, bench
    assert s.loc["bbh", "n_shot"] == 3 and s.loc["gpqa_all", "n_shot"] == 0
    # an unweighted mean would differ: the check can fail
    plain = 100 * sum(values[t] for t in GPQA_SUB) / 3
    assert s.loc["gpqa_all", "value"] != pytest.approx(plain, abs=1e-6)


def test_leaderboard_group_without_its_row_or_counts_is_noted_not_stored(tmp_path):
    doc = leaderboard_doc()
    del doc["results"]["leaderboard_musr"]
    res = read_results(write(tmp_path, "lb.json", doc))
    assert "musr" not in set(res.dataset.scores["benchmark"])
    assert any("leaderboard_musr (no row for the group and no n-samples" in line for line in res.skipped)
