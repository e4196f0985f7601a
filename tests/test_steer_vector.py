"""SteeringVector: arithmetic, units, save/load, the llama.cpp and lm-eval exports, bad files.

The exports are read back the way their consumers read them: the GGUF with gguf.GGUFReader
plus a line-by-line Python copy of llama.cpp's ``common_control_vector_load_one``; the lm-eval
file with ``torch.load`` and copies of ``lm_eval/models/hf_steered.py`` (v0.4.8 and main),
applied to a tiny Llama and compared with an independent forward hook.
"""

from __future__ import annotations

import json
import sys
import types
from functools import partial

import numpy as np
import pytest

from cape.errors import CapeError

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
transformers = pytest.importorskip("transformers")

from cape.steer.vector import FORMAT, SteeringVector  # noqa: E402

torch.set_num_threads(1)

HIDDEN, N_LAYERS = 32, 3


def unit_dirs(layers, hidden=HIDDEN, seed=0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for n in layers:
        d = rng.standard_normal(hidden)
        out[n] = (d / np.linalg.norm(d)).astype(np.float32)
    return out


def make(layers=(1, 2), *, model_id="toy-llama", hidden=HIDDEN, n_layers=N_LAYERS, seed=0,
         layers_path="model.layers", **kw) -> SteeringVector:
    stats = {n: {"proj_mean": 0.5 + n, "proj_sd": 2.0 + n, "resid_norm": 10.0 * (n + 1),
                 "probe_acc": 0.75, "n_eval": 40} for n in layers}
    return SteeringVector(unit_dirs(layers, hidden, seed), model_id=model_id, hidden_size=hidden,
                          n_layers=n_layers, method="diffmean", pooling="last",
                          dataset_hash="abc123", split_seed=0, layers_path=layers_path,
                          stats=stats, meta={"model_type": "llama"}, **kw)


@pytest.fixture(scope="module")
def tiny_llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=HIDDEN, intermediate_size=64,
                                   num_hidden_layers=N_LAYERS, num_attention_heads=4,
                                   num_key_value_heads=4, vocab_size=100)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    return model


def reference_logits(model, ids, vectors: dict[int, torch.Tensor]):
    """Logits with ``vectors[N]`` added to block N's output by a plain forward hook."""
    def hook(vec):
        def fn(module, args, output):
            if isinstance(output, tuple):
                return (output[0] + vec, *output[1:])
            return output + vec
        return fn

    handles = [model.model.layers[n].register_forward_hook(hook(v)) for n, v in vectors.items()]
    try:
        with torch.no_grad():
            return model(ids).logits
    finally:
        for h in handles:
            h.remove()


# ----------------------------------------------------------------------------- construction
def test_construction_converts_and_sorts():
    v = SteeringVector({2: [0.0] * 4, 1: torch.ones(4)}, model_id="m", hidden_size=4, n_layers=3,
                       stats={1: {"proj_sd": np.float64(2.0), "ci_low": float("nan")}},
                       layers_path="")
    assert v.layers == [1, 2]
    assert v.directions[1].dtype == np.float32
    assert v.stats[1] == {"proj_sd": 2.0, "ci_low": None}  # plain floats; non-finite -> None
    assert v.layers_path is None


