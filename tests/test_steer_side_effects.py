"""Side effects of steering (cross-entropy and KL on neutral text): cape.steer.side_effects.

Tiny random models (tests/steer_tiny.py, character-level tokenizer) against hand-written
references: ``torch.nn.functional.cross_entropy`` of the unsteered logits and
``torch.nn.functional.kl_div`` of the two log-softmaxes, with the steering done by an
independent forward hook. Alpha 0 must give exactly nothing, a strong alpha must give a KL whose
interval excludes 0. The real SmolLM2-135M run is slow.
"""

from __future__ import annotations

import json
import math
import string
import time

import numpy as np
import pytest

from cape.errors import CapeError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("scipy")

from cape.steer.models import LoadedModel  # noqa: E402
from cape.steer.side_effects import NEUTRAL_SOURCE, SideEffects, neutral_text, side_effects  # noqa: E402
from cape.steer.vector import SteeringVector  # noqa: E402
from steer_tiny import EXPECTED_LAYERS_PATH, tiny_model  # noqa: E402

torch.set_num_threads(1)

HIDDEN, N_LAYERS = 32, 2
SD = 1.5
TEXT = ("The river runs past the mill and under the old stone bridge. In spring the water "
        "rises with melting snow, and in late summer it is low and clear. Children throw "
        "sticks from the bridge and race to the other side to see which one comes out first. ") * 2


def _lm(arch: str = "llama") -> LoadedModel:
    model, tok = tiny_model(arch, n_layers=N_LAYERS, hidden=HIDDEN)
    return LoadedModel(model, tok, f"tiny-{arch}", N_LAYERS, HIDDEN, EXPECTED_LAYERS_PATH[arch])


def _vector(layers=(0,), *, model_id="tiny-llama", seed=0, meta=None) -> SteeringVector:
    rng = np.random.default_rng(seed)
    dirs = {}
    for n in layers:
        d = rng.standard_normal(HIDDEN)
        dirs[n] = d / np.linalg.norm(d)
    return SteeringVector(dirs, model_id=model_id, hidden_size=HIDDEN, n_layers=N_LAYERS,
                          stats={n: {"proj_sd": SD} for n in layers}, meta=meta or {})


@pytest.fixture(scope="module")
def lm():
    return _lm()


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def _no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ------------------------------------------------------------------------------ exact cases

def test_alpha_zero_changes_nothing(lm, text_file):
    res = side_effects(lm, _vector(), alpha=0.0, text=text_file, window=64)
    assert isinstance(res, SideEffects)
    assert res.ce_increase == 0.0 and res.kl_mean == 0.0 and res.kl_max == 0.0
    assert res.ce_plain == res.ce_steered and res.ce_plain > 0
    assert np.array_equal(res.ce_plain_windows, res.ce_steered_windows)
    assert res.ce_increase_ci == (0.0, 0.0) and res.kl_ci == (0.0, 0.0)


def test_strong_alpha_shifts_predictions(lm, text_file):
    res = side_effects(lm, _vector(), alpha=40.0, text=text_file, window=64)
    assert res.kl_mean > 1e-3 and res.kl_ci[0] > 0          # the interval excludes "no effect"
    assert abs(res.ce_increase) > 1e-3
    assert res.ce_plain == pytest.approx(side_effects(lm, _vector(), alpha=0.0, text=text_file,
                                                      window=64).ce_plain, abs=0)
    assert (res.kl_windows > 0).all()
    # stronger steering moves the distributions further
    assert side_effects(lm, _vector(), alpha=4.0, text=text_file, window=64).kl_mean < res.kl_mean


