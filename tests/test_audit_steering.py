"""Claim A17 (steering corrects misaligned outputs) judged from saved steering evaluations,
in the constructed cases where it must hold, be fragile, and fail; no model needed."""

from __future__ import annotations

import json

from cape.audit import run_audit


def _evaluation(model, *, changed, alpha0, margin_mc2, margin_corrected, corrected=(3, 10), paper=True,
                when="2026-11-30T00:00:00+00:00"):
    steered = {"condition": "steered", "layer": 7, "alpha": 4.0, "mc1": 0.3, "mc2": 0.45, "d_mc2": 0.04,
               "d_mc2_ci": [0.0, 0.08], "margin_mc2": margin_mc2[0], "margin_mc2_ci": list(margin_mc2[1:]),
               "corrected": corrected[0] / corrected[1], "corrected_k": corrected[0], "corrected_n": corrected[1],
               "broken": 0.1, "broken_k": 1, "broken_n": 10, "margin_corrected": margin_corrected[0],
               "margin_corrected_ci": list(margin_corrected[1:])}
    meta = {"finished_at": when, "n_questions": 20, "unit": "sd"}
    if paper:
        meta["paper_protocol"] = {"layer": 7, "conditions": [
            {"condition": "paper", "changed": changed, "n": 14, "share": changed / 14, "ci_low": 0.0, "ci_high": 1.0},
            {"condition": "alpha=0", "changed": alpha0, "n": 14, "share": alpha0 / 14, "ci_low": 0.0, "ci_high": 1.0},
            {"condition": "greedy", "changed": 5, "n": 14, "share": 5 / 14, "ci_low": 0.0, "ci_high": 1.0}]}
    return {"kind": "cape-steering-evaluation", "model": model, "meta": meta, "per_question": [],
            "conditions": [{"condition": "unsteered", "layer": None, "alpha": None, "mc1": 0.3, "mc2": 0.41},
                           steered]}


def _a17(tmp_path, *docs):
    for i, d in enumerate(docs):
        (tmp_path / f"e{i}.json").write_text(json.dumps(d))
    row = run_audit(only=["A17"], replication=None, steering=[tmp_path]).table.iloc[0]
    return row["verdict"], row["reason"], row["figure"]


def test_a17_reproduced_when_steering_beats_random_directions(tmp_path):
    v, reason, figure = _a17(tmp_path, _evaluation("m", changed=12, alpha0=2, margin_mc2=(0.05, 0.02, 0.08),
                                                   margin_corrected=(0.3, 0.1, 0.5)))
    assert v == "reproduced", reason
    assert "12/14 changed" in reason and "MC2 over random directions +0.050 [+0.020, +0.080]" in reason
    assert "2/14 changed (sampling alone)" in reason and figure.startswith("changed 86%")


def test_a17_fragile_when_the_count_is_sampling(tmp_path):
    """The published count is met (14/14 changed) but unsteered samples change as often and
    the vector does no better than random directions: reproduced but fragile."""
    v, reason, _ = _a17(tmp_path, _evaluation("m", changed=14, alpha0=14, margin_mc2=(0.02, -0.03, 0.07),
                                              margin_corrected=(0.05, -0.1, 0.2)))
    assert v == "reproduced but fragile", reason
    assert "14/14 changed (sampling alone)" in reason and "[-0.030, +0.070]" in reason


def test_a17_not_reproduced_below_the_published_share(tmp_path):
    v, reason, _ = _a17(tmp_path, _evaluation("m", changed=1, alpha0=0, margin_mc2=(0.05, 0.02, 0.08),
                                              margin_corrected=(0.3, 0.1, 0.5)))
    assert v == "not reproduced" and "1/14 changed = 7%" in reason and "at least 20%" in reason


def test_a17_without_the_preprint_protocol_uses_the_corrected_rate(tmp_path):
    low = _evaluation("m", changed=0, alpha0=0, margin_mc2=(0.05, 0.02, 0.08), margin_corrected=(0.3, 0.1, 0.5),
                      corrected=(1, 10), paper=False)
    v, reason, _ = _a17(tmp_path, low)
    assert v == "not reproduced" and "corrected 1/10 = 10%" in reason and "--paper-prompts" in reason
    high = _evaluation("m", changed=0, alpha0=0, margin_mc2=(0.05, 0.02, 0.08), margin_corrected=(0.3, 0.1, 0.5),
                       corrected=(5, 10), paper=False, when="2026-12-01T00:00:00+00:00")
    v, reason, _ = _a17(tmp_path, low, high)  # the newer run of the same model is the one judged
    assert v == "reproduced" and "corrected 5/10 = 50%" in reason


def test_a17_every_model_must_hold(tmp_path):
    good = _evaluation("a", changed=12, alpha0=2, margin_mc2=(0.05, 0.02, 0.08), margin_corrected=(0.3, 0.1, 0.5))
    bad = _evaluation("b", changed=1, alpha0=0, margin_mc2=(0.05, 0.02, 0.08), margin_corrected=(0.3, 0.1, 0.5))
    v, reason, _ = _a17(tmp_path, good, bad)
    assert v == "not reproduced" and reason.index("a: ") < reason.index("b: ")


def test_a17_not_computed_without_saved_results(tmp_path):
    row = run_audit(only=["A17"], replication=None).table.iloc[0]
    assert row["verdict"] == "not computed yet" and "cape steer eval" in row["reason"]
    row = run_audit(only=["A17"], replication=None, steering=[tmp_path / "missing.json"]).table.iloc[0]
    assert row["verdict"] == "not computable" and "missing.json: no such file" in row["reason"]