@pytest.mark.parametrize("kwargs, message", [
    ({"directions": {1: np.ones(5)}}, "shape (5,), expected (4,)"),
    ({"directions": {3: np.ones(4)}}, "layer 3 is out of range"),
    ({"directions": {-1: np.ones(4)}}, "layer -1 is out of range"),
    ({"directions": {1: np.array([1.0, np.nan, 0, 0])}}, "NaN or inf"),
    ({"directions": {}}, "at least one layer"),
    ({"directions": {"1": np.ones(4)}}, "not a layer index"),
    ({"hidden_size": 0}, "positive integer"),
    ({"stats": {1: 2.0}}, "stats of layer 1 must be a dict"),
    ({"meta": {"x": object()}}, "meta.x"),
])
def test_construction_rejects_bad_fields(kwargs, message):
    fields = {"directions": {1: np.ones(4)}, "model_id": "m", "hidden_size": 4, "n_layers": 3}
    fields.update(kwargs)
    with pytest.raises(CapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SteeringVector(**fields)


# ------------------------------------------------------------------------------- arithmetic
def test_scalar_arithmetic_scales_directions_and_keeps_axis_stats():
    v = make()
    for w in (2 * v, v * 2, np.float64(2.0) * v, v / 0.5):
        assert isinstance(w, SteeringVector)
        for n in v.layers:
            np.testing.assert_allclose(w.directions[n], 2 * v.directions[n], rtol=1e-6)
        assert w.stats == v.stats
    neg = -v
    for n in v.layers:
        np.testing.assert_array_equal(neg.directions[n], -v.directions[n])
        assert neg.stats[n]["proj_mean"] == -v.stats[n]["proj_mean"]  # signed stat flips
        assert neg.stats[n]["proj_sd"] == v.stats[n]["proj_sd"]
    assert (-3 * v).stats[1]["proj_mean"] == -v.stats[1]["proj_mean"]
    # linear in every unit: (k v).scaled(a, u) == k * v.scaled(a, u)
    for unit in ("sd", "norm", "raw"):
        lhs, rhs = (-3 * v).scaled(1.5, unit), v.scaled(1.5, unit)
        for n in v.layers:
            torch.testing.assert_close(lhs[n], -3 * rhs[n], rtol=1e-5, atol=1e-6)


def test_sum_and_difference():
    a, b = make((1, 2), seed=0), make((2,), seed=1)
    s, d = a + b, a - b
    assert s.layers == d.layers == [1, 2]
    np.testing.assert_array_equal(s.directions[1], a.directions[1])  # layer only in a
    np.testing.assert_allclose(s.directions[2], a.directions[2] + b.directions[2])
    np.testing.assert_allclose(d.directions[2], a.directions[2] - b.directions[2])
    # a layer in both: no measured proj_sd, resid_norm kept as the mean
    assert s.stats[2] == {"resid_norm": (a.stats[2]["resid_norm"] + b.stats[2]["resid_norm"]) / 2}
    assert s.stats[1] == a.stats[1]
    with pytest.raises(CapeError, match=r"stats\[2\]\['proj_sd'\]"):
        s.scaled(1.0, "sd")
    torch.testing.assert_close(s.scaled(1.0, "raw")[2], torch.from_numpy(s.directions[2]))
    # a layer only in b, subtracted: b's direction negated, proj_mean sign flipped
    c = make((0,), seed=2)
    e = a - c
    np.testing.assert_array_equal(e.directions[0], -c.directions[0])
    assert e.stats[0]["proj_mean"] == -c.stats[0]["proj_mean"]
    assert e.meta["combined"]["op"] == "-" and e.meta["model_type"] == "llama"
    assert sum([a, b]) == a + b
    doubled = a + a
    for n in a.layers:
        np.testing.assert_array_equal(doubled.directions[n], (2 * a).directions[n])
    assert (2 * a) == (a * 2.0) and (2 * a) != (3 * a)  # equality can fail


@pytest.mark.parametrize("other, message", [
    (dict(model_id="other-model"), "different models: 'toy-llama'.*'other-model'"),
    (dict(hidden=16), "hidden size 32.*hidden size 16"),
    (dict(n_layers=5), "3 blocks.*5 blocks"),
    (dict(layers_path="transformer.h"), "different module lists"),
])
def test_arithmetic_refuses_other_models(other, message):
    a, b = make(), make(**other)
    for op in (lambda: a + b, lambda: a - b):
        with pytest.raises(CapeError, match=message):
            op()


def test_arithmetic_type_errors():
    v = make()
    for bad in (lambda: v + 1, lambda: v * "2", lambda: v * v, lambda: v * True):
        with pytest.raises(TypeError):
            bad()
    with pytest.raises(CapeError, match="divide a steering vector by 0"):
        v / 0
    with pytest.raises(CapeError, match="finite"):
        v * float("inf")


# ------------------------------------------------------------------------------------ units
def test_scaled_units():
    v = make()
    d1 = torch.from_numpy(v.directions[1])
    out = v.scaled(2.0, "sd")
    assert set(out) == {1, 2} and out[1].dtype == torch.float32 and out[1].shape == (HIDDEN,)
    torch.testing.assert_close(out[1], 2.0 * 3.0 * d1)  # proj_sd of layer 1 is 3.0
    torch.testing.assert_close(v.scaled(0.5, "norm")[1], 0.5 * 20.0 * d1)  # resid_norm 20
    torch.testing.assert_close(v.scaled(0.5, "raw")[1], 0.5 * d1)
    assert list(v.scaled(1.0, layers=2)) == [2]
    assert float(torch.linalg.norm(v.scaled(1.0, "sd")[2])) == pytest.approx(4.0, rel=1e-6)
    with pytest.raises(CapeError, match="unknown unit 'sigma'"):
        v.scaled(1.0, "sigma")
    with pytest.raises(CapeError, match=r"layer 0 has no direction.*\[1, 2\]"):
        v.scaled(1.0, layers=[0])
    with pytest.raises(CapeError, match="layer 7 is out of range"):
        v.scaled(1.0, layers=[7])
    with pytest.raises(CapeError, match="alpha must be finite"):
        v.scaled(float("nan"))
    bare = SteeringVector({1: np.ones(4)}, model_id="m", hidden_size=4, n_layers=2)
    with pytest.raises(CapeError, match="unit='raw'"):
        bare.scaled(1.0)  # default unit "sd" needs proj_sd
    torch.testing.assert_close(bare.scaled(3.0, "raw")[1], torch.full((4,), 3.0))


def test_select_and_unit():
    v = make((0, 1, 2))
    s = v.select(1)
    assert s.layers == [1] and s.stats == {1: v.stats[1]} and s.model_id == v.model_id
    u = (5 * v).unit()
    assert all(x == pytest.approx(1.0, rel=1e-6) for x in u.norms().values())
    assert "layer 1: norm 1" in v.summary()


# ---------------------------------------------------------------------------- save and load
def test_save_load_round_trip(tmp_path):
    v = make((0, 2))
    path = v.save(tmp_path / "v.safetensors")
    w = SteeringVector.load(path)
    assert w == v
    assert w.layers == [0, 2] and w.stats[2]["n_eval"] == 40 and w.meta == {"model_type": "llama"}
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == ["direction.0", "direction.2"]
        assert f.get_tensor("direction.2").dtype == np.float32
    assert meta["format"] == FORMAT and all(isinstance(x, str) for x in meta.values())
    head = json.loads(meta["cape"])
    assert head["model_id"] == "toy-llama" and head["split_seed"] == 0
    assert not (tmp_path / "v.safetensors.tmp").exists()


def _write_safetensors(path, tensors, metadata):
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata=metadata)
    return path