def test_against_hand_written_reference(lm, text_file):
    """CE = F.cross_entropy of the unsteered logits; KL = F.kl_div of the two log-softmaxes,
    steered by an independent hook on block 0, window by window, to 1e-6."""
    vec = _vector(seed=3)
    alpha, window, max_tokens = 7.0, 50, 230
    res = side_effects(lm, vec, alpha=alpha, text=text_file, window=window, max_tokens=max_tokens,
                       batch_size=2)
    ids = lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:max_tokens]
    n_win = len(ids) // window
    grid = torch.tensor(ids[:n_win * window]).reshape(n_win, window)
    add = torch.from_numpy(alpha * SD * vec.directions[0]).float()
    plain = _logits(lm.model, grid)

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + add,) + tuple(output[1:])
        return output + add

    handle = lm.model.model.layers[0].register_forward_hook(hook)
    try:
        steered = _logits(lm.model, grid)
    finally:
        handle.remove()
    F = torch.nn.functional
    targets = grid[:, 1:]
    ce_p = torch.stack([F.cross_entropy(plain[i, :-1], targets[i]) for i in range(n_win)])
    ce_q = torch.stack([F.cross_entropy(steered[i, :-1], targets[i]) for i in range(n_win)])
    logp = plain[:, :-1].double().log_softmax(-1)
    logq = steered[:, :-1].double().log_softmax(-1)
    kl = F.kl_div(logq, logp, reduction="none", log_target=True).sum(-1).mean(-1)  # KL(p || q)
    assert res.n_windows == n_win == 4 and res.n_tokens == n_win * (window - 1)
    assert res.n_dropped == max_tokens - n_win * window and res.layers == [0]
    np.testing.assert_allclose(res.ce_plain_windows, ce_p.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.ce_steered_windows, ce_q.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.kl_windows, kl.numpy(), rtol=0, atol=1e-6)
    assert res.ce_plain == pytest.approx(float(F.cross_entropy(plain[:, :-1].reshape(-1, plain.shape[-1]),
                                                               targets.reshape(-1))), abs=1e-6)
    assert res.kl_mean > 1e-3
    # the interval: Student t over the per-window values
    from scipy import stats

    d = res.ce_increase_windows
    half = stats.t.ppf(0.975, n_win - 1) * d.std(ddof=1) / math.sqrt(n_win)
    assert res.ce_increase_ci == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-12)


def test_model_restored(lm, text_file):
    ids = torch.tensor([lm.tokenizer(TEXT[:80], add_special_tokens=False)["input_ids"]])
    before = _logits(lm.model, ids)
    side_effects(lm, _vector(), alpha=40.0, text=text_file, window=64)
    assert torch.equal(_logits(lm.model, ids), before) and _no_hooks(lm.model)
    side_effects(lm, _vector(), alpha=40.0, text=text_file, window=64, mode="folded")
    assert torch.equal(_logits(lm.model, ids), before) and _no_hooks(lm.model)
    assert not lm.model.training


