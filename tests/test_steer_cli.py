"""`cape steer layers | extract | generate | export | info` as a user runs them: on a tiny
random Llama saved to a folder (fast, in process), and on the real SmolLM2-135M (slow, the
real command in a subprocess). Exports are read back as llama.cpp and lm-eval read them."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cape.cli import main  # noqa: E402
from cape.steer.vector import SteeringVector  # noqa: E402

from conftest import run_cli  # noqa: E402
from steer_tiny import make_tokenizer, tiny_model  # noqa: E402

N_LAYERS, HIDDEN = 4, 32


def _save_tiny(folder, *, hidden=HIDDEN, seed=0):
    model, _ = tiny_model("llama", n_layers=N_LAYERS, hidden=hidden, seed=seed)
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def cli(capsys, *args):
    """Run `cape ARGS` in process; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def _json(text: str) -> dict:
    return json.loads(text[text.index("{"):])


def test_layers_extract_info_on_a_tiny_model(tiny_folder, tmp_path, capsys):
    code, out, err = cli(capsys, "steer", "layers", "-m", str(tiny_folder), "--json", "--plot",
                         str(tmp_path / "probe.html"))
    assert code == 0, err
    res = _json(out)
    assert [r["layer"] for r in res["layers"]] == list(range(N_LAYERS))
    assert res["n_eval"] + res["n_extract"] == 80 and res["data"] == "default"
    best = max(res["layers"], key=lambda r: (r["probe_acc"], -r["layer"]))
    assert res["layer"] == best["layer"] and res["layer_rule"] == "best"
    for r in res["layers"]:
        assert r["ci_low"] <= r["probe_acc"] <= r["ci_high"] and r["n_eval"] == res["n_eval"]
    html = (tmp_path / "probe.html").read_text()
    assert "Truth-probe accuracy per layer" in html and "plotly" in html.lower()
    # the preprint's layer and a given one
    code, out, _ = cli(capsys, "steer", "layers", "-m", str(tiny_folder), "--layer", "quarter", "--json")
    assert _json(out)["layer"] == N_LAYERS // 4
    # extract: the saved vector is what the table said
    vec = tmp_path / "v.safetensors"
    code, out, err = cli(capsys, "steer", "extract", "-m", str(tiny_folder), "--layer", "2", "--out", str(vec),
                         "--json")
    assert code == 0, err
    saved = SteeringVector.load(vec)
    assert saved.meta["layer"] == 2 and saved.n_layers == N_LAYERS and saved.hidden_size == HIDDEN
    assert saved.layers == list(range(N_LAYERS)) and saved.method == "diffmean"
    assert saved.stats[2]["probe_acc"] == pytest.approx(_json(out)["layers"][2]["probe_acc"])
    assert np.linalg.norm(saved.directions[2]) == pytest.approx(1.0, rel=1e-5)
    code, out, _ = cli(capsys, "steer", "info", str(vec), "--json")
    info = _json(out)
    assert code == 0 and info["model_id"] == saved.model_id and info["meta"]["layer"] == 2
    code, out, _ = cli(capsys, "steer", "info", str(vec))
    assert code == 0 and "steering vector for" in out and "hidden size 32" in out


