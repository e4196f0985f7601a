"""The dashboard's JSON API (``cape serve``, :mod:`cape.web.api`): every endpoint, checked
against the engine called directly; validation errors (422 naming the field), unknown
names (404), engine refusals (400); the result cache; jobs with progress and cancellation;
and a Schemathesis run against a real server's /openapi.json (no 5xx on generated requests).

A new endpoint under /api without a test here fails :func:`test_every_api_route_is_tested`.
"""

from __future__ import annotations

import json
import time

import pytest

fastapi = pytest.importorskip("fastapi", reason="the dashboard needs fastapi (a dependency of cape)")
from fastapi.testclient import TestClient  # noqa: E402

import cape  # noqa: E402
from cape.analysis.results import jsonable  # noqa: E402
from cape.web import create_app  # noqa: E402
from cape.web.analyses import ANALYSES, MAX_RESAMPLES  # noqa: E402

from conftest import fresh_panel  # noqa: E402

#: Valid inputs for every analysis at GET /api/<name> (few resamples, so each is quick).
EXAMPLES: dict[str, dict] = {
    "coupling": {"resamples": 500, "seed": 1},
    "gamma": {"resamples": 500, "seed": 1},
    "nc": {"resamples": 500, "seed": 1},
    "overview": {"resamples": 500, "seed": 1},
    "phase": {"params": 7e9, "hellaswag": 75.0, "truthfulqa": 40.0, "resamples": 500, "seed": 1},
    "advise": {"family": "Pythia", "resamples": 200},
    "width": {"draws": 500, "seed": 1},
    "eigen": {"resamples": 500, "seed": 1},
    "crossval": {"seed": 1},
    "predict": {"family": "Pythia"},
    "frontier-fit": {"resamples": 500, "seed": 1},
    "hfield": {},
    "labs": {"resamples": 500, "seed": 1},
    "frontier-dynamics": {},
    "release": {"swe": 70.0, "gpqa": 80.0},
    "saturation": {"resamples": 500, "seed": 1},
    "predictions": {"as_of": "2026-01-01"},
    "audit": {"resamples": 200, "replication": False},
    "replication": {"resamples": 200},
}


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory):
    """One app for the read-only tests (its cache is shared between them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAPE_HOME", str(tmp_path_factory.mktemp("cape-home")))
        with TestClient(create_app(), base_url="http://127.0.0.1") as client:
            yield client


@pytest.fixture
def client():
    """A fresh app (empty cache, no jobs) for the tests of the cache and the jobs."""
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def _strict_json(response) -> dict:
    """The body, refusing NaN and infinities (they are not JSON)."""
    def refuse(token):
        raise AssertionError(f"the body has {token}, which is not JSON")

    return json.loads(response.text, parse_constant=refuse)


def _as_served(result) -> object:
    """An engine result as the API serves it: to_dict(), NaN as null, through JSON."""
    import pandas as pd

    plain = result.to_dict() if hasattr(result, "to_dict") and not isinstance(result, pd.DataFrame) else result
    return json.loads(json.dumps(jsonable(plain), allow_nan=False))


def _first_difference(a, b, path="result"):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            d = _first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items against {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def assert_422(response, *loc: str) -> None:
    """A 422 whose body names ``loc`` (e.g. 'query', 'resamples')."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    locs = [list(e["loc"]) for e in detail]
    assert list(loc) in locs, f"{list(loc)} not among {locs}"
    assert all(e.get("msg") for e in detail)


