"""cape.steer.extraction: batched activations, direction methods, held-out probe statistics."""

from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

from cape.errors import CapeError  # noqa: E402
# the module (cape.steer.extract is the function)
ex = importlib.import_module("cape.steer.extraction")
from cape.steer.data import ContrastSet, default_set  # noqa: E402

from steer_tiny import tiny_model  # noqa: E402

torch.set_num_threads(1)

STATEMENTS = ["Paris is in France.", "Ice is cold.", "The moon is made of green cheese, they say.",
              "A", "Water boils at 100 C at sea level.", "Two plus two is five."]
TRUTHFULQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "truthfulqa" / "TruthfulQA.csv"


def loaded(arch: str = "llama", *, n_layers: int = 3, hidden: int = 32, seed: int = 0):
    from cape.steer.layers import find_layers
    from cape.steer.models import LoadedModel

    model, tok = tiny_model(arch, n_layers=n_layers, hidden=hidden, seed=seed)
    path, blocks = find_layers(model)
    return LoadedModel(model=model, tokenizer=tok, model_id=f"tiny-{arch}", n_layers=len(blocks),
                       hidden_size=hidden, layers_path=path)


@pytest.fixture
def tok_side(monkeypatch):
    """Set the shared tiny tokenizer's padding side for one test (restored afterwards)."""
    def set_side(lm, side):
        monkeypatch.setattr(lm.tokenizer, "padding_side", side)
    return set_side


# ---------------------------------------------------------------------------------- activations

@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "gemma2", "gpt2", "opt", "bloom", "gpt_neox",
                                  "falcon", "phi"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_batched_equals_one_at_a_time(arch, side, pooling, tok_side):
    lm = loaded(arch)
    tok_side(lm, side)
    batched = ex.activations(lm, STATEMENTS, batch_size=4, pooling=pooling)
    single = np.concatenate([ex.activations(lm, [s], batch_size=1, pooling=pooling) for s in STATEMENTS])
    assert batched.shape == (len(STATEMENTS), 3, 32) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_block_outputs_match_hidden_states():
    """Index N is the OUTPUT of block N (before the final norm for the last one)."""
    lm = loaded("llama")
    lm.tokenizer.padding_side = "left"
    acts = ex.activations(lm, ["Ice is cold."], pooling="last")
    with torch.inference_mode():
        out = lm.model(**lm.tokenizer(["Ice is cold."], return_tensors="pt"), output_hidden_states=True)
    for n in range(lm.n_layers - 1):  # hidden_states[n + 1] is the output of block n
        np.testing.assert_allclose(acts[0, n], out.hidden_states[n + 1][0, -1].numpy(), atol=1e-5)
    # the last hidden state of transformers has the final norm applied; the block output does not
    assert not np.allclose(acts[0, -1], out.hidden_states[-1][0, -1].numpy(), atol=1e-3)


def test_mean_and_last_pooling_differ_and_progress_and_hooks_removed():
    lm = loaded("llama")
    calls = []
    last = ex.activations(lm, STATEMENTS, batch_size=4, pooling="last", progress=lambda d, t: calls.append((d, t)))
    mean = ex.activations(lm, STATEMENTS, batch_size=4, pooling="mean")
    assert not np.allclose(last, mean, atol=1e-3)
    assert calls == [(4, 6), (6, 6)]
    from cape.steer.layers import find_layers
    assert all(len(b._forward_hooks) == 0 for b in find_layers(lm.model)[1])


def test_mean_pooling_is_the_mean_over_real_tokens():
    lm = loaded("gpt2")
    lm.tokenizer.padding_side = "left"
    text = "Ice is cold."
    mean = ex.activations(lm, [text, "A much longer statement pads the first."], pooling="mean")[0]
    with torch.inference_mode():
        out = lm.model(**lm.tokenizer([text], return_tensors="pt"), output_hidden_states=True)
    np.testing.assert_allclose(mean[0], out.hidden_states[1][0].mean(0).numpy(), atol=1e-5)


def test_nan_activations_raise_naming_fp16():
    from cape.steer.layers import find_layers

    lm = loaded("llama")
    blocks = find_layers(lm.model)[1]
    with torch.no_grad():
        next(blocks[1].parameters()).fill_(float("nan"))
    with pytest.raises(CapeError, match=r"layer 1 .*float16.*dtype='float32'"):
        ex.activations(lm, STATEMENTS)
    assert all(len(b._forward_hooks) == 0 for b in blocks)  # removed on the error path too