def test_folded_matches_hook_and_batching_does_not_matter(lm, text_file):
    hook = side_effects(lm, _vector(), alpha=10.0, text=text_file, window=40, batch_size=1)
    folded = side_effects(lm, _vector(), alpha=10.0, text=text_file, window=40, mode="folded")
    batched = side_effects(lm, _vector(), alpha=10.0, text=text_file, window=40, batch_size=5)
    for other in (folded, batched):
        np.testing.assert_allclose(other.kl_windows, hook.kl_windows, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(other.ce_steered_windows, hook.ce_steered_windows, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox"])
def test_other_architectures(arch, text_file):
    lm = _lm(arch)
    vec = _vector(model_id=f"tiny-{arch}")
    assert side_effects(lm, vec, alpha=0.0, text=text_file, window=64).kl_mean == 0.0
    assert side_effects(lm, vec, alpha=40.0, text=text_file, window=64).kl_ci[0] > 0


# ------------------------------------------------------------------------- settings, output

def test_default_layer_is_the_extraction_layer(lm, text_file):
    vec = _vector(layers=(0, 1), meta={"layer": 1})
    assert side_effects(lm, vec, alpha=1.0, text=text_file, window=64).layers == [1]
    assert side_effects(lm, vec, alpha=1.0, text=text_file, window=64, layers=[0, 1]).layers == [0, 1]
    assert side_effects(lm, _vector(layers=(0, 1)), alpha=1.0, text=text_file, window=64).layers == [0, 1]


def test_short_text_is_one_window_without_interval(lm, tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("Tea is made from leaves.", encoding="utf-8")
    res = side_effects(lm, _vector(), alpha=10.0, text=path)   # 24 tokens < window 256
    assert (res.n_windows, res.window, res.n_tokens, res.n_dropped) == (1, 24, 23, 0)
    assert all(math.isnan(v) for v in res.kl_ci + res.ce_increase_ci)
    assert "no CI (one window)" in res.summary()
    assert res.estimates()["kl_mean"].note.startswith("one window")
    two = tmp_path / "two.txt"
    two.write_text("ab", encoding="utf-8")
    assert side_effects(lm, _vector(), alpha=1.0, text=two).n_tokens == 1


def test_default_text_summary_and_json(lm):
    text = neutral_text()
    assert len(text.split()) >= 3000
    assert set(text) <= set(string.printable)  # every character has a token in the tiny tokenizer
    res = side_effects(lm, _vector(), alpha=5.0, max_tokens=600, window=100)
    assert res.text_source == NEUTRAL_SOURCE and len(res.text_sha256) == 64
    assert (res.n_windows, res.n_tokens) == (6, 6 * 99)
    out = json.loads(json.dumps(res.to_dict()))
    assert out["n_windows"] == 6 and len(out["kl_windows"]) == 6 and len(out["ce_increase_windows"]) == 6
    assert out["estimates"]["kl_mean"]["n"] == 6 and out["estimates"]["kl_mean"]["unit"] == "window"
    assert out["estimates"]["ce_plain"]["n"] == 6 * 99
    summary = res.summary()
    assert "cross-entropy" in summary and "KL(unsteered || steered)" in summary and "t-interval" in summary
    seen = []
    side_effects(lm, _vector(), alpha=5.0, max_tokens=600, window=100, batch_size=4,
                 progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 6), (6, 6)]


# ------------------------------------------------------------------------------- bad input

def test_bad_text_files(lm, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(CapeError, match=r"empty\.txt: the text is empty"):
        side_effects(lm, _vector(), alpha=1.0, text=empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n ", encoding="utf-8")
    with pytest.raises(CapeError, match=r"blank\.txt: the text is empty"):
        side_effects(lm, _vector(), alpha=1.0, text=blank)
    one = tmp_path / "one.txt"
    one.write_text("a", encoding="utf-8")
    with pytest.raises(CapeError, match=r"one\.txt: the text has 1 token\(s\)"):
        side_effects(lm, _vector(), alpha=1.0, text=one)
    with pytest.raises(CapeError, match=r"missing\.txt: no such text file"):
        side_effects(lm, _vector(), alpha=1.0, text=tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(CapeError, match=r"latin\.txt: not UTF-8"):
        side_effects(lm, _vector(), alpha=1.0, text=latin)


def test_bad_settings(lm, text_file):
    with pytest.raises(CapeError, match="mode 'hook' or 'folded'"):
        side_effects(lm, _vector(), alpha=1.0, text=text_file, mode="paper")
    with pytest.raises(CapeError, match="max_tokens must be an integer >= 2"):
        side_effects(lm, _vector(), alpha=1.0, text=text_file, max_tokens=1)
    with pytest.raises(CapeError, match="window must be"):
        side_effects(lm, _vector(), alpha=1.0, text=text_file, window=0)
    with pytest.raises(CapeError, match="context"):  # the tiny models have 256 positions
        side_effects(lm, _vector(), alpha=1.0, text=text_file, window=300)
    bare = SteeringVector({0: np.ones(HIDDEN)}, model_id="tiny-llama", hidden_size=HIDDEN, n_layers=N_LAYERS)
    with pytest.raises(CapeError, match="proj_sd"):
        side_effects(lm, bare, alpha=1.0, text=text_file)
    assert side_effects(lm, bare, alpha=1.0, text=text_file, unit="raw", window=64).kl_mean > 0
    wrong = SteeringVector({0: np.ones(16)}, model_id="other", hidden_size=16, n_layers=N_LAYERS)
    with pytest.raises(CapeError, match="hidden size"):
        side_effects(lm, wrong, alpha=1.0, text=text_file, unit="raw")
    assert _no_hooks(lm.model)


def test_non_finite_logits(text_file):
    lm = _lm("gpt2")  # LayerNorm of an overflowing residual (inf - inf) gives NaN logits
    vec = SteeringVector({0: np.ones(HIDDEN)}, model_id="tiny-gpt2", hidden_size=HIDDEN, n_layers=N_LAYERS)
    with pytest.raises(CapeError, match="logits are not finite"):
        side_effects(lm, vec, alpha=1e38, text=text_file, unit="raw", window=64)
    assert _no_hooks(lm.model)


# ------------------------------------------------------------------------ SmolLM2 (slow)

# (the `smollm2` fixture: tests/conftest.py, one load per session)


@pytest.mark.slow
def test_smollm2_random_direction(smollm2):
    """A random unit direction at layer 10, alpha 4 in sd of its projection (measured on the
    default contrast set's statements, not on the scored text)."""
    from cape.steer.data import default_set
    from cape.steer.extraction import activations

    lm, layer = smollm2, 10
    rng = np.random.default_rng(0)
    d = rng.standard_normal(lm.hidden_size)
    d /= np.linalg.norm(d)
    acts = activations(lm, default_set().statements, batch_size=16)[:, layer]
    sd = float((acts @ d).std(ddof=1))
    vec = SteeringVector({layer: d}, model_id=lm.model_id, hidden_size=lm.hidden_size,
                         n_layers=lm.n_layers, stats={layer: {"proj_sd": sd}})
    t0 = time.perf_counter()
    res = side_effects(lm, vec, alpha=4.0)
    seconds = time.perf_counter() - t0
    print(f"\nproj_sd at layer {layer}: {sd:.4g}; {seconds:.1f} s")
    print(res.summary())
    assert res.n_windows >= 2 and res.n_tokens > 1000
    assert 1.0 < res.ce_plain < 6.0     # a trained model on plain English prose
    assert res.kl_mean > 0 and res.kl_ci[0] > 0
    assert math.isfinite(res.ce_increase_ci[0])
