"""The preprint's steering protocol reproduced (cape-scaling cli/cape_steer.py), beside the
controls that show what its "changed" counts: sampling alone (alpha = 0) and steering alone
(greedy)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cape.errors import CapeError  # noqa: E402
from cape.steer.apply import paper_strength  # noqa: E402
from cape.steer.extraction import activations  # noqa: E402
from cape.steer.models import LoadedModel  # noqa: E402
from cape.steer.paper_protocol import (PHASES, calibration, paper_direction, paper_prompts,  # noqa: E402
                                       paper_protocol)

from steer_tiny import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def lm():
    from cape.steer.layers import find_layers

    model, tok = tiny_model("llama", n_layers=8, hidden=32)
    path, blocks = find_layers(model)
    return LoadedModel(model, tok, "tiny-llama", len(blocks), 32, path)


def test_calibration_is_the_preprints_data():
    cal = calibration()
    assert len(cal["true"]) == len(cal["false"]) == 8
    assert "cape_steer.py" in cal["source"] and "MIT" in cal["licence"]
    assert cal["decoding"] == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 50,
                               "seed": None}


def test_paper_direction_is_the_mean_difference_at_quarter_depth(lm):
    vec = paper_direction(lm)
    assert vec.layers == [lm.n_layers // 4] == [2]
    cal = calibration()
    acts = activations(lm, cal["true"] + cal["false"], batch_size=1)[:, 2, :].astype(np.float64)
    diff = acts[:8].mean(0) - acts[8:].mean(0)
    np.testing.assert_allclose(vec.directions[2], diff / np.linalg.norm(diff), atol=1e-6)
    with pytest.raises(CapeError, match="out of range"):
        paper_direction(lm, layer=99)


def test_the_three_conditions_count_what_they_say(lm):
    prompts = ["The sky is", "Water boils at", "Paris is the capital of"]
    res = paper_protocol(lm, prompts, seed=0, max_new_tokens=12)
    assert list(res.conditions["condition"]) == ["paper", "alpha=0", "greedy"]
    rows = res.rows
    # the strength is the preprint's rule applied to the cosine; the phase names its band
    for r in rows[rows["condition"] != "alpha=0"].to_dict("records"):
        assert r["strength"] == pytest.approx(paper_strength(r["cos"]))
        assert r["phase"] == PHASES[[3.0, 1.5, 0.5, 0.0].index(r["strength"])]
    assert (rows.loc[rows["condition"] == "alpha=0", "strength"] == 0).all()
    # greedy decoding does not depend on the seed: what it counts is the steering's alone
    g0 = paper_protocol(lm, prompts, seed=0, max_new_tokens=12, conditions=["greedy"]).rows
    g5 = paper_protocol(lm, prompts, seed=5, max_new_tokens=12, conditions=["greedy"]).rows
    assert list(g0["steered"]) == list(g5["steered"]) and list(g0["normal"]) == list(g5["normal"])
    # sampling alone: two unseeded-style samples of a random tiny model differ almost always
    c = res.conditions.set_index("condition")
    assert c.loc["alpha=0", "changed"] >= 2
    assert 0 <= c.loc["paper", "ci_low"] <= c.loc["paper", "share"] <= c.loc["paper", "ci_high"] <= 1
    # a seed makes the whole run repeatable
    again = paper_protocol(lm, prompts, seed=0, max_new_tokens=12)
    assert list(again.rows["normal"]) == list(rows["normal"]) and list(again.rows["steered"]) == list(rows["steered"])
    assert "changed" in res.summary() and res.to_dict()["conditions"][0]["n"] == 3


def test_greedy_with_zero_strength_changes_nothing_and_with_strength_may(lm):
    """The control that must be able to say 'no change': greedy decoding, strengths all 0."""
    from cape.steer.apply import paper_steer
    from cape.steer.paper_protocol import _generate_one

    vec = paper_direction(lm)
    unit = torch.from_numpy(vec.directions[2])
    settings = {"max_new_tokens": 10}
    plain = _generate_one(lm, "The sky is", sample=False, settings=settings)
    with paper_steer(lm.model, unit, 2, strengths=(0.0, 0.0, 0.0, 0.0)):
        zero = _generate_one(lm, "The sky is", sample=False, settings=settings)
    with paper_steer(lm.model, unit, 2, strengths=(300.0, 300.0, 300.0, 300.0)):
        big = _generate_one(lm, "The sky is", sample=False, settings=settings)
    assert zero == plain and big != plain


def test_bad_input(lm, tmp_path):
    with pytest.raises(CapeError, match="unknown condition"):
        paper_protocol(lm, ["x"], conditions=["nope"])
    with pytest.raises(CapeError, match="no prompts"):
        paper_protocol(lm, [])
    (tmp_path / "p.json").write_text('{"results": [{"name": "a", "prompt": ""}]}')
    with pytest.raises(CapeError, match="results\\[0\\], field 'prompt'"):
        paper_prompts(tmp_path / "p.json")


def test_the_preprints_prompts(shared_data):
    prompts = paper_prompts(shared_data / "data" / "cape-paper" / "self_aligning_demo_410m.json")
    assert len(prompts) == 14 and all(p["published_changed"] is True for p in prompts)
    assert prompts[0]["published_model"] == "pythia-410m"
