"""Internal coupling (cape.steer.internals): raw against centred cosines of the truth and
reasoning directions with a null, on planted activations and on a constructed tiny model
whose residual stream carries a known shared mean direction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cape.errors import CapeError
from cape.steer.data import ContrastSet
from cape.steer.internals import _label_splits, coupling_from_activations, reasoning_set


def _unit(v):
    return v / np.linalg.norm(v)


def _planted(cos: float, *, n_groups=40, n_layers=3, hidden=48, mean_norm=30.0, noise=0.1, stem=3.0, seed=0):
    """Activations = a large shared mean + the group's own content (shared by its true and its
    false statement, as a question is) + (+/-) the set's direction + a little noise, with
    cos(d_truth, d_reason) = ``cos``. Most variance is content, as in a real model."""
    rng = np.random.default_rng(seed)
    m = _unit(rng.standard_normal(hidden)) * mean_norm
    dt = _unit(rng.standard_normal(hidden))
    ortho = _unit(rng.standard_normal(hidden) - dt * (dt @ rng.standard_normal(hidden)))
    ortho = _unit(ortho - dt * (dt @ ortho))
    dr = cos * dt + np.sqrt(1 - cos ** 2) * ortho

    def make(d, tag):
        labels = np.tile([True, False], n_groups)
        groups = [f"{tag}:{k}" for k in range(n_groups) for _ in range(2)]
        content = np.repeat(stem * rng.standard_normal((n_groups, hidden)), 2, axis=0)
        x = (m + content + np.where(labels, 1.0, -1.0)[:, None] * d
             + noise * rng.standard_normal((len(labels), hidden)))
        x = np.repeat(x[:, None, :], n_layers, axis=1).astype(np.float32)
        cs = ContrastSet([f"{tag} {i}" for i in range(len(labels))], labels, groups, source=tag)
        return x, cs

    return make(dt, "t"), make(dr, "r")


def test_raw_cosine_is_the_shared_mean_and_centred_recovers_the_plant():
    for planted in (0.6, -0.4):
        (xt, t), (xr, r) = _planted(planted)
        f = coupling_from_activations(xt, t, xr, r, n_null=200, seed=0)
        assert (f["raw_cos"] > 0.97).all()                       # the shared mean, whatever the relation
        assert f["centred_cos"].to_numpy() == pytest.approx(planted, abs=0.12)
        assert f["outside_null"].all()                           # far outside what shuffled labels give
        assert f["truth_acc"].between(0, 1).all() and (f["reason_ci_low"] <= f["reason_acc"]).all()
        assert ((f["null_low"] < 0) & (f["null_high"] > 0)).all()


def test_unrelated_directions_sit_inside_the_null():
    (xt, t), (xr, r) = _planted(0.0, n_layers=4, seed=3)
    f = coupling_from_activations(xt, t, xr, r, n_null=300, seed=1)
    assert (f["raw_cos"] > 0.97).all() and not f["outside_null"].any()
    assert (f["centred_cos"].abs() < 0.35).all()


def test_label_splits_keep_class_sizes_and_vary():
    labels = np.array([1, 0, 1, 0, 0, 1, 1, 0], bool)
    s = _label_splits(labels, 200, np.random.default_rng(0))
    assert (s.sum(1) == 4).all() and len({tuple(row) for row in s}) > 50


def test_reasoning_set_is_seeded_paired_and_correct():
    a, b = reasoning_set(40, seed=1), reasoning_set(40, seed=1)
    assert a == b and a != reasoning_set(40, seed=2)
    assert len(a) == 80 and a.n_groups == 40 and a.n_true == 40
    for s, ok in zip(a.statements, a.labels):
        if "=" in s:
            lhs, rhs = s.rstrip(".").split("=")
            assert (eval(lhs) == int(rhs)) == ok, s              # noqa: S307 - digits and + - * only
        else:
            assert ("not" not in s.split("So")[1]) == ok, s
    assert not all(a.labels[::2])                                # the correct one is not always first
    with pytest.raises(CapeError, match="at least 4 problems"):
        reasoning_set(2)


def test_bad_input():
    (xt, t), (xr, r) = _planted(0.5)
    with pytest.raises(CapeError, match="same layers"):
        coupling_from_activations(xt[:, :2], t, xr, r)
    with pytest.raises(CapeError, match="n_null must be at least 10"):
        coupling_from_activations(xt, t, xr, r, n_null=3)
    one_sided = ContrastSet(t.statements, np.ones(len(t), bool), t.groups, source="only true")
    with pytest.raises(CapeError):
        coupling_from_activations(xt, one_sided, xr, r)


# ------------------------------------------------------------------------- a constructed model
torch = pytest.importorskip("torch")


def _identity_llama(planted_cos: float, seed: int = 0):
    """A tiny Llama whose blocks add nothing (attention and MLP outputs zeroed), so every
    block's output is the token embeddings; the embeddings carry a large shared mean, and
    the characters that end true/false and correct/incorrect statements carry the planted
    truth and reasoning directions."""
    from cape.steer.layers import find_layers
    from cape.steer.models import LoadedModel
    from steer_tiny import tiny_model

    model, tok = tiny_model("llama", n_layers=2, hidden=32)
    rng = np.random.default_rng(seed)
    hidden = 32
    m = _unit(rng.standard_normal(hidden)) * 20.0
    dt = _unit(rng.standard_normal(hidden))
    o = rng.standard_normal(hidden)
    o = _unit(o - dt * (dt @ o))
    dr = planted_cos * dt + np.sqrt(1 - planted_cos ** 2) * o
    emb = m + 2.0 * rng.standard_normal((model.get_input_embeddings().weight.shape[0], hidden))
    for ch, vec in (("T", m + 2 * dt), ("F", m - 2 * dt), ("C", m + 2 * dr), ("W", m - 2 * dr)):
        emb[tok.convert_tokens_to_ids(ch)] = vec
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(torch.tensor(emb, dtype=torch.float32))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    path, blocks = find_layers(model)
    return LoadedModel(model, tok, "identity-llama", len(blocks), hidden, path)


def _sets(n_groups=30, seed=0):
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnop")

    def make(pos, neg, tag):
        st, lab, grp = [], [], []
        for k in range(n_groups):
            stem = "".join(rng.choice(letters, size=6))
            st += [stem + pos, stem + neg]
            lab += [True, False]
            grp += [f"{tag}:{k}"] * 2
        return ContrastSet(st, np.array(lab), grp, source=tag)

    return make("T", "F", "truth"), make("C", "W", "reason")


@pytest.mark.parametrize("planted", [0.7, -0.5])
def test_constructed_model_raw_near_one_centred_recovers_the_plant(planted, tmp_path):
    from cape.steer.internals import internal_coupling

    lm = _identity_llama(planted)
    truth, reason = _sets()
    res = internal_coupling(lm, truth, reason, n_null=100, seed=0, pooling="mean")
    t = res.table
    assert len(t) == 2 and (t["raw_cos"] > 0.98).all()
    assert t["centred_cos"].to_numpy() == pytest.approx(planted, abs=0.05)
    assert t["outside_null"].all() and t["truth_acc"].between(0, 1).all()
    assert "raw cosine (uncentred, the preprint's way)" in res.summary()
    doc = json.loads(res.save(tmp_path / "ic.json").read_text())
    assert doc["kind"] == "cape-internal-coupling" and len(doc["layers"]) == 2
    assert doc["meta"]["n_truth"] == 60 and doc["meta"]["truth_hash"] == truth.hash()


def test_cli_internals_on_a_saved_tiny_model(tmp_path, capsys):
    from cape.cli import main
    from steer_tiny import save_tiny_llama

    folder = save_tiny_llama(tmp_path / "tiny", max_positions=512)
    code = main(["steer", "internals", "-m", str(folder), "--problems", "20", "--null", "20", "--out",
                 str(tmp_path / "ic.json"), "--json"])
    got = capsys.readouterr()
    assert code == 0, got.err
    printed = json.loads(got.out[got.out.index("{"):])
    saved = json.loads((tmp_path / "ic.json").read_text())
    assert printed["layers"] == saved["layers"] and len(saved["layers"]) == 2
    assert saved["meta"]["n_reason"] == 40 and saved["meta"]["reason_source"].startswith("reasoning_set(")
    code = main(["steer", "internals", "-m", str(folder), "--problems", "20", "--null", "20", "--heads"])
    text = capsys.readouterr().out
    assert code == 0 and "Internal coupling of" in text and "raw cosine (uncentred" in text
    assert "competing heads of 8: preprint's definition" in text and "most negative heads" in text
    code = main(["steer", "internals", "-m", str(folder), "--null", "3"])
    assert code == 2 and "n_null must be at least 10" in capsys.readouterr().err


# ------------------------------------------------------------------------- attention heads
def _pairs_set(n, tag):
    labels = np.tile([True, False], n)
    return ContrastSet([f"{tag}{i}" for i in range(2 * n)], labels, [f"{tag}:{k}" for k in range(n) for _ in range(2)],
                       source=tag)


@pytest.mark.parametrize("sign, competing", [(-1.0, True), (1.0, False)])
def test_a_planted_competing_head_is_found_under_both_definitions(sign, competing):
    """Head 1 of layer 0 writes +u for true-vs-false and sign*u for correct-vs-incorrect
    (every pair); the other heads write unrelated noise. With sign -1 that head competes
    under both definitions, with +1 it does not; the noise heads stay near the chance rate."""
    from cape.steer.internals import head_counts, heads_from_inputs

    rng = np.random.default_rng(0)
    L, heads, hd, hidden, n = 2, 4, 6, 16, 60
    w = rng.standard_normal((L, hidden, heads * hd)).astype(np.float32)
    u = rng.standard_normal(hd)

    def inputs(s):
        z = rng.standard_normal((2 * n, L, heads * hd)).astype(np.float32)
        z[0::2, 0, hd:2 * hd] += s * u        # true / correct statements: + s*u on head 1 of layer 0
        z[1::2, 0, hd:2 * hd] -= s * u
        return z

    truth, reason = _pairs_set(n, "t"), _pairs_set(n, "r")
    frame = heads_from_inputs(inputs(1.0), truth, inputs(sign), reason, w, heads, n_null=200, seed=0)
    planted = frame[(frame["layer"] == 0) & (frame["head"] == 1)].iloc[0]
    assert planted["cos"] == pytest.approx(sign, abs=0.15)
    assert bool(planted["competing_sound"]) is competing and bool(planted["competing_paper"]) is competing
    others = frame.drop(planted.name)
    assert others["competing_paper"].sum() == 0 and others["competing_sound"].sum() <= 1
    counts = head_counts(frame)
    assert counts["n_heads"] == L * heads and counts["paper"]["k"] == int(competing)
    assert counts["sound"]["expected_by_chance"] == pytest.approx(0.025 * L * heads)


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2", "opt"])
def test_head_contributions_add_up_to_the_output_projection(arch):
    """The heads' contributions (slices of the output projection applied to the captured head
    outputs) sum to what the projection itself outputs, bias aside."""
    from cape.steer.internals import _per_head, head_inputs, head_projections
    from cape.steer.layers import find_layers
    from cape.steer.models import LoadedModel
    from steer_tiny import tiny_model

    model, tok = tiny_model(arch, n_layers=2, hidden=32)
    path, blocks = find_layers(model)
    lm = LoadedModel(model, tok, arch, len(blocks), 32, path)
    modules, w, n_heads = head_projections(lm)
    statements = ["The sky is blue.", "Two and two make five."]
    z = head_inputs(lm, statements, modules)
    seen = []
    hooks = [m.register_forward_hook(lambda mod, a, o: seen.append(o[:, -1].detach().float().numpy()))
             for m in modules]
    try:
        tok.padding_side = "left"
        enc = tok(statements, return_tensors="pt", padding=True)
        from cape.steer.extraction import _accepts

        if _accepts(model.forward, "position_ids"):
            enc["position_ids"] = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            model(**enc)
    finally:
        for h in hooks:
            h.remove()
    for layer, m in enumerate(modules):
        bias = m.bias.detach().float().numpy() if getattr(m, "bias", None) is not None else 0.0
        total = _per_head(w[layer:layer + 1], z[:, layer:layer + 1], n_heads).sum(axis=2)[:, 0] + bias
        np.testing.assert_allclose(total, seen[layer], rtol=1e-4, atol=1e-5)


def test_heads_unsupported_architecture_says_so():
    from cape.steer.internals import head_projections

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])
            self.config = type("C", (), {"num_attention_heads": 2})()

    class LM:
        model, layers_path = Flat(), "layers"

    with pytest.raises(CapeError, match="per-head analysis is not supported for Flat yet"):
        head_projections(LM())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_one_pass_captures_the_same_block_outputs_as_the_extraction(arch, pooling):
    from cape.steer.extraction import activations
    from cape.steer.internals import head_inputs, head_projections
    from cape.steer.layers import find_layers
    from cape.steer.models import LoadedModel
    from steer_tiny import tiny_model

    model, tok = tiny_model(arch, n_layers=2, hidden=32)
    path, blocks = find_layers(model)
    lm = LoadedModel(model, tok, arch, len(blocks), 32, path)
    statements = ["The sky is blue.", "Two and two make five, surely.", "Ice."]
    modules, _, _ = head_projections(lm)
    x, z = head_inputs(lm, statements, modules, pooling=pooling, batch_size=2, blocks=True)
    np.testing.assert_allclose(x, activations(lm, statements, pooling=pooling, batch_size=3), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(z, head_inputs(lm, statements, modules, pooling=pooling, batch_size=1),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_smollm2_end_to_end(smollm2, tmp_path):
    """The real SmolLM2-135M (30 layers x 9 heads): every layer and head measured, the
    uncentred cosine well above the centred one, the results recorded for the audit."""
    from cape.audit import run_audit
    from cape.steer.data import default_set
    from cape.steer.internals import internal_coupling

    res = internal_coupling(smollm2, default_set(), reasoning_set(40), n_null=20, heads=True)
    t, h = res.table, res.heads
    assert len(t) == 30 and len(h) == 270 and res.meta["heads"]["n_heads"] == 270
    assert np.isfinite(t[["raw_cos", "centred_cos", "null_low", "null_high"]].to_numpy()).all()
    assert t["raw_cos"].median() > t["centred_cos"].abs().median()
    assert res.meta["heads"]["paper"]["k"] == int(h["competing_paper"].sum())
    res.record()
    reason = run_audit(only=["A16"], replication=None).table.iloc[0]["reason"]
    assert "CAPE on smollm2-135m (cape steer internals)" in reason and "of 270 by the preprint's definition" in reason


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_random_models_give_centred_cosines_inside_the_null(arch):
    """Randomly initialised models know nothing of truth or arithmetic: their centred cosines
    sit inside the null band (no layer outside), while the raw cosine is large."""
    from cape.steer.data import default_set
    from cape.steer.internals import internal_coupling
    from cape.steer.layers import find_layers
    from cape.steer.models import LoadedModel
    from steer_tiny import tiny_model

    model, tok = tiny_model(arch, n_layers=3, hidden=32)
    path, blocks = find_layers(model)
    lm = LoadedModel(model, tok, arch, len(blocks), 32, path)
    res = internal_coupling(lm, default_set(), reasoning_set(60, seed=1), n_null=200, seed=0, pooling="mean")
    t = res.table
    assert not t["outside_null"].any(), t[["layer", "centred_cos", "null_low", "null_high"]]
    assert (t["raw_cos"] > 0.5).all()