def test_bad_pooling_and_empty_statement():
    lm = loaded("llama")
    with pytest.raises(CapeError, match="pooling"):
        ex.activations(lm, STATEMENTS, pooling="max")
    assert ex.activations(lm, []).shape == (0, 3, 32)


# ---------------------------------------------------------------------------------- methods

def planted(n_groups=200, n_layers=3, hidden=16, strength=(0.0, 1.0, 4.0), seed=1):
    """Pairs (one true, one false statement per group) with a question offset shared by the pair,
    and a planted direction u of the given strength per layer (layer 0: none)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=hidden)
    u /= np.linalg.norm(u)
    labels = np.tile([True, False], n_groups)
    groups = np.repeat(np.arange(n_groups), 2).astype(str)
    offset = rng.normal(size=(n_groups, n_layers, hidden))[np.repeat(np.arange(n_groups), 2)]
    x = rng.normal(size=(2 * n_groups, n_layers, hidden)) + offset
    x += np.where(labels, 0.5, -0.5)[:, None, None] * np.asarray(strength)[None, :, None] * u
    return x.astype(np.float32), labels, groups, u


@pytest.mark.parametrize("method", ["diffmean", "pca", "logistic"])
def test_methods_recover_a_planted_direction(method):
    x, y, g, u = planted()
    cut = 280  # groups 0..139 extract, 140..199 evaluate
    pairs = ex.pair_within_groups(y[:cut], g[:cut]) if method == "pca" else None
    unit, frame = ex.probe_layers(x[:cut], y[:cut], x[cut:], y[cut:], method, pairs=pairs)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1.0, atol=1e-5)
    assert unit[2] @ u > 0.9  # the planted direction, with the sign "true projects higher"
    strong, none = frame.iloc[2], frame.iloc[0]
    assert strong.probe_acc > 0.85 and strong.ci_low > 0.5 and strong.n_eval == 120
    # the opposite case: no planted signal -> near chance, and the CI covers 0.5
    assert abs(none.probe_acc - 0.5) < 0.15 and none.ci_low < 0.5 < none.ci_high
    assert ex.choose_layer(frame, "best", 3) == 2
    # statistics are those of the extraction split's projections
    proj = x[:cut, 2] @ unit[2]
    assert math.isclose(strong.proj_mean, proj.mean(), rel_tol=1e-4, abs_tol=1e-5)
    assert math.isclose(strong.proj_sd, proj.std(ddof=1), rel_tol=1e-4)
    assert math.isclose(strong.resid_norm, np.linalg.norm(x[:cut, 2], axis=-1).mean(), rel_tol=1e-5)
    assert strong.threshold == pytest.approx((proj[y[:cut]].mean() + proj[~y[:cut]].mean()) / 2, rel=1e-4)


def test_pure_noise_gives_chance_everywhere():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 4, 16)).astype(np.float32)
    y = np.tile([True, False], 200)
    _, frame = ex.probe_layers(x[:280], y[:280], x[280:], y[280:], "diffmean")
    assert (frame.ci_low < 0.5).all() and (frame.ci_high > 0.5).all()
    assert (abs(frame.probe_acc - 0.5) < 0.15).all()


def test_pca_needs_pairs_and_sign_is_set_by_extraction_split():
    rng = np.random.default_rng(0)
    with pytest.raises(CapeError, match="paired"):
        ex.pca(rng.normal(size=(5, 2, 4)), rng.normal(size=(4, 2, 4)))
    # a method returning the WRONG sign is flipped on the extraction split
    x, y, g, u = planted()
    unit, frame = ex.probe_layers(x[:280], y[:280], x[280:], y[280:], lambda p, n: n.mean(0) - p.mean(0))
    assert unit[2] @ u > 0.9 and frame.iloc[2].probe_acc > 0.85


@pytest.mark.parametrize("m, hidden", [(10, 20), (30, 5)])  # Gram and second-moment branches
def test_pca_is_the_top_singular_vector_of_the_differences(m, hidden):
    rng = np.random.default_rng(m)
    pos, neg = rng.normal(size=(m, 2, hidden)) + 0.3, rng.normal(size=(m, 2, hidden))
    got = ex.pca(pos, neg)
    for layer in range(2):
        d = pos[:, layer] - neg[:, layer]
        ref = np.linalg.svd(d)[2][0]
        ref *= np.sign((d @ ref).sum())
        np.testing.assert_allclose(got[layer], ref, atol=1e-8)


def test_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    k, n = np.array([0, 7, 50, 93, 100]), 100
    low, high = ex.wilson_interval(k, n)
    ref_low, ref_high = proportion_confint(k, n, alpha=0.05, method="wilson")
    np.testing.assert_allclose(low, ref_low, atol=1e-9)
    np.testing.assert_allclose(high, ref_high, atol=1e-9)


def test_pair_within_groups():
    labels = np.array([True, True, False, False, False, True, False, True, False])
    groups = ["a", "a", "a", "a", "a", "b", "b", "x", "y"]  # x, y: one-sided loose statements
    pairs = ex.pair_within_groups(labels, groups)
    assert labels[pairs[:, 0]].all() and not labels[pairs[:, 1]].any()
    g = np.asarray(groups)
    inside = pairs[g[pairs[:, 0]] != "x"]
    assert (g[inside[:, 0]] == g[inside[:, 1]]).all()  # within a question when it has both sides
    assert set(pairs.ravel()) == set(range(len(labels)))  # every statement is used
    assert len(pairs) == 3 + 1 + 1  # a: 3 (cycling the 2 true), b: 1, loose x-y: 1


def test_choose_layer():
    import pandas as pd

    frame = pd.DataFrame({"layer": [0, 1, 2, 3], "probe_acc": [0.5, 0.8, 0.8, 0.6]})
    assert ex.choose_layer(frame, "best", 4) == 1  # ties: the lowest layer
    assert ex.choose_layer(frame, "quarter", 30) == 7
    assert ex.choose_layer(frame, 3, 4) == 3 and ex.choose_layer(frame, "2", 4) == 2
    for bad in (4, -1, "top", True, 1.5):
        with pytest.raises(CapeError, match="layer"):
            ex.choose_layer(frame, bad, 4)


# ---------------------------------------------------------------------------------- extract

def test_nothing_from_the_extraction_split_is_used_for_accuracy(monkeypatch):
    """By construction: eval statements carry the planted feature with the OPPOSITE sign, so a
    probe measured on held-out statements scores 0 and one that leaked extraction data would not."""
    n_groups = 40
    statements = [f"q{i} {'yes' if t else 'no'}" for i in range(n_groups) for t in (True, False)]
    cs = ContrastSet(statements, np.tile([True, False], n_groups), [f"q{i}" for i in range(n_groups) for _ in "ab"],
                     "planted")
    ext_set, ev_set = cs.split(5, 0.3)
    assert not set(ext_set.groups) & set(ev_set.groups)  # split by question
    held_out = set(ev_set.statements)
    seen = {}

    def fake(lm, statements, **kw):
        seen["statements"] = list(statements)
        rng = np.random.default_rng(0)
        x = rng.normal(scale=0.1, size=(len(statements), 2, 4)).astype(np.float32)
        for i, s in enumerate(statements):  # (building a fixture, not library code)
            sign = 1.0 if s.endswith("yes") else -1.0
            x[i, 1, 0] += sign * (-1.0 if s in held_out else 1.0)
        return x

    monkeypatch.setattr(ex, "activations", fake)
    lm = SimpleNamespace(n_layers=2, hidden_size=4, model_id="fake", layers_path="model.layers")
    res = ex.extract(lm, cs, seed=5, eval_fraction=0.3)
    assert seen["statements"] == list(ext_set.statements) + list(ev_set.statements)
    row = res.layers.iloc[1]
    assert row.probe_acc == 0.0 and row.n_eval == len(ev_set) and row.n_extract == len(ext_set)
    assert res.n_groups_eval == len(set(ev_set.groups)) and res.vector.split_seed == 5
    assert res.vector.dataset_hash == cs.hash()


def test_extract_on_a_tiny_model():
    lm = loaded("llama", n_layers=4)
    cs = default_set()
    calls = []
    res = ex.extract(lm, cs, batch_size=8, progress=lambda d, t: calls.append(d))
    frame = res.to_frame()
    assert list(frame.layer) == [0, 1, 2, 3] and frame.chosen.sum() == 1
    assert res.layer == int(frame.layer[frame.probe_acc.idxmax()])
    assert {"probe_acc", "ci_low", "ci_high", "n_eval", "proj_mean", "proj_sd", "resid_norm"} <= set(frame)
    assert sorted(res.vector.directions) == [0, 1, 2, 3]
    for d in res.vector.directions.values():
        assert np.asarray(d).shape == (32,) and abs(np.linalg.norm(d) - 1) < 1e-5
    assert res.vector.meta["layer"] == res.layer and res.vector.n_layers == 4
    assert res.vector.stats[res.layer]["proj_sd"] == pytest.approx(res.chosen.proj_sd)
    assert calls[-1] == len(cs) and len(calls) == math.ceil(len(cs) / 8)
    text = res.summary()
    assert "held-out" in text and f"chosen layer {res.layer}" in text
    assert ex.extract(lm, cs, layer="quarter", method="pca").layer == 1
    assert ex.extract(lm, cs, layer=3, method="logistic", pooling="mean").layer == 3


def test_extract_bad_input():
    lm = loaded("llama", n_layers=2)
    cs = default_set()
    with pytest.raises(CapeError, match="out of range"):
        ex.extract(lm, cs, layer=2)
    with pytest.raises(CapeError, match="method"):
        ex.extract(lm, cs, method="svm")
    one_sided = ContrastSet(["a", "b"], np.array([True, True]), ["1", "2"], "mine.csv")
    with pytest.raises(CapeError, match="one-sided"):
        ex.extract(lm, one_sided)


# ---------------------------------------------------------------------------------- SmolLM2

# (the `smollm2` fixture: tests/conftest.py, one load per session)


@pytest.mark.slow
@pytest.mark.shared
def test_smollm2_truthfulqa_probe_above_chance(smollm2, monkeypatch):
    from cape.steer.data import from_truthfulqa

    if not TRUTHFULQA.is_file():
        pytest.skip(f"{TRUTHFULQA} is absent")
    cs = from_truthfulqa(TRUTHFULQA, max_questions=150, seed=0)
    real, kept = ex.activations, {}

    def spy(*args, **kwargs):  # keep the activations for the null check below (no second pass)
        kept["x"] = real(*args, **kwargs)
        return kept["x"]

    monkeypatch.setattr(ex, "activations", spy)
    t0 = time.perf_counter()
    res = ex.extract(smollm2, cs, method="diffmean", pooling="last", layer="best", seed=0, batch_size=16)
    seconds = time.perf_counter() - t0
    print(f"\n{len(cs)} statements, {cs.n_groups} questions, {seconds:.1f} s")
    print(res.summary())
    assert len(res.layers) == smollm2.n_layers and res.n_eval + res.n_extract == len(cs)
    assert res.chosen.ci_low > 0.5
    # the opposite case: the same activations with labels shuffled -> chance at the chosen layer
    ext_set, ev_set = cs.split(0, 0.3)
    x, n = kept["x"], len(ext_set)
    rng = np.random.default_rng(0)
    _, null = ex.probe_layers(x[:n], rng.permutation(ext_set.labels), x[n:], rng.permutation(ev_set.labels))
    row = null.iloc[res.layer]
    print(f"shuffled labels, layer {res.layer}: {row.probe_acc:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]")
    assert row.ci_low < 0.5 < row.ci_high


def test_the_vector_records_which_questions_were_held_out():
    from cape.steer.data import default_set

    lm = loaded("llama")
    contrast = default_set()
    res = ex.extract(lm, contrast, seed=3)
    ext, ev = contrast.split(3, 0.3)
    meta = res.vector.meta
    assert meta["extract_groups"] == sorted(set(ext.groups)) and meta["eval_groups"] == sorted(set(ev.groups))
    assert not set(meta["extract_groups"]) & set(meta["eval_groups"])
    assert len(meta["eval_groups"]) == res.n_groups_eval
    other = ex.extract(lm, contrast, seed=4).vector.meta  # another seed, another split
    assert other["eval_groups"] != meta["eval_groups"]