@pytest.fixture(scope="module")
def tiny_vector(tiny_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("vec") / "v.safetensors"
    assert main(["steer", "extract", "-m", str(tiny_folder), "--layer", "2", "--out", str(path)]) == 0
    return path


def test_exports_read_back_as_llama_cpp_and_lm_eval_read_them(tiny_vector, tmp_path, capsys):
    gguf = pytest.importorskip("gguf")
    vec = SteeringVector.load(tiny_vector)
    code, out, err = cli(capsys, "steer", "export", str(tiny_vector), "--format", "gguf",
                         "--out", str(tmp_path / "v.gguf"), "--scale", "2")
    assert code == 0, err
    reader = gguf.GGUFReader(str(tmp_path / "v.gguf"))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "controlvector"
    assert [t.name for t in reader.tensors] == ["direction.2"]
    want = vec.scaled(2.0, "sd", layers=[2])[2].numpy()
    np.testing.assert_allclose(np.asarray(reader.tensors[0].data, dtype=np.float32), want, rtol=1e-6)
    # lm-eval: torch.load(weights_only=True) as lm_eval/models/hf_steered.py does
    code, out, err = cli(capsys, "steer", "export", str(tiny_vector), "--format", "lm-eval",
                         "--out", str(tmp_path / "v.pt"), "--scale", "3")
    assert code == 0, err
    data = torch.load(tmp_path / "v.pt", weights_only=True)
    assert list(data) == ["layers.2"]
    entry = data["layers.2"]
    assert entry["action"] == "add" and entry["bias"] is None and entry["head_index"] is None
    steered = entry["steering_coefficient"] * entry["steering_vector"].reshape(-1)
    torch.testing.assert_close(steered, vec.scaled(3.0, "sd", layers=[2])[2], rtol=1e-6, atol=1e-6)
    # the opposite: layer 0 cannot be a llama.cpp control vector
    code, _, err = cli(capsys, "steer", "export", str(tiny_vector), "--format", "gguf", "--layer", "0",
                       "--out", str(tmp_path / "zero.gguf"))
    assert code == 2 and not (tmp_path / "zero.gguf").exists()


def test_generate_side_by_side(tiny_folder, tiny_vector, capsys):
    args = ["steer", "generate", "-m", str(tiny_folder), "-v", str(tiny_vector), "-p", "The sky is",
            "-p", "Water boils at", "--max-new-tokens", "8", "--json"]
    code, out, err = cli(capsys, *args, "--alpha", "0")
    assert code == 0, err
    res = _json(out)
    assert res["layers"] == [2] and res["decoding"] == "greedy"
    assert [r["changed"] for r in res["rows"]] == [False, False]  # alpha 0 changes nothing
    code, out, err = cli(capsys, *args, "--alpha", "200", "--unit", "raw")
    rows = _json(out)["rows"]
    assert code == 0 and all(r["changed"] for r in rows)
    assert rows[0]["unsteered"] == res["rows"][0]["unsteered"]  # greedy: the same unsteered text
    # sampling repeats exactly with a seed, and needs one
    code, out1, _ = cli(capsys, *args, "--temperature", "1.0", "--seed", "3")
    code, out2, _ = cli(capsys, *args, "--temperature", "1.0", "--seed", "3")
    assert _json(out1)["rows"] == _json(out2)["rows"]
    code, _, err = cli(capsys, *args, "--temperature", "1.0")
    assert code == 2 and "seed" in err


@pytest.mark.parametrize("case", ["no-model", "layer", "other-model", "empty-data", "one-sided",
                                  "format", "not-a-vector"])
def test_bad_input_is_one_line(case, tiny_folder, tiny_vector, tmp_path, capsys):
    if case == "no-model":
        args = ["steer", "layers", "-m", str(tmp_path / "nope")]
    elif case == "layer":
        args = ["steer", "layers", "-m", str(tiny_folder), "--layer", "9"]
    elif case == "other-model":
        other = _save_tiny(tmp_path / "wide", hidden=64)
        args = ["steer", "generate", "-m", str(other), "-v", str(tiny_vector), "-p", "x"]
    elif case == "empty-data":
        (tmp_path / "e.csv").write_text("statement,label\n")
        args = ["steer", "layers", "-m", str(tiny_folder), "--data", str(tmp_path / "e.csv")]
    elif case == "one-sided":
        (tmp_path / "o.csv").write_text("statement,label\nThe sky is blue.,1\nWater is wet.,1\n")
        args = ["steer", "layers", "-m", str(tiny_folder), "--data", str(tmp_path / "o.csv")]
    elif case == "format":
        args = ["steer", "export", str(tiny_vector), "--format", "onnx", "--out", str(tmp_path / "v.onnx")]
    else:
        (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
        args = ["steer", "info", str(tmp_path / "x.safetensors")]
    code, out, err = cli(capsys, *args)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("loading ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


def test_a_missing_optional_dependency_is_one_line(monkeypatch, tiny_vector, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "safetensors" else real(name, *a, **k))
    code, _, err = cli(capsys, "steer", "info", str(tiny_vector))
    assert code == 2 and "safetensors" in err and "pip install" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_smollm2_extract_export_round_trip(tmp_path):
    """The real command on SmolLM2-135M: extract (default set), save/load round trip, both
    exports read back, and `info` on the file."""
    gguf = pytest.importorskip("gguf")
    vec_path = tmp_path / "smollm2.safetensors"
    res = run_cli("steer", "extract", "-m", "smollm2-135m", "--out", str(vec_path), "--json")
    assert res.returncode == 0, res.stderr
    ex = _json(res.stdout)
    assert len(ex["layers"]) == 30 and ex["model"] == "smollm2-135m"
    vec = SteeringVector.load(vec_path)
    assert vec.hidden_size == 576 and vec.n_layers == 30 and vec.layers_path == "model.layers"
    assert vec.meta["layer"] == ex["layer"] and vec.meta["model_type"] == "llama"
    vec.save(tmp_path / "again.safetensors")
    assert SteeringVector.load(tmp_path / "again.safetensors") == vec
    layer = ex["layer"] if ex["layer"] > 0 else 1
    res = run_cli("steer", "export", str(vec_path), "--format", "gguf", "--layer", str(layer),
                  "--out", str(tmp_path / "v.gguf"))
    assert res.returncode == 0, res.stderr
    reader = gguf.GGUFReader(str(tmp_path / "v.gguf"))
    hint = reader.fields["controlvector.model_hint"]
    assert bytes(hint.parts[hint.data[0]]).decode() == "llama"
    assert [t.name for t in reader.tensors] == [f"direction.{layer}"]
    np.testing.assert_allclose(np.asarray(reader.tensors[0].data, np.float32),
                               vec.scaled(1.0, "sd", layers=[layer])[layer].numpy(), rtol=1e-6)
    res = run_cli("steer", "export", str(vec_path), "--format", "lm-eval", "--layer", str(layer),
                  "--out", str(tmp_path / "v.pt"))
    assert res.returncode == 0, res.stderr
    data = torch.load(tmp_path / "v.pt", weights_only=True)
    assert list(data) == [f"layers.{layer}"] and data[f"layers.{layer}"]["steering_vector"].numel() == 576
    res = run_cli("steer", "info", str(vec_path))
    assert res.returncode == 0 and "smollm2-135m" in res.stdout and "hidden size 576" in res.stdout


def test_import_cape_cli_stays_light():
    import subprocess

    code = ("import sys, cape, cape.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'gguf', 'safetensors') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
