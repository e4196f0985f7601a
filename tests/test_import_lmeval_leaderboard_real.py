"""Real lm-evaluation-harness files of the Open LLM Leaderboard v2 suites (``--tasks
leaderboard``; tests/fixtures/lmeval-real, see its README): what CAPE stores for each,
checked against the file read by hand with ``json.load``.

Both are runs of Qwen/Qwen3-8B made by another person with ``limit=1`` (one item per
subtask), so every score is flagged ``limited``; what is checked is that the right numbers
land in the right benchmark, variant and shot count.

* ``v0.4.9.1_...``: lm-eval 0.4.9.1 writes each suite's group row (``leaderboard_bbh``...)
  with its aggregate; CAPE stores that row.
* ``b876b3b_...`` (lm-eval at git b876b3b): the group rows hold no score, only
  ``{" ": " ", "alias": ...}``. CAPE used to store nothing for BBH, GPQA, MATH and MuSR
  (a note per metric ``' '``); it now stores lm-eval's aggregate, the subtasks' mean
  weighted by their ``n-samples`` counts. Its MATH subtasks are task version 2.0, which
  read all 5000 MATH test problems (``n-samples`` ``original``), not the 1324 level-5 ones:
  stored flagged ``items_mismatch:5000/1324``.
"""

from __future__ import annotations

import copy
import json

import pytest

from cape.benchmarks import BENCHMARKS, try_resolve
from cape.errors import InputError
from cape.flags import FLAGS
from cape.io import read_results
from cape.io.harness import _SUITE_ITEMS
from conftest import FIXTURES, run_cli

REAL = FIXTURES / "lmeval-real"
NEW = REAL / "v0.4.9.1_qwen3-8b_leaderboard_limit1.json"  # group rows with their aggregate
OLD = REAL / "b876b3b_qwen3-8b_leaderboard_nogroupscore_limit1.json"  # group rows without

#: lm-eval group -> (CAPE benchmark, variant, the group's metric key)
GROUPS = {
    "leaderboard_bbh": ("bbh", "acc_norm", "acc_norm,none"),
    "leaderboard_gpqa": ("gpqa_all", "acc_norm", "acc_norm,none"),
    "leaderboard_math_hard": ("math_lvl5", "exact_match", "exact_match,none"),
    "leaderboard_musr": ("musr", "acc_norm", "acc_norm,none"),
}
IFEVAL = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
          "inst_level_loose_acc")