def test_load_bad_files(tmp_path):
    with pytest.raises(CapeError, match="nope.safetensors: no such steering vector file"):
        SteeringVector.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CapeError, match="junk.safetensors: not a safetensors file"):
        SteeringVector.load(junk)
    other = _write_safetensors(tmp_path / "weights.safetensors", {"w": np.ones(4, "f4")}, None)
    with pytest.raises(CapeError, match="weights.safetensors: not a CAPE steering vector"):
        SteeringVector.load(other)
    good = make()
    head = json.dumps(good._header())
    base = {"format": FORMAT, "format_version": "1", "cape": head}
    cases = {
        "name": ({"layer1": np.ones(HIDDEN, "f4")}, base, "tensor 'layer1' is not named direction.N"),
        "shape": ({"direction.1": np.ones(7, "f4")}, base, r"shape \(7,\), expected \(32,\)"),
        "range": ({"direction.9": np.ones(HIDDEN, "f4")}, base, "layer 9 is out of range"),
        "json": ({"direction.1": np.ones(HIDDEN, "f4")}, {**base, "cape": "{oops"}, "not valid JSON"),
        "field": ({"direction.1": np.ones(HIDDEN, "f4")},
                  {**base, "cape": json.dumps({"model_id": "m", "n_layers": 3})}, "lacks 'hidden_size'"),
        "newer": ({"direction.1": np.ones(HIDDEN, "f4")}, {**base, "format_version": "99"}, "newer"),
    }
    for name, (tensors, metadata, message) in cases.items():
        path = _write_safetensors(tmp_path / f"{name}.safetensors", tensors, metadata)
        with pytest.raises(CapeError, match=f"{name}.safetensors: .*{message}"):
            SteeringVector.load(path)


# ------------------------------------------------------------------------ llama.cpp (GGUF)
def _gguf_str(reader, key):
    return reader.fields[key].contents()


