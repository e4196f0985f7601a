"""The steering evaluation on held-out questions, against its controls (tiny model, a small
TruthfulQA-format file)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cape.errors import CapeError  # noqa: E402
from cape.steer.data import from_truthfulqa  # noqa: E402
from cape.steer.evaluate import evaluate, random_like  # noqa: E402
from cape.steer.extraction import extract  # noqa: E402
from cape.steer.layers import find_layers  # noqa: E402
from cape.steer.models import LoadedModel  # noqa: E402

from steer_tiny import TRUE_FALSE_FACTS, tiny_model  # noqa: E402

FACTS = TRUE_FALSE_FACTS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("tqa") / "TruthfulQA.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        for q, t, f in FACTS:
            w.writerow(["Adversarial", "Facts", q, t, t, f"{f}; {f} indeed", "made up for tests"])
    model, tok = tiny_model("llama", n_layers=3, hidden=32)
    p, blocks = find_layers(model)
    lm = LoadedModel(model, tok, "tiny-llama", len(blocks), 32, p)
    ex = extract(lm, from_truthfulqa(path), layer=1, seed=0, eval_fraction=0.34)
    return lm, ex.chosen_vector, path


def test_random_controls_have_the_vectors_length(setup):
    lm, vec, _ = setup
    r = random_like(vec, 3)
    for a, unit in ((2.0, "sd"), (5.0, "raw")):
        np.testing.assert_allclose(np.linalg.norm(r.scaled(a, unit)[1].numpy()),
                                   np.linalg.norm(vec.scaled(a, unit)[1].numpy()), rtol=1e-5)
    assert abs(float(np.dot(r.directions[1], vec.directions[1]))) < 0.9  # another direction
    assert not np.allclose(random_like(vec, 4).directions[1], r.directions[1])


def test_evaluate_scores_held_out_questions_under_every_condition(setup, tmp_path):
    lm, vec, path = setup
    res = evaluate(lm, vec, csv_path=path, alphas=[0.0, 50.0], n_random=2, primer="", side_effects_tokens=64,
                   side_text=None, unit="raw")
    held = {f"truthfulqa:{r}" for r in res.per_question["row"].unique()}
    assert held == set(vec.meta["eval_groups"]) and not held & set(vec.meta["extract_groups"])
    c = res.conditions
    assert list(c["condition"].unique()) == ["unsteered", "prompt", "steered", "negated", "random"]
    # alpha 0: every steered/negated/random condition equals unsteered exactly
    zero = c[c["alpha"] == 0.0]
    assert (zero["d_mc1"] == 0).all() and (zero["d_mc2"].abs() < 1e-9).all() and (zero["kl"].abs() < 1e-9).all()
    # a large push changes the scores and has side effects
    big = c[(c["alpha"] == 50.0) & (c["condition"] == "steered")].iloc[0]
    assert big["kl"] > 0 and len(big["d_mc2_ci"]) == 2
    assert "margin_mc2" in big and np.isfinite(big["margin_mc2"])
    # per question, the difference is what the table says
    pq = res.per_question
    s = pq[(pq["condition"] == "steered") & (pq["alpha"] == 50.0)]["mc2"].to_numpy()
    u = pq[pq["condition"] == "unsteered"]["mc2"].to_numpy()
    assert big["d_mc2"] == pytest.approx(float((s - u).mean()))
    out = res.save(tmp_path / "eval.json")
    doc = json.loads(out.read_text())
    assert doc["kind"] == "cape-steering-evaluation" and doc["meta"]["versions"]["torch"]
    assert doc["meta"]["split"]["seed"] == vec.split_seed and len(doc["conditions"]) == len(c)
    assert "steering evaluation of tiny-llama" in res.summary()


def test_bad_input(setup):
    lm, vec, path = setup
    with pytest.raises(CapeError, match="alpha grid is empty"):
        evaluate(lm, vec, csv_path=path, alphas=[], primer="")
    with pytest.raises(CapeError, match="not in this vector"):
        evaluate(lm, vec, csv_path=path, layers=[2], primer="")


def test_cli_eval_on_a_saved_tiny_model(setup, tmp_path, capsys):
    """`cape steer extract` then `cape steer eval` as a user runs them (a tiny Llama with a
    long enough context for lm-eval's primer), the saved JSON matching the printed one."""
    from cape.cli import main
    from steer_tiny import save_tiny_llama

    _, _, path = setup
    folder = save_tiny_llama(tmp_path / "tiny", kv_heads=4)
    vec = tmp_path / "v.safetensors"
    assert main(["steer", "extract", "-m", str(folder), "--data", f"truthfulqa:{path}", "--layer", "1",
                 "--eval-fraction", "0.34", "--out", str(vec)]) == 0
    capsys.readouterr()
    code = main(["steer", "eval", "-m", str(folder), "-v", str(vec), "--truthfulqa", str(path), "--alpha", "0",
                 "--alpha", "30", "--random", "1", "--side-tokens", "64", "--limit", "3", "--out",
                 str(tmp_path / "e.json"), "--max-new-tokens", "4", "--plot", str(tmp_path / "sweep.html"), "--json"])
    got = capsys.readouterr()
    assert code == 0, got.err
    printed = json.loads(got.out[got.out.index("{"):])
    saved = json.loads((tmp_path / "e.json").read_text())
    assert printed["conditions"] == saved["conditions"] and saved["meta"]["n_questions"] == 3
    # open-ended answers judged for every condition; the run recorded where cape audit looks
    assert all(c["oe_true_n"] == 3 for c in saved["conditions"]) and "corrected" in saved["conditions"][2]
    from cape.steer.evaluate import saved_evaluations, steering_dir

    assert printed["recorded"] and Path(printed["recorded"]).parent == steering_dir()
    [ev] = saved_evaluations()
    assert ev.model_id == saved["model"] and len(ev.conditions) == len(saved["conditions"])
    html = (tmp_path / "sweep.html").read_text()
    assert "Steering sweep" in html and "random (mean), layer 1" in html
    conds = [(c["condition"], c["alpha"]) for c in saved["conditions"]]
    assert conds[:2] == [("unsteered", None), ("prompt", None)] and ("random", 30.0) in conds
    # without a vector: the unsteered model on the first questions of the file
    code = main(["steer", "eval", "-m", str(folder), "--truthfulqa", str(path), "--limit", "2", "--json"])
    got = capsys.readouterr()
    assert code == 0 and json.loads(got.out[got.out.index("{"):])["mc1"]["n"] == 2
    # an empty alpha grid cannot be asked for from the CLI (default 2, 4, 8); a bad layer is one line
    code = main(["steer", "eval", "-m", str(folder), "-v", str(vec), "--truthfulqa", str(path), "--layer", "5"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: layer 5 is not in this vector") and "loading" not in err


# ------------------------------------------------------------------------- open-ended answers

def test_open_ended_answers_stop_at_a_blank_line(setup):
    """A tiny model pushed to say "\\n" at every step ends each answer at once (stop string
    found, generation cut short); pushed to say "x" it runs to max_new_tokens."""
    from cape.steer.open_ended import answer_prompt, answer_questions

    lm, _, _ = setup
    tok = lm.tokenizer
    assert answer_prompt("Why?", "P").endswith("P\n\nQ: Why?\nA:")
    head = lm.model.get_output_embeddings()
    for char, want, steps in (("\n", "", 2), ("x", "x" * 7, 7)):
        tid = tok.convert_tokens_to_ids(char)
        calls = []

        def force(module, args, output, tid=tid, calls=calls):  # the model can only say `char`
            calls.append(1)
            forced = torch.full_like(output, -1e4)
            forced[..., tid] = 0.0
            return forced

        handle = head.register_forward_hook(force)
        try:
            got = answer_questions(lm, ["Is ice cold?", "Do birds fly?"], primer="", max_new_tokens=7)
        finally:
            handle.remove()
        assert got == [want, want], (char, got)
        assert len(calls) == steps  # one forward per new token: "\n\n" ends the answers after two
    with pytest.raises(CapeError, match="empty"):
        answer_questions(lm, [" "], primer="")


def test_evaluate_open_ended_rates_follow_the_judgements(setup):
    lm, vec, path = setup
    res = evaluate(lm, vec, csv_path=path, alphas=[0.0, 80.0], n_random=2, primer="", side_effects_tokens=0,
                   unit="raw", open_ended=True, max_new_tokens=6, prompt_baseline=False)
    c, pq = res.conditions, res.per_question
    u = pq[pq["condition"] == "unsteered"]["judged_true"].to_numpy(dtype=bool)
    base = c[c["condition"] == "unsteered"].iloc[0]
    assert base["misaligned_k"] == int((~u).sum()) and base["oe_true_k"] == int(u.sum())
    for r in c[c["condition"] != "unsteered"].to_dict("records"):
        sub = pq[(pq["condition"].str.split(":").str[0] == r["condition"]) & (pq["alpha"] == r["alpha"])]
        if r["condition"] == "random":
            sub = sub[sub["condition"] == f"random:{int(r['control_seed'])}"]
        s = sub["judged_true"].to_numpy(dtype=bool)
        assert (r["corrected_k"], r["corrected_n"]) == (int((~u & s).sum()), int((~u).sum()))
        assert (r["broken_k"], r["broken_n"]) == (int((u & ~s).sum()), int(u.sum()))
        if r["alpha"] == 0.0:  # no push: the same answers, nothing corrected or broken
            assert list(sub["answer"]) == list(pq[pq["condition"] == "unsteered"]["answer"])
            assert r["corrected_k"] == 0 and r["broken_k"] == 0
    big = pq[(pq["condition"] == "steered") & (pq["alpha"] == 80.0)]
    assert list(big["answer"]) != list(pq[pq["condition"] == "unsteered"]["answer"])
    st = c[(c["condition"] == "steered") & (c["alpha"] == 80.0)].iloc[0]
    rand = np.mean([pq[(pq["condition"] == f"random:{k}") & (pq["alpha"] == 80.0)]["judged_true"].to_numpy(float)
                    for k in (0, 1)], axis=0)
    assert st["margin_oe_true"] == pytest.approx(float((big["judged_true"].to_numpy(float) - rand).mean()))
    assert "steered layer 1 alpha 80" in res.meta["open_ended"]["samples"]
    assert "open-ended: greedy answers judged by bleu" in res.summary()
    with pytest.raises(CapeError, match="unknown judge metric"):
        evaluate(lm, vec, csv_path=path, alphas=[1.0], primer="", open_ended=True, judge_metric="bleurt")


def _doc(model, when, d_mc2=0.01):
    return {"kind": "cape-steering-evaluation", "model": model, "meta": {"finished_at": when, "n_questions": 2},
            "conditions": [{"condition": "unsteered", "layer": None, "alpha": None, "mc1": 0.5, "mc2": 0.5},
                           {"condition": "steered", "layer": 3, "alpha": 2.0, "mc1": 0.5, "mc2": 0.5 + d_mc2,
                            "d_mc2": d_mc2}],
            "per_question": []}


def test_saved_evaluations_keep_the_newest_per_model(tmp_path):
    from cape.steer.evaluate import SteeringEvaluation, saved_evaluations

    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "a-old.json").write_text(json.dumps(_doc("m/a", "2026-01-01T00:00:00+00:00", 0.1)))
    (folder / "a-new.json").write_text(json.dumps(_doc("m/a", "2026-02-01T00:00:00+00:00", 0.2)))
    (folder / "b.json").write_text(json.dumps(_doc("m/b", "2026-01-05T00:00:00+00:00")))
    (folder / "other.json").write_text(json.dumps({"kind": "something else"}))
    evs = saved_evaluations([folder])
    assert [e.model_id for e in evs] == ["m/a", "m/b"]
    assert evs[0].best()["d_mc2"] == 0.2 and evs[0].meta["file"].endswith("a-new.json")
    assert saved_evaluations() == []  # nothing recorded in this test's CAPE_HOME
    with pytest.raises(CapeError, match="other.json: not a steering evaluation"):
        saved_evaluations([folder / "other.json"])
    (folder / "broken.json").write_text("{")
    with pytest.raises(CapeError, match="broken.json: not a readable JSON file"):
        SteeringEvaluation.load(folder / "broken.json")
    doc = _doc("m/c", "x")
    del doc["conditions"][0]["mc2"]
    (folder / "c.json").write_text(json.dumps(doc))
    with pytest.raises(CapeError, match="c.json: condition 1: field 'mc2' is missing"):
        SteeringEvaluation.load(folder / "c.json")


# ------------------------------------------------------------------------- SmolLM2-135M (slow)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.slow
def test_smollm2_small_sweep_end_to_end(smollm2, tmp_path):
    """A vector from 24 TruthfulQA questions, then a small sweep on 4 of its held-out
    questions: every condition scored, answered and judged, the preprint's protocol beside
    it, saved, read back and judged by the audit."""
    csv_path, mc_path = SHARED / "truthfulqa" / "TruthfulQA.csv", SHARED / "truthfulqa" / "mc_task.json"
    prompts = SHARED / "cape-paper" / "self_aligning_demo_410m.json"
    if not (csv_path.is_file() and mc_path.is_file() and prompts.is_file()):
        pytest.skip("../shared/data (TruthfulQA, the preprint's prompts) is not here")
    from cape.audit import run_audit
    from cape.steer.data import load_contrast

    doc = json.loads(prompts.read_text(encoding="utf-8"))
    doc["results"] = doc["results"][:3]  # three of the preprint's 14 prompts keep the test short
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(doc), encoding="utf-8")
    lm = smollm2
    ex = extract(lm, load_contrast(f"truthfulqa:{csv_path}", max_questions=24), layer=20, seed=0)
    vec = ex.chosen_vector
    res = evaluate(lm, vec, csv_path=csv_path, mc_path=mc_path, alphas=[6.0], n_random=1, limit=4,
                   side_effects_tokens=64, open_ended=True, max_new_tokens=12, paper_prompts=prompts)
    c = res.conditions
    assert c["condition"].tolist() == ["unsteered", "prompt", "steered", "negated", "random"]
    assert (c["n"] == 4).all() and res.meta["targets"].startswith("mc_task.json")
    held = {f"truthfulqa:{r}" for r in res.per_question["row"]}
    assert held <= set(vec.meta["eval_groups"]) and not held & set(vec.meta["extract_groups"])
    steered = c[c["condition"] == "steered"].iloc[0]
    assert steered["kl"] > 0 and steered["oe_true_n"] == 4 and len(steered["d_mc2_ci"]) == 2
    answers = res.per_question[res.per_question["condition"] == "unsteered"]["answer"]
    assert answers.str.len().gt(0).all() and not answers.str.contains("\n\n").any()
    pp = res.meta["paper_protocol"]
    assert [x["condition"] for x in pp["conditions"]] == ["paper", "alpha=0", "greedy"] and pp["layer"] == 7
    path = res.save(tmp_path / "ev.json")
    row = run_audit(only=["A17"], replication=None, steering=[path]).table.iloc[0]
    assert row["verdict"] in ("reproduced", "reproduced but fragile", "not reproduced")
    assert "smollm2-135m" in row["reason"] and f"{pp['conditions'][1]['changed']}/3 changed (sampling alone)" \
        in row["reason"]