def load(path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def pretrained(doc) -> str:
    args = dict(part.split("=", 1) for part in doc["config"]["model_args"].split(","))
    return args["pretrained"]


def shots_of(doc, tasks) -> set[int]:
    return {doc["n-shot"][t] for t in tasks}


def counts(doc, tasks, which: str) -> int:
    return sum(doc["n-samples"][t][which] for t in tasks)


def limited(doc, tasks) -> str:
    return f"limited:{counts(doc, tasks, 'effective')}/{counts(doc, tasks, 'original')}"


def weighted_mean(doc, tasks, key) -> float:
    """lm-eval's group aggregate by hand: subtasks weighted by items scored, in percent."""
    n = {t: doc["n-samples"][t]["effective"] for t in tasks}
    return 100 * sum(doc["results"][t][key] * n[t] for t in tasks) / sum(n.values())


def scores(path, **kw):
    return read_results(path, **kw).dataset.scores.set_index(["benchmark", "variant"])


# ------------------------------------------------------------------ the file, by hand
def test_fixtures_are_what_the_readme_says():
    new, old = load(NEW), load(OLD)
    for doc in (new, old):
        assert doc["config"]["limit"] == 1 and pretrained(doc) == "Qwen/Qwen3-8B"
        assert set(doc["group_subtasks"]["leaderboard"]) == set(GROUPS) | {
            "leaderboard_ifeval", "leaderboard_mmlu_pro"}
        assert {len(doc["group_subtasks"][g]) for g in GROUPS} == {24, 3, 7}
    assert new["lm_eval_version"] == "0.4.9.1" and "lm_eval_version" not in old
    assert all("acc_norm,none" in new["results"][g] or "exact_match,none" in new["results"][g]
               for g in GROUPS)
    assert all(set(old["results"][g]) == {" ", "alias"} for g in GROUPS)  # no score
    math = new["group_subtasks"]["leaderboard_math_hard"]
    assert counts(new, math, "original") == 1324 and counts(old, math, "original") == 5000
    assert {old["versions"][t] for t in math} == {2.0} and {new["versions"][t] for t in math} == {3.0}


# ------------------------------------------------------------------ lm-eval 0.4.9.1
def test_v0491_leaderboard_run_round_trips():
    doc = load(NEW)
    res = read_results(NEW)  # no --skip-unknown: subtasks and the umbrella are notes, not errors
    s = res.dataset.scores.set_index(["benchmark", "variant"])
    want = {bv[:2] for bv in GROUPS.values()} | {("ifeval", m) for m in IFEVAL} | {
        ("ifeval", "strict_acc_mean"), ("mmlu_pro", "acc")}
    assert set(s.index) == want
    assert set(s["model"]) == {pretrained(doc)}
    assert set(s["harness"]) == {f"lm-evaluation-harness {doc['lm_eval_version']}"}
    models = res.dataset.models.set_index("model")
    assert models.loc[pretrained(doc), "params"] == doc["config"]["model_num_parameters"]
    r = doc["results"]
    for group, (bench, variant, key) in GROUPS.items():
        subs = doc["group_subtasks"][group]
        row = s.loc[(bench, variant)]
        assert row["value"] == pytest.approx(100 * r[group][key]), group  # the group's own row
        assert row["_row"] == f"results.{group}"
        (shots,) = shots_of(doc, subs)  # every subtask ran with the same shots
        assert row["n_shot"] == shots, group
        assert row["flags"] == limited(doc, subs), group
        # lm-eval's group row is the size-weighted mean of its subtasks
        assert 100 * r[group][key] == pytest.approx(weighted_mean(doc, subs, key)), group
    assert (s.loc[("bbh", "acc_norm"), "n_shot"], s.loc[("gpqa_all", "acc_norm"), "n_shot"],
            s.loc[("math_lvl5", "exact_match"), "n_shot"], s.loc[("musr", "acc_norm"), "n_shot"]) \
        == (3, 0, 4, 0)
    mp = s.loc[("mmlu_pro", "acc")]
    assert mp["value"] == pytest.approx(100 * r["leaderboard_mmlu_pro"]["acc,none"])
    assert mp["n_shot"] == doc["n-shot"]["leaderboard_mmlu_pro"] == 5
    assert mp["flags"] == limited(doc, ["leaderboard_mmlu_pro"])
    ife = r["leaderboard_ifeval"]
    for metric in IFEVAL:
        row = s.loc[("ifeval", metric)]
        assert row["value"] == pytest.approx(100 * ife[f"{metric},none"]), metric
        assert row["n_shot"] == doc["n-shot"]["leaderboard_ifeval"] == 0
    mean = 100 * (ife["prompt_level_strict_acc,none"] + ife["inst_level_strict_acc,none"]) / 2
    assert s.loc[("ifeval", "strict_acc_mean"), "value"] == pytest.approx(mean)
    assert s["stderr"].isna().all()  # every stderr in the file is "N/A" (one item per task)
    assert "items_mismatch" not in ";".join(s["flags"])
    assert any("'leaderboard'" in line for line in res.skipped)  # the umbrella: a note
    # subtasks of a group whose row is stored are neither stored nor noted
    assert not any("leaderboard_gpqa_diamond" in line for line in res.skipped)


# ------------------------------------------------------------------ group rows without a score
def test_group_rows_without_a_score_become_the_size_weighted_mean_of_subtasks():
    doc = load(OLD)
    res = read_results(OLD)
    s = res.dataset.scores.set_index(["benchmark", "variant"])
    for group, (bench, variant, key) in GROUPS.items():
        subs = doc["group_subtasks"][group]
        row = s.loc[(bench, variant)]
        assert row["value"] == pytest.approx(weighted_mean(doc, subs, key)), group
        (shots,) = shots_of(doc, subs)
        assert row["n_shot"] == shots, group
        assert row["_row"].startswith(f"results.{group.removesuffix('_hard')}_")
        flags = row["flags"].split(";")
        assert flags[0] == limited(doc, subs), group
        mismatch = [f for f in flags if f.startswith("items_mismatch")]
        if group == "leaderboard_math_hard":  # version 2.0: all 5000 MATH problems
            assert mismatch == [f"items_mismatch:{counts(doc, subs, 'original')}/1324"]
        else:
            assert mismatch == [], group
    assert not any("metric ' '" in line for line in res.skipped)
    # ifeval and mmlu_pro have no group: read as in the newer file
    assert s.loc[("mmlu_pro", "acc"), "value"] == pytest.approx(
        100 * doc["results"]["leaderboard_mmlu_pro"]["acc,none"])


def test_a_group_row_with_a_score_is_used_not_recomputed(tmp_path):
    """The verdict can fail: put a different value in the group row of the old file and it,
    not the subtasks' mean, is stored."""
    doc = load(OLD)
    doc["results"]["leaderboard_bbh"] = {"acc_norm,none": 0.123, "acc_norm_stderr,none": 0.01,
                                         "alias": " - leaderboard_bbh"}
    s = scores(write(tmp_path, "old.json", doc))
    assert s.loc[("bbh", "acc_norm"), "value"] == pytest.approx(12.3)
    assert s.loc[("bbh", "acc_norm"), "_row"] == "results.leaderboard_bbh"
    assert s.loc[("bbh", "acc_norm"), "value"] != pytest.approx(
        weighted_mean(doc, doc["group_subtasks"]["leaderboard_bbh"], "acc_norm,none"))


def test_items_mismatch_is_set_only_when_the_counts_differ(tmp_path):
    new, old = load(NEW), load(OLD)
    math = old["group_subtasks"]["leaderboard_math_hard"]
    fixed = copy.deepcopy(old)  # the old file with the level-5 counts of the new one
    for t in math:
        fixed["n-samples"][t] = new["n-samples"][t]
    s = scores(write(tmp_path, "fixed.json", fixed))
    assert s.loc[("math_lvl5", "exact_match"), "flags"] == limited(fixed, math)
    broken = copy.deepcopy(new)  # the new file with the all-levels counts of the old one
    for t in math:
        broken["n-samples"][t] = old["n-samples"][t]
    s = scores(write(tmp_path, "broken.json", broken))
    assert s.loc[("math_lvl5", "exact_match"), "flags"].split(";") == [
        limited(broken, math), "items_mismatch:5000/1324"]
    assert s.loc[("math_lvl5", "exact_match"), "_row"] == "results.leaderboard_math_hard"


def test_strict_refuses_the_all_levels_math_and_clean_drops_it(tmp_path):
    doc = load(OLD)
    for counts_ in doc["n-samples"].values():  # as if the run had been complete
        counts_["effective"] = counts_["original"]
    path = write(tmp_path, "full.json", doc)
    with pytest.raises(InputError) as err:
        read_results(path, strict=True)
    text = str(err.value)
    assert "items_mismatch:5000/1324" in text and "results.leaderboard_math_*" in text
    assert FLAGS["items_mismatch"].rule == "drop"
    s = scores(path)
    assert s.loc[("math_lvl5", "exact_match"), "flags"] == "items_mismatch:5000/1324"
    assert (s.drop(index=("math_lvl5", "exact_match"))["flags"].fillna("") == "").all()


def test_suite_items_are_the_registered_benchmarks_and_the_real_files():
    new = load(NEW)
    for group, items in _SUITE_ITEMS.items():
        subs = new["group_subtasks"].get(group) or [group]
        assert counts(new, subs, "original") == items, group
        registered = try_resolve(group).benchmark
        if registered != "gpqa_all":  # gpqa_all.items counts the 546 distinct questions
            assert BENCHMARKS[registered].items in (None, items), group


# ------------------------------------------------------------------ CLI
@pytest.mark.slow  # five real `cape` subprocesses
def test_cli_ingest_and_show(cape_home):
    old, new = load(OLD), load(NEW)
    for path, panel in ((NEW, "lbnew"), (OLD, "lbold")):
        r = run_cli("ingest", str(path), "--panel", panel, home=cape_home)
        assert r.returncode == 0, r.stderr
    # every score, by hand from the old file (group rows without a score: the subtasks' mean)
    shown = run_cli("show", "lbold", "--long", "--json", home=cape_home)
    assert shown.returncode == 0, shown.stderr
    got = {(r["model"], r["benchmark"], r["variant"]): r for r in json.loads(shown.stdout)["scores"]}
    for group, (bench, variant, key) in GROUPS.items():
        subs = old["group_subtasks"][group]
        row = got[(pretrained(old), bench, variant)]
        assert row["value"] == pytest.approx(weighted_mean(old, subs, key)), group
        assert row["n_shot"] == next(iter(shots_of(old, subs))), group
    assert got[(pretrained(old), "math_lvl5", "exact_match")]["flags"] == \
        "limited:7/5000;items_mismatch:5000/1324"
    text = " ".join(run_cli("show", "lbold", home=cape_home).stdout.split())
    assert "math_lvl5 items_mismatch:5000/1324" in text and "8.19B" in text
    # the newer file: the group rows, one column per v2 benchmark
    table = json.loads(run_cli("show", "lbnew", "--json", home=cape_home).stdout)
    (model,) = table["models"]
    assert model["model"] == pretrained(new) and model["params"] == new["config"]["model_num_parameters"]
    for group, (bench, _, key) in GROUPS.items():
        assert model[bench] == pytest.approx(100 * new["results"][group][key]), bench
    assert model["mmlu_pro"] == pytest.approx(100 * new["results"]["leaderboard_mmlu_pro"]["acc,none"])
    # --clean drops every score of a limit=1 run
    cleaned = json.loads(run_cli("show", "lbnew", "--clean", "--json", home=cape_home).stdout)
    assert len(cleaned["log"]) == 10 and all("limited:" in line for line in cleaned["log"])


def test_one_ifeval_measure_across_the_v2_table_and_an_lm_eval_run(tmp_path):
    """The v2 contents table has only strict_acc_mean; an lm-eval leaderboard run has the four
    harness metrics too. A panel holding both shows one measure in its IFEval column."""
    from cape import api

    api.ingest(FIXTURES / "openllm-v2" / "contents.csv", "mixed")
    api.ingest(NEW, "mixed")
    df = api.load_panel("mixed")
    assert df.attrs["cape"]["variants"]["ifeval"] == ["strict_acc_mean"]
    ife = load(NEW)["results"]["leaderboard_ifeval"]
    want = 100 * (ife["prompt_level_strict_acc,none"] + ife["inst_level_strict_acc,none"]) / 2
    assert df.loc["Qwen/Qwen3-8B", "ifeval"] == pytest.approx(want)
    # the opposite: asking for the per-prompt variant columns shows the harness metric apart
    wide = api.load_panel("mixed", variant_columns=True)
    assert "ifeval:prompt_level_strict_acc" in wide.columns
    assert wide["ifeval:prompt_level_strict_acc"].notna().sum() == 1