def llama_cpp_load_one(path, strength: float) -> tuple[int, np.ndarray]:
    """Python copy of llama.cpp common/common.cpp ``common_control_vector_load_one`` (commit
    00758e06): (n_embd, data) with data[(idx - 1) * n_embd : idx * n_embd] = strength * direction.idx;
    n_embd = -1 when the file is refused. llama_adapter_cvec (src/llama-adapter.cpp) then puts
    that slot on layer idx, added to the output of 0-based block idx (build_cvec(cur, il))."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    n_embd, data = -1, np.zeros(0, np.float32)
    for t in reader.tensors:
        head, _, tail = t.name.partition(".")
        try:
            idx = int(tail) if head == "direction" else -1
        except ValueError:
            idx = -1
        if idx <= 0:  # unparsable or zero layer index: the whole file is skipped
            return -1, np.zeros(0, np.float32)
        if t.tensor_type != gguf.GGMLQuantizationType.F32 or len(t.shape) != 1:
            return -1, np.zeros(0, np.float32)
        if n_embd == -1:
            n_embd = int(t.n_elements)
        elif int(t.n_elements) != n_embd:
            return -1, np.zeros(0, np.float32)
        if data.size < n_embd * idx:
            data = np.concatenate([data, np.zeros(n_embd * idx - data.size, np.float32)])
        data[n_embd * (idx - 1): n_embd * idx] += np.asarray(t.data, np.float32) * strength
    return n_embd, data


def test_gguf_export_reads_back(tmp_path):
    import gguf

    v = make((1, 2))
    path = v.to_gguf(tmp_path / "v.gguf", scale=2.0)
    reader = gguf.GGUFReader(str(path))
    assert _gguf_str(reader, "general.architecture") == "controlvector"
    assert _gguf_str(reader, "controlvector.model_hint") == "llama"  # meta["model_type"]
    assert _gguf_str(reader, "controlvector.layer_count") == 2
    assert [t.name for t in reader.tensors] == ["direction.1", "direction.2"]
    expected = v.scaled_arrays(2.0, "sd")
    for t in reader.tensors:
        n = int(t.name.split(".")[1])
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert [int(x) for x in t.shape] == [HIDDEN]
        np.testing.assert_array_equal(np.asarray(t.data), expected[n])
    # what llama.cpp's loader does with it: slot N - 1 holds strength * direction.N
    n_embd, data = llama_cpp_load_one(path, strength=0.5)
    assert n_embd == HIDDEN and data.size == HIDDEN * 2
    np.testing.assert_allclose(data[:HIDDEN], 0.5 * expected[1], rtol=1e-6)
    np.testing.assert_allclose(data[HIDDEN:], 0.5 * expected[2], rtol=1e-6)
    # raw unit, explicit hint
    raw = gguf.GGUFReader(str(v.to_gguf(tmp_path / "raw.gguf", unit="raw", model_hint="smollm2")))
    assert _gguf_str(raw, "controlvector.model_hint") == "smollm2"
    np.testing.assert_array_equal(np.asarray(raw.tensors[0].data), v.directions[1])


def test_gguf_refuses_block_zero(tmp_path):
    v = make((0, 2))
    with pytest.raises(CapeError, match="cannot steer block 0.*direction.0"):
        v.to_gguf(tmp_path / "v.gguf")
    assert not (tmp_path / "v.gguf").exists()
    v.to_gguf(tmp_path / "v2.gguf", layers=[2])
    # the copy of the loader refuses a file with direction.0 (so the refusal matters)
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "zero.gguf"), "controlvector")
    w.add_tensor("direction.0", np.ones(HIDDEN, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert llama_cpp_load_one(tmp_path / "zero.gguf", 1.0)[0] == -1
    assert llama_cpp_load_one(tmp_path / "v2.gguf", 1.0)[0] == HIDDEN


# --------------------------------------------------------------------------------- lm-eval
def lmeval_v048_config(steer_path, model):
    """lm_eval/models/hf_steered.py at v0.4.8 (6d2abda4; the wheel lm_eval-0.4.8 ships the same
    file), SteeredModel.__init__: load and build hook_to_steer, late-binding lambda included."""
    if steer_path.endswith(".pt") or steer_path.endswith(".pth"):
        with open(steer_path, "rb") as f:
            steer_config = torch.load(f, weights_only=True)
    else:
        raise ValueError(f"Unknown steer file type: {steer_path}")
    hook_to_steer = {}
    for hookpoint, steer_info in steer_config.items():
        action = steer_info["action"]
        steering_coefficient = steer_info["steering_coefficient"]
        steering_vector = steer_info["steering_vector"].to(model.device).to(model.dtype)
        bias = (steer_info["bias"].to(model.device).to(model.dtype)
                if steer_info["bias"] is not None else None)
        assert bias is None
        if action == "add":
            hook_to_steer[hookpoint] = (
                lambda acts: acts + steering_coefficient * steering_vector  # noqa: B023
            )
        else:
            raise ValueError(f"Unknown hook type: {action}")
    return hook_to_steer


def _lmeval_main_add(acts, vector, head_index):
    """SteeredModel.add at main (4e7e0d47)."""
    if head_index is not None:
        acts[:, :, head_index, :] = acts[:, :, head_index, :] + vector
    else:
        acts = acts + vector
    return acts


def lmeval_main_config(steer_path, model):
    """lm_eval/models/hf_steered.py at main (4e7e0d47), SteeredModel.__init__ ("add" branch)."""
    with open(steer_path, "rb") as f:
        steer_config = torch.load(f, weights_only=False)
    hook_to_steer = {}
    for hookpoint, steer_info in steer_config.items():
        action = steer_info["action"]
        steering_vector = steer_info["steering_vector"].to(model.device).to(model.dtype)
        steering_coefficient = float(steer_info.get("steering_coefficient", 1.0))
        head_index = steer_info.get("head_index", None)
        bias = steer_info.get("bias", None)
        assert action == "add" and bias is None
        hook_to_steer[hookpoint] = partial(_lmeval_main_add,
                                           vector=steering_vector * steering_coefficient,
                                           head_index=head_index)
    return hook_to_steer


def lmeval_steered_logits(model, hook_to_steer, ids):
    """lm_eval/models/hf_steered.py ``steer`` (the same at v0.4.8 and main): forward hooks on
    the modules of ``model.base_model.named_modules()`` whose names are the hookpoints."""
    def create_hook(hookpoint):
        def hook_fn(module, input, output):  # noqa: A002
            if isinstance(output, tuple):
                output = (hook_to_steer[hookpoint](output[0]), *output[1:])
            else:
                output = hook_to_steer[hookpoint](output)
            return output
        return hook_fn

    handles = []
    hookpoints = list(hook_to_steer.keys())
    for name, module in model.base_model.named_modules():
        if name in hookpoints:
            handles.append(module.register_forward_hook(create_hook(name)))
    if len(handles) != len(hookpoints):
        for h in handles:
            h.remove()
        raise ValueError(f"Not all hookpoints could be resolved: {hookpoints}")
    try:
        with torch.no_grad():
            return model(ids).logits
    finally:
        for h in handles:
            h.remove()


def test_lmeval_export_as_lmeval_reads_it(tmp_path, tiny_llama):
    v = make((1,))
    path = v.to_lmeval(tmp_path / "steer.pt", coefficient=3.0)
    cfg = torch.load(str(path), weights_only=True)  # lm-eval <= 0.4.11 loads with weights_only
    assert list(cfg) == ["layers.1"]
    entry = cfg["layers.1"]
    assert set(entry) == {"steering_vector", "steering_coefficient", "action", "bias", "head_index"}
    assert entry["action"] == "add" and entry["bias"] is None and entry["head_index"] is None
    assert entry["steering_coefficient"] == 3.0 and type(entry["steering_coefficient"]) is float
    assert entry["steering_vector"].shape == (HIDDEN,) and entry["steering_vector"].dtype == torch.float32
    torch.testing.assert_close(entry["steering_vector"], v.scaled(1.0, "sd")[1])

    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        plain = tiny_llama(ids).logits
    reference = reference_logits(tiny_llama, ids, {1: v.scaled(3.0, "sd")[1]})
    assert not torch.allclose(plain, reference, atol=1e-4)  # the vector does something
    for build in (lmeval_v048_config, lmeval_main_config):
        steered = lmeval_steered_logits(tiny_llama, build(str(path), tiny_llama), ids)
        torch.testing.assert_close(steered, reference, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(tiny_llama(ids).logits, plain, rtol=0, atol=0)  # hooks gone


def test_lmeval_hookpoints_must_resolve(tmp_path, tiny_llama):
    v = make((1,))
    bad = v.to_lmeval(tmp_path / "bad.pt", hookpoint_prefix="model.layers")  # not base_model names
    with pytest.raises(ValueError, match="Not all hookpoints could be resolved"):
        lmeval_steered_logits(tiny_llama, lmeval_main_config(str(bad), tiny_llama),
                              torch.tensor([[1, 2]]))
    with pytest.raises(CapeError, match="ending in .pt or .pth"):
        v.to_lmeval(tmp_path / "steer.bin")
    no_path = SteeringVector({1: np.ones(4)}, model_id="m", hidden_size=4, n_layers=2)
    with pytest.raises(CapeError, match="hookpoint_prefix"):
        no_path.to_lmeval(tmp_path / "x.pt", unit="raw")
    assert list(torch.load(str(no_path.to_lmeval(tmp_path / "y.pt", unit="raw",
                                                  hookpoint_prefix="h")))) == ["h.1"]


def test_lmeval_multi_layer_warns_and_main_applies_each(tmp_path, tiny_llama):
    v = make((0, 2))
    with pytest.warns(UserWarning, match="0.4.9.2"):
        path = v.to_lmeval(tmp_path / "two.pt", coefficient=2.0)
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    reference = reference_logits(tiny_llama, ids, v.scaled(2.0, "sd"))
    steered = lmeval_steered_logits(tiny_llama, lmeval_main_config(str(path), tiny_llama), ids)
    torch.testing.assert_close(steered, reference, rtol=1e-5, atol=1e-5)
    # v0.4.8's late-binding lambda adds the LAST vector at both hookpoints: the warning is due
    old = lmeval_steered_logits(tiny_llama, lmeval_v048_config(str(path), tiny_llama), ids)
    assert not torch.allclose(old, reference, atol=1e-4)
    last = v.scaled(2.0, "sd")[2]
    torch.testing.assert_close(old, reference_logits(tiny_llama, ids, {0: last, 2: last}),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config_cls, kwargs, layers_path, expected", [
    ("LlamaConfig", dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2), "model.layers", "layers"),
    ("GPT2Config", dict(n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0),
     "transformer.h", "h"),
    ("OPTConfig", dict(hidden_size=16, ffn_dim=32, num_hidden_layers=2, num_attention_heads=2,
                       word_embed_proj_dim=16), "model.decoder.layers", "decoder.layers"),
    ("GPTNeoXConfig", dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2), "gpt_neox.layers", "layers"),
])
def test_lmeval_prefix_resolves_in_base_model(config_cls, kwargs, layers_path, expected):
    cfg = getattr(transformers, config_cls)(vocab_size=64, **kwargs)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    v = SteeringVector({1: np.ones(16)}, model_id="m", hidden_size=16, n_layers=2,
                       layers_path=layers_path)
    assert v.lmeval_prefix() == expected
    names = dict(model.base_model.named_modules())
    assert f"{expected}.1" in names
    assert names[f"{expected}.1"] is model.get_submodule(f"{layers_path}.1")


@pytest.mark.skipif("lm_eval" not in sys.modules and __import__("importlib").util.find_spec("lm_eval") is None,
                    reason="lm-eval is not installed (its loader is replicated above)")
def test_lmeval_real_steer(tmp_path, tiny_llama):  # pragma: no cover - runs where lm-eval is installed
    from lm_eval.models.hf_steered import steer

    v = make((1,))
    cfg = torch.load(str(v.to_lmeval(tmp_path / "s.pt", coefficient=2.0)), weights_only=True)
    hook = {hp: (lambda acts, e=e: acts + e["steering_coefficient"] * e["steering_vector"])
            for hp, e in cfg.items()}
    ids = torch.tensor([[1, 2, 3]])
    with steer(tiny_llama, hook), torch.no_grad():
        out = tiny_llama(ids).logits
    torch.testing.assert_close(out, reference_logits(tiny_llama, ids, v.scaled(2.0, "sd")),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------- apply
class FakeLM:
    def __init__(self, model, hidden_size=HIDDEN, n_layers=N_LAYERS, model_id="toy-llama"):
        self.model, self.tokenizer = model, None
        self.hidden_size, self.n_layers, self.model_id = hidden_size, n_layers, model_id
        self.layers_path = "model.layers"


@pytest.fixture
def fake_apply(monkeypatch):
    """A stand-in for cape.steer.apply recording what SteeringVector.apply passes on."""
    from contextlib import contextmanager

    calls = []

    @contextmanager
    def steer(model, directions, *, positions="all", mode="hook", layers_path=None):
        calls.append(("steer", model, directions, positions, mode, layers_path))
        yield

    @contextmanager
    def paper_steer(model, unit_direction, layer, thresholds=(-0.1, 0.1, 0.3),
                    strengths=(3.0, 1.5, 0.5, 0.0), *, layers_path=None):
        calls.append(("paper", model, unit_direction, layer, thresholds, strengths, layers_path))
        yield

    fake = types.ModuleType("cape.steer.apply")
    fake.steer, fake.paper_steer = steer, paper_steer
    monkeypatch.setitem(sys.modules, "cape.steer.apply", fake)
    return calls


def test_apply_delegates(fake_apply, tiny_llama):
    v = make((1, 2))
    lm = FakeLM(tiny_llama)
    with v.apply(lm, 2.0, layers=[2], unit="norm", positions="generated", mode="folded"):
        pass
    kind, model, dirs, positions, mode, layers_path = fake_apply[-1]
    assert kind == "steer" and model is tiny_llama and list(dirs) == [2]
    torch.testing.assert_close(dirs[2], v.scaled(2.0, "norm")[2])
    assert (positions, mode, layers_path) == ("generated", "folded", "model.layers")
    with v.apply(lm, 0.5, layers=1, mode="paper"):
        pass
    kind, model, unit_direction, layer, thresholds, strengths, layers_path = fake_apply[-1]
    assert kind == "paper" and layer == 1 and strengths == (1.5, 0.75, 0.25, 0.0)
    assert layers_path == "model.layers"
    assert float(torch.linalg.norm(unit_direction)) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(CapeError, match="one layer"):
        with v.apply(lm, 1.0, mode="paper"):
            pass
    with pytest.raises(CapeError, match="positions does not apply"):
        with v.apply(lm, 1.0, layers=1, mode="paper", positions="prompt"):
            pass
    with pytest.raises(CapeError, match="unknown steering mode"):
        with v.apply(lm, 1.0, mode="bias"):
            pass


def test_apply_refuses_other_model_shapes(fake_apply, tiny_llama):
    v = make((1,))
    with pytest.raises(CapeError, match="hidden size 32, 3 blocks.*hidden size 64 and 3 blocks"):
        with v.apply(FakeLM(tiny_llama, hidden_size=64), 1.0):
            pass
    with pytest.raises(CapeError, match="2 blocks"):
        with v.apply(FakeLM(tiny_llama, n_layers=2), 1.0):
            pass
    assert fake_apply == []  # nothing was steered
    with pytest.warns(UserWarning, match="extracted from 'toy-llama'.*'other'"):
        with v.apply(FakeLM(tiny_llama, model_id="other"), 1.0):
            pass
    v.check_model(tiny_llama)  # a bare transformers model: shapes from config / its layers
    small = make((1,), hidden=16)
    with pytest.raises(CapeError, match="hidden size 32"):
        small.check_model(tiny_llama)


def test_apply_with_the_real_engine_changes_and_restores_logits(tiny_llama):
    """SteeringVector.apply through cape.steer.apply (no stand-in): steered logits differ,
    and after the block they equal the unsteered ones exactly, in hook and folded mode."""
    from cape.steer.models import LoadedModel

    torch.manual_seed(0)
    lm = LoadedModel(tiny_llama, None, "toy-llama", N_LAYERS, HIDDEN, "model.layers")
    v = make((1,))
    ids = torch.randint(0, tiny_llama.config.vocab_size, (2, 6))
    with torch.no_grad():
        base = tiny_llama(input_ids=ids).logits
        with v.apply(lm, 3.0, unit="raw") as handle:
            hooked = tiny_llama(input_ids=ids).logits
        assert list(handle.layers) == [1]
        after = tiny_llama(input_ids=ids).logits
        with v.apply(lm, 3.0, unit="raw", mode="folded"):
            folded = tiny_llama(input_ids=ids).logits
        again = tiny_llama(input_ids=ids).logits
    assert not torch.allclose(hooked, base, atol=1e-4)
    assert torch.equal(after, base) and torch.equal(again, base)
    torch.testing.assert_close(folded, hooked, atol=1e-5, rtol=1e-5)