def api_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route under /api, however the routers were included."""
    out: set[tuple[str, str]] = set()

    def walk(routes, prefix: str = "") -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)           # FastAPI >= 0.16x: included routers
            if inner is not None:
                walk(inner.routes, prefix + (getattr(getattr(r, "include_context", None), "prefix", "") or ""))
            elif getattr(r, "methods", None):
                path = prefix + r.path
                if path.startswith("/api"):
                    out.update((m, path) for m in r.methods - {"HEAD"})
            elif hasattr(r, "routes"):                              # a Mount
                walk(r.routes, prefix + getattr(r, "path", ""))

    walk(app.routes)
    return out


# ------------------------------------------------------------------------------ coverage
#: every other route under /api -> the test (in this module) that checks it
OTHER_ROUTES = {
    ("GET", "/api/health"): "test_health",
    ("GET", "/api/analyses"): "test_analyses_lists_every_analysis",
    ("GET", "/api/panels"): "test_panels",
    ("GET", "/api/panels/{name}"): "test_one_panel",
    ("POST", "/api/jobs"): "test_job_progress_and_result",
    ("GET", "/api/jobs/{job_id}"): "test_job_progress_and_result",
    ("DELETE", "/api/jobs/{job_id}"): "test_cancel_a_running_job",
    ("GET", "/api/steering/status"): "test_steering_routes",
    ("POST", "/api/steering/load"): "test_steering_routes",
    ("POST", "/api/steering/generate"): "test_steering_routes",
    ("GET", "/api/steering/evaluations"): "test_steering_routes",
    ("GET", "/api/steering/evaluations/{index}"): "test_steering_routes",
    ("POST", "/api/upload"): "test_data_routes",
    ("GET", "/api/data/formats"): "test_data_routes",
}


def test_every_api_route_is_tested():
    app = create_app()
    routes = api_routes(app)
    analyses = {("GET", f"/api/{name}") for name in ANALYSES}
    assert set(EXAMPLES) == set(ANALYSES), "every analysis needs valid example inputs in EXAMPLES"
    untested = routes - analyses - set(OTHER_ROUTES)
    assert not untested, f"routes without a test in {__name__}: {sorted(untested)}"
    gone = set(OTHER_ROUTES) - routes
    assert not gone, f"OTHER_ROUTES names routes that no longer exist: {sorted(gone)}"
    assert analyses <= routes
    for test in set(OTHER_ROUTES.values()):
        assert callable(globals().get(test)), test
    # the schema lists the same API (what Schemathesis and clients see)
    schema_routes = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops if p.startswith("/api")}
    assert schema_routes == routes


def test_the_route_check_sees_a_new_endpoint():
    """The check above can fail: an endpoint added directly or through a router is seen."""
    from fastapi import APIRouter

    app = create_app()
    app.get("/api/brand-new")(lambda: {})
    router = APIRouter(prefix="/api/more")
    router.post("/thing")(lambda: {})
    app.include_router(router)
    found = api_routes(app)
    assert {("GET", "/api/brand-new"), ("POST", "/api/more/thing")} <= found
    assert found - {("GET", f"/api/{n}") for n in ANALYSES} - set(OTHER_ROUTES) == {
        ("GET", "/api/brand-new"), ("POST", "/api/more/thing")}


def test_the_comparison_sees_a_changed_value():
    a = {"x": [1.0, {"y": 2.0}], "z": None}
    assert _first_difference(a, json.loads(json.dumps(a))) is None
    assert _first_difference(a, {"x": [1.0, {"y": 2.0000001}], "z": None}) == "result.x[1].y: 2.0 != 2.0000001"
    assert _first_difference(a, {"x": [1.0], "z": None}) is not None


# ------------------------------------------------------------------------------ analyses
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_analysis_answers(shared_client, name):
    response = shared_client.get(f"/api/{name}", params=EXAMPLES[name])
    assert response.status_code == 200, response.text
    body = _strict_json(response)
    assert body["analysis"] == name
    assert isinstance(body["cached"], bool)
    assert body["result"], "an empty result"
    for k, v in EXAMPLES[name].items():       # the inputs come back validated
        assert body["params"][k] == v


def _frame(name, **kw):
    return cape.load_panel(name, **kw) if kw else fresh_panel(name)


def _engine_gamma():
    from cape.analysis import local_coupling, running_coupling

    lc = local_coupling(_frame("paper-base"), None, guard=1.0)
    return {"local": lc.to_dict(), "running": running_coupling(lc, n_resamples=500, level=0.9, seed=3).to_dict(),
            "errors": {}}


def _engine(name):
    from cape.analysis import critical_scale, eigenstructure, family_coupling, phase_of_model, width_normalization
    from cape.analysis import frontier as fr
    from cape.predictions import evaluate_predictions

    return {
        "nc": lambda: critical_scale(_frame("paper-nc"), None, n_resamples=500, level=0.95, guard=0.5, seed=1),
        "coupling": lambda: family_coupling(_frame("paper-base", family=["Pythia", "Llama-2"]), None,
                                            n_bootstrap=500, level=0.9, seed=2),
        "width": lambda: width_normalization(_frame("paper-pythia"), None, n_null=500, seed=1),
        "eigen": lambda: eigenstructure(_frame("paper-base"), None, matrix="covariance", n_resamples=300,
                                        level=0.95, seed=4),
        "frontier-fit": lambda: fr.population_fit(_frame("paper-frontier"), None, subset="core", n_bootstrap=400,
                                                  level=0.95, seed=1),
        "release": lambda: fr.new_release(_frame("paper-frontier"), 70.0, 80.0, lab="Anthropic", date="2026-03",
                                          subset="published", level=0.9),
        "hfield": lambda: fr.hfield(_frame("paper-frontier"), None, subset="all"),
        "predictions": lambda: evaluate_predictions(_frame("paper-frontier"), as_of="2026-01-01"),
        "phase": lambda: phase_of_model(_frame("paper-base"), 7e9, 75.0, 40.0, pair=("hellaswag", "truthfulqa"),
                                        n_resamples=500, level=0.95, seed=1),
        "gamma": _engine_gamma,
    }[name]()


#: GET /api/<name> with these inputs == the engine called directly with the same inputs
SAME_AS_ENGINE = {
    "nc": {"resamples": 500, "seed": 1},
    "coupling": {"family": "Pythia,Llama-2", "resamples": 500, "level": 0.9, "seed": 2},
    "width": {"draws": 500, "seed": 1},
    "eigen": {"matrix": "covariance", "resamples": 300, "seed": 4},
    "frontier-fit": {"subset": "core", "resamples": 400, "seed": 1},
    "release": {"swe": 70, "gpqa": 80, "lab": "Anthropic", "date": "2026-03", "level": 0.9},
    "hfield": {"subset": "all"},
    "predictions": {"as_of": "2026-01-01"},
    "phase": {"params": 7e9, "hellaswag": 75, "truthfulqa": 40, "resamples": 500, "seed": 1},
    "gamma": {"guard": 1.0, "resamples": 500, "level": 0.9, "seed": 3},
}


@pytest.mark.parametrize("name", list(SAME_AS_ENGINE))
def test_results_are_the_engines(shared_client, name):
    response = shared_client.get(f"/api/{name}", params=SAME_AS_ENGINE[name])
    assert response.status_code == 200, response.text
    served = _strict_json(response)["result"]
    expected = _as_served(_engine(name))
    diff = _first_difference(served, expected)
    assert diff is None, diff


def test_nc_values_one_by_one(shared_client):
    """The headline estimates, value by value: N_c, its interval, n and resamples of each
    estimator (a guard on the whole-result comparison above)."""
    from cape.analysis import critical_scale

    cs = critical_scale(_frame("paper-nc"), None, n_resamples=500, seed=1)
    served = shared_client.get("/api/nc", params={"resamples": 500, "seed": 1}).json()["result"]
    by_name = {v["name"]: v for v in served.values() if isinstance(v, dict) and "name" in v and "value" in v}
    assert len(cs.estimates) >= 3
    for est in cs.estimates:
        got = by_name[est.name]
        assert got["value"] == est.value and got["n"] == est.n and got["n_resamples"] == est.n_resamples == 500
        assert tuple(got["ci"]) == tuple(est.ci) and got["level"] == est.level and got["method"] == est.method


# ------------------------------------------------------------------------------ validation
def _numeric_fields(name):
    """(field, schema) of every number input of analysis ``name``."""
    props = ANALYSES[name].query.model_json_schema()["properties"]
    out = []
    for field, spec in props.items():
        types = {spec.get("type")} | {s.get("type") for s in spec.get("anyOf", [])}
        bounds = next((s for s in [spec, *spec.get("anyOf", [])] if s.get("type") in ("integer", "number")), None)
        if bounds is not None and types & {"integer", "number"}:
            out.append((field, bounds))
    return out


@pytest.mark.parametrize("name", [n for n in EXAMPLES if _numeric_fields(n)])
def test_bad_numbers_are_422_naming_the_field(shared_client, name):
    for field, spec in _numeric_fields(name):
        for bad in ("abc", "1,5", "", "nan", "inf"):
            if bad in ("nan", "inf") and spec["type"] == "integer":
                bad = "1.5"
            r = shared_client.get(f"/api/{name}", params={**EXAMPLES[name], field: bad})
            assert_422(r, "query", field)
        above = spec.get("maximum", spec.get("exclusiveMaximum"))
        below = spec.get("minimum", spec.get("exclusiveMinimum"))
        assert above is not None and below is not None, f"{name}.{field} has no bounds"
        step = 1 if spec["type"] == "integer" else max(abs(above), 1) * 1e-3
        for value in (above + step, below - step, (above if "exclusiveMaximum" in spec else None)):
            if value is not None:
                r = shared_client.get(f"/api/{name}", params={**EXAMPLES[name], field: value})
                assert_422(r, "query", field)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_bad_names_choices_and_flags_are_422_naming_the_field(shared_client, name):
    props = ANALYSES[name].query.model_json_schema()["properties"]
    checked = 0
    for field, spec in props.items():
        kinds = [spec, *spec.get("anyOf", [])]
        if any(k.get("type") == "boolean" for k in kinds):
            bad = "perhaps"
        elif any("enum" in k or "const" in k for k in kinds):
            bad = "no-such-choice"
        elif any("pattern" in k for k in kinds):
            bad = "../no such name"
        else:
            continue
        assert_422(shared_client.get(f"/api/{name}", params={**EXAMPLES[name], field: bad}), "query", field)
        checked += 1
    assert checked, f"{name} has no name, choice or flag inputs"


@pytest.mark.parametrize("path, params, field", [
    ("/api/coupling", {"panel": "../../etc/passwd"}, "panel"),
    ("/api/coupling", {"pair": "hellaswag"}, "pair"),
    ("/api/coupling", {"clean": "perhaps"}, "clean"),
    ("/api/eigen", {"matrix": "inverse"}, "matrix"),
    ("/api/eigen", {"phase": "liquid"}, "phase"),
    ("/api/frontier-fit", {"subset": "some"}, "subset"),
    ("/api/phase", {"hellaswag": 50, "truthfulqa": 40}, "params"),
    ("/api/predict", {}, "family"),
    ("/api/release", {"swe": 70, "gpqa": 80, "date": "2025-1-1"}, "date"),
    ("/api/coupling", {"family": "x" * 501}, "family"),
])
def test_other_bad_inputs_are_422_naming_the_field(shared_client, path, params, field):
    assert_422(shared_client.get(path, params=params), "query", field)


@pytest.mark.parametrize("path, params, field", [
    ("/api/release", {"swe": 0, "gpqa": 0, "date": "0000"}, "date"),
    ("/api/release", {"swe": 0, "gpqa": 0, "date": "2024-02-30"}, "date"),
    ("/api/release", {"swe": 0, "gpqa": 0, "date": "2024-13"}, "date"),
    ("/api/predictions", {"as_of": "0000-01-01"}, "as_of"),
    ("/api/predictions", {"as_of": "2025-02-29"}, "as_of"),
])
def test_dates_that_do_not_exist_are_422(shared_client, path, params, field):
    """Regression: /api/release?date=0000 was a 500 (the engine's 'year 0 is out of range'),
    found by Schemathesis."""
    assert_422(shared_client.get(path, params=params), "query", field)


def test_a_real_date_still_works(shared_client):
    r = shared_client.get("/api/release", params={"swe": 70, "gpqa": 80, "date": "2024"})
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------ 404 and 400
@pytest.mark.parametrize("path, params, named", [
    ("/api/coupling", {"panel": "no-such-panel"}, "no-such-panel"),
    ("/api/nc", {"panel": "no-such-panel"}, "no-such-panel"),
    ("/api/replication", {"panel": "no-such-panel"}, "no-such-panel"),
    ("/api/panels/no-such-panel", {}, "no-such-panel"),
    ("/api/coupling", {"family": "Pythia,NoSuchFamily"}, "NoSuchFamily"),
    ("/api/predict", {"family": "NoSuchFamily"}, "NoSuchFamily"),
    ("/api/advise", {"family": "NoSuchFamily"}, "NoSuchFamily"),
    ("/api/panels/paper-base", {"family": "NoSuchFamily"}, "NoSuchFamily"),
])
def test_unknown_panel_or_family_is_404(shared_client, path, params, named):
    r = shared_client.get(path, params=params)
    assert r.status_code == 404, r.text
    assert named in r.json()["detail"]


@pytest.mark.parametrize("path, params, says", [
    ("/api/coupling", {"pair": "hellaswag:nosuchbench"}, "nosuchbench"),
    ("/api/nc", {"panel": "paper-frontier"}, "hellaswag"),
    ("/api/advise", {}, "give a family"),
    ("/api/phase", {"params": 7e9, "hellaswag": 75, "truthfulqa": 40, "pair": "mmlu:arc_challenge"}, "pair"),
])
def test_engine_refusal_is_400_with_its_message(shared_client, path, params, says):
    r = shared_client.get(path, params=params)
    assert r.status_code == 400, r.text
    assert says in r.json()["detail"]


# ------------------------------------------------------------------------------ server routes
def test_health(shared_client):
    body = shared_client.get("/api/health").json()
    assert body == {"status": "ok", "version": cape.__version__}


def test_analyses_lists_every_analysis(shared_client):
    body = shared_client.get("/api/analyses").json()
    assert [a["name"] for a in body] == list(ANALYSES)
    for a in body:
        assert a["url"] == f"/api/{a['name']}"
        assert set(a["inputs"]) == set(ANALYSES[a["name"]].query.model_fields)


def test_panels(shared_client):
    from cape.panels import BUILTIN_PANELS

    r = shared_client.get("/api/panels")
    assert r.status_code == 200
    served = _strict_json(r)["panels"]
    assert [p["name"] for p in served][:len(BUILTIN_PANELS)] == list(BUILTIN_PANELS)
    assert served == _as_served(cape.api.list_panels())


def test_one_panel(shared_client):
    frame = fresh_panel("paper-base")
    body = _strict_json(shared_client.get("/api/panels/paper-base"))
    assert body["n_models"] == len(frame) == len(body["models"])
    assert body["families"] == sorted(set(frame["family"].dropna()))
    assert set(body["benchmarks"]) == set(frame.attrs["cape"]["variants"])
    pythia = _strict_json(shared_client.get("/api/panels/paper-base", params={"family": "Pythia"}))
    assert pythia["families"] == ["Pythia"]
    assert pythia["n_models"] == int((frame["family"] == "Pythia").sum())
    assert_422(shared_client.get("/api/panels/paper-base", params={"clean": "maybe"}), "query", "clean")


# ------------------------------------------------------------------------------ the cache
def test_repeated_request_is_served_from_the_cache(client):
    params = {"resamples": 500, "seed": 1}
    first = client.get("/api/nc", params=params).json()
    assert first["cached"] is False
    again = client.get("/api/nc", params=params).json()
    assert again["cached"] is True
    assert again["result"] == first["result"]
    # the key is the validated inputs: the same inputs spelled differently are the same request
    spelled = client.get("/api/nc", params={"resamples": "0500", "seed": "1", "level": "0.950", "ignored": "x"}).json()
    assert spelled["cached"] is True
    # another seed, or another number of resamples, is another computation
    other_seed = client.get("/api/nc", params={"resamples": 500, "seed": 2}).json()
    assert other_seed["cached"] is False
    assert other_seed["result"] != first["result"]
    assert client.get("/api/nc", params={"resamples": 600, "seed": 1}).json()["cached"] is False
    assert client.get("/api/nc", params={"resamples": 500, "seed": 2}).json()["cached"] is True


# ------------------------------------------------------------------------------ jobs
def _poll(client, job_id, until=("done", "failed", "cancelled"), timeout=60.0, every=0.02):
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/jobs/{job_id}").json()
        seen.append(body)
        if body["status"] in until:
            return body, seen
        assert time.monotonic() < deadline, f"job still {body['status']} after {timeout:.0f} s: {body}"
        time.sleep(every)


def test_job_progress_and_result(client):
    params = EXAMPLES["audit"]
    r = client.post("/api/jobs", json={"analysis": "audit", "params": params})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["url"] == f"/api/jobs/{job['id']}"
    final, seen = _poll(client, job["id"])
    assert final["status"] == "done", final
    done = [b["done"] for b in seen]
    assert done == sorted(done), f"progress went back: {done}"
    assert len({d for d in done if 0 < d < final["total"]}) >= 1, f"no progress seen between start and end: {done}"
    assert final["done"] == final["total"] > 0 and final["fraction"] == 1.0
    assert final["result"]["table"], "no result"
    # the job's result is in the cache, under the same inputs as GET /api/audit
    got = client.get("/api/audit", params=params).json()
    assert got["cached"] is True and got["result"] == final["result"]
    # a job for inputs already computed is finished at once and computes nothing
    again = client.post("/api/jobs", json={"analysis": "audit", "params": params})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "done" and again.json()["cached"] is True
    assert again.json()["result"] == final["result"]


def test_a_failing_job_says_why(client):
    r = client.post("/api/jobs", json={"analysis": "coupling", "params": {"panel": "no-such-panel"}})
    assert r.status_code == 202
    final, _ = _poll(client, r.json()["id"])
    assert final["status"] == "failed" and final["error_status"] == 404
    assert "no-such-panel" in final["error"]


def test_cancel_a_running_job(client):
    state = client.app.state.cape
    params = {"resamples": MAX_RESAMPLES, "seed": 7}
    job = client.post("/api/jobs", json={"analysis": "replication", "params": params}).json()
    _poll(client, job["id"], until=("running",), every=0.005)
    t0 = time.monotonic()
    r = client.delete(f"/api/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["status"] in ("running", "cancelled")
    final, _ = _poll(client, job["id"], timeout=60)
    waited = time.monotonic() - t0
    # 'cancelled' is set by the worker once the computation has raised out of its progress
    # callback: the computation stopped, before its last step
    assert final["status"] == "cancelled", final
    assert final["total"] == 0 or final["done"] < final["total"], f"it ran to the end: {final}"
    assert "result" not in final
    assert state.cache.get(state.key("replication", state.inputs("replication", params))) is None
    assert waited < 30, f"cancelling took {waited:.1f} s"
    # cancelling again, or a finished job, changes nothing
    assert client.delete(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"


def test_cancel_a_job_that_has_made_progress(client):
    """Cancelled between two of its steps: it stops at the next one, the steps done kept."""
    params = {"resamples": MAX_RESAMPLES, "seed": 8, "replication": False}
    job = client.post("/api/jobs", json={"analysis": "audit", "params": params}).json()
    deadline = time.monotonic() + 60
    while (body := client.get(f"/api/jobs/{job['id']}").json())["done"] < 1:
        assert body["status"] in ("queued", "running") and time.monotonic() < deadline, body
        time.sleep(0.005)
    client.delete(f"/api/jobs/{job['id']}")
    final, _ = _poll(client, job["id"], timeout=60)
    assert final["status"] == "cancelled", final
    assert 1 <= final["done"] < final["total"], final
    assert "result" not in final


def test_unknown_job_is_404(client):
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    assert client.delete("/api/jobs/0123456789abcdef").status_code == 404
    assert client.get("/api/jobs/" + "x" * 65).status_code == 422


@pytest.mark.parametrize("body, loc", [
    ({"analysis": "audit", "params": {"resamples": "many"}}, ["body", "params", "resamples"]),
    ({"analysis": "audit", "params": {"resamples": 10**9}}, ["body", "params", "resamples"]),
    ({"analysis": "coupling", "params": {"level": 1.5}}, ["body", "params", "level"]),
    ({"analysis": "phase", "params": {"hellaswag": 50, "truthfulqa": 40}}, ["body", "params", "params"]),
    ({"analysis": "no-such-analysis"}, ["body", "analysis"]),
    ({"params": {}}, ["body", "analysis"]),
    ({"analysis": "audit", "params": "resamples=200"}, ["body", "params"]),
])
def test_job_with_bad_inputs_is_422_naming_them(client, body, loc):
    r = client.post("/api/jobs", json=body)
    assert_422(r, *loc)
    assert client.app.state.cape.jobs._jobs == {}, "a job was started"


def test_job_body_that_is_not_json_is_422(client):
    r = client.post("/api/jobs", content=b"analysis=audit", headers={"content-type": "application/json"})
    assert r.status_code == 422


# ------------------------------------------------------------------------------ the other parts' routes
def test_steering_routes(client):
    """The steering API answers with 4xx to bad input, without loading a model (its own
    tests, with a model, are in the steering module's tests)."""
    status = client.get("/api/steering/status")
    assert status.status_code == 200
    assert {"torch", "enabled", "model"} <= set(status.json())
    assert_422(client.post("/api/steering/load", json={"model": ""}), "body", "model")
    assert_422(client.post("/api/steering/load", json={"model": "x", "extra": 1}), "body", "extra")
    assert_422(client.post("/api/steering/generate", json={"prompt": "Hi"}), "body", "vector")
    assert_422(client.post("/api/steering/generate", json={"vector": "v.safetensors", "prompt": "Hi",
                                                             "alpha": "strong"}), "body", "alpha")
    evaluations = client.get("/api/steering/evaluations")
    assert evaluations.status_code == 200 and evaluations.json()["evaluations"] == []
    assert client.get("/api/steering/evaluations/0").status_code == 404
    assert client.get("/api/steering/evaluations/-1").status_code == 422
    assert client.get("/api/steering/evaluations/one").status_code == 422


def test_data_routes(client):
    formats = client.get("/api/data/formats")
    assert formats.status_code == 200
    assert formats.json()["max_upload_bytes"] > 0 and ".csv" in formats.json()["suffixes"]
    assert_422(client.post("/api/upload"), "body", "file")
    r = client.post("/api/upload", files={"file": ("x.csv", b"model,hellaswag\nm,50\n")})
    assert 400 <= r.status_code < 500, r.text


# ------------------------------------------------------------------------------ Schemathesis
schemathesis = pytest.importorskip("schemathesis", reason="Schemathesis is a test dependency (cape[test])")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

#: analyses whose one request costs seconds (a bootstrap of the flip test, the whole audit):
#: generated requests for them are few and skip the coverage phase (every boundary of every
#: input, each a full computation)
SLOW_PATHS = r"^/api/(audit|replication|advise)$"


@pytest.fixture(scope="module")
def web_schema(tmp_path_factory):
    """The schema as a real server serves it, at /openapi.json."""
    from web_server import serve

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAPE_HOME", str(tmp_path_factory.mktemp("cape-home-schemathesis")))
        with serve() as url:
            config = schemathesis.Config.from_dict({
                "seed": 20260518,          # the same requests on every run
                "request-timeout": 300,
                "generation": {"max-examples": 8},
                "operations": [{"include-path-regex": SLOW_PATHS, "generation": {"max-examples": 3},
                                "phases": {"coverage": {"enabled": False}}}],
            })
            yield schemathesis.openapi.from_url(url + "/openapi.json", config=config)


api_schema = schemathesis.pytest.from_fixture("web_schema")


@pytest.mark.slow
@api_schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_on_generated_requests(case):
    case.call_and_validate(checks=[not_a_server_error])
