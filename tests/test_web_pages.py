"""The dashboard's analysis pages (cape.web.pages), through the real app with FastAPI's
TestClient: every page renders from the engine's results, bad input is a message in the
page with a 4xx, long analyses show a job, user text stays text.

The browser-level checks (console errors, axe, keyboard, screenshots) are in
tests/test_web_browser.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import cape  # noqa: E402
from cape.web import create_app  # noqa: E402

PAGES = ["/", "/analyze", "/families", "/frontier", "/structure", "/audit"]
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CAPE_HOME", str(tmp_path_factory.mktemp("cape-home")))
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c
    mp.undo()


def _figures(text: str) -> dict[str, dict]:
    """The figures a page carries: {figure id: Plotly JSON}."""
    out = {}
    for fid, body in re.findall(r"<script type='application/json' class='figure-data' data-for='([^']+)'>(.*?)</script>",
                                text, flags=re.S):
        out[fid] = json.loads(body)
    return out


def _values(v) -> list:
    """A Plotly data array from figure JSON: a list, or a typed array {dtype, bdata}."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v or [])


def _wait_jobs(client, text: str, timeout: float = 240) -> None:
    for jid in re.findall(r"class='job' data-job='([0-9a-f]+)'", text):
        end = time.time() + timeout
        while time.time() < end:
            st = client.get(f"/api/jobs/{jid}").json()["status"]
            if st in ("done", "failed", "cancelled"):
                assert st == "done", st
                break
            time.sleep(0.3)


def _page(client, path: str) -> str:
    r = client.get(path, headers=HTML)
    if "class='job'" in r.text:
        _wait_jobs(client, r.text)
        r = client.get(path, headers=HTML)
    assert r.status_code == 200, (path, r.status_code, r.text[-2000:])
    return r.text


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_navigation_and_landmarks(client, path):
    text = _page(client, path)
    assert text.startswith("<!DOCTYPE html>")
    assert "<main id='main'" in text and "<nav aria-label='Pages'>" in text
    assert f"<a href='{path}' aria-current='page'>" in text          # the current page is marked
    assert "<script>" not in text and " onclick=" not in text        # no inline scripts (the CSP forbids them)
    # every input has a label
    for fid in re.findall(r"<(?:input|select) id='([^']+)'", text):
        assert f"<label for='{fid}'>" in text, fid


def test_overview_phase_map_and_nc_come_from_the_engine(client):
    text = _page(client, "/?panel=paper-base")
    figs = _figures(text)
    assert {"phase-map", "nc-bootstrap"} <= set(figs)
    api = client.get("/api/overview", params={"panel": "paper-base"}).json()["result"]
    # every model of the panel is a point of the phase map
    n_points = sum(len(_values(t.get("x"))) for t in figs["phase-map"]["data"] if t.get("mode") == "markers+lines")
    assert n_points == len(api["data"]["frame"])
    # the N_c table shows the engine's paper-protocol estimate
    paper = api["nc"]["paper"]
    assert cape.analysis.results.fmt_num(paper["value"]) in text
    # the audit headline and the replication verdict are there once the job is done
    assert "Audit of" in text and "Verdict on openllm-v1-base" in text


def test_analyze_flow_numbers_equal_the_api(client):
    path = "/analyze?params=7e9&hellaswag=78&truthfulqa=43&panel=paper-base"
    text = _page(client, path)
    api = client.get("/api/phase", params={"params": 7e9, "hellaswag": 78, "truthfulqa": 43}).json()["result"]
    for k in ("p_tax", "p_transition", "p_bonus"):
        assert f"<td>{cape.analysis.results.fmt_num(api[k])}</td>" in text, k
    assert f"most probable phase <span class='verdict'>{api['phase_predictive']}</span>" in text
    # the form keeps the state, so the URL can be shared
    assert "value='7e9'" in text and "value='78'" in text and "value='43'" in text
    # the model is drawn on the phase map
    names = [t.get("name") for t in _figures(text)["phase-map"]["data"]]
    assert "your model" in names
    # the suggestions of cape advise, with their evidence
    adv = client.get("/api/advise", params={"panel": "paper-base", "params": 7e9, "hellaswag": 78,
                                            "truthfulqa": 43}).json()["result"]
    assert "Suggestions (cape advise)" in text
    for lever in adv["table"]:
        assert f"<td>{lever['lever']}</td>" in text


@pytest.mark.parametrize("query,field", [("params=abc&hellaswag=78&truthfulqa=43", "params"),
                                          ("params=7e9&hellaswag=178&truthfulqa=43", "hellaswag"),
                                          ("params=7e9&hellaswag=78&truthfulqa=nan", "truthfulqa")])
def test_bad_form_values_are_a_message_and_a_422(client, query, field):
    r = client.get("/analyze?" + query, headers=HTML)
    assert r.status_code == 422
    assert "role='alert'" in r.text and f"<li>{field}:" in r.text


def test_unknown_panel_or_family_is_a_404_with_a_message(client):
    r = client.get("/families?panel=paper-base&family=NoSuchFamily", headers=HTML)
    assert r.status_code == 404 and "has no family &#x27;NoSuchFamily&#x27;" in r.text
    r = client.get("/frontier?panel=no-such-panel", headers=HTML)
    assert r.status_code == 404 and "no panel named" in r.text
    # and a good family is a 200 (the check above can fail)
    assert client.get("/families?panel=paper-base&family=Pythia", headers=HTML).status_code == 200


def test_families_page_shows_the_familys_r_and_gammas(client):
    text = _page(client, "/families?panel=paper-base&family=Pythia")
    api = client.get("/api/coupling", params={"panel": "paper-base"}).json()["result"]
    row = next(r for r in api["table"] if r["family"] == "Pythia")
    assert f"<td>{cape.analysis.results.fmt_num(row['r'])}</td>" in text
    figs = _figures(text)
    assert {"family-scores", "interval-gammas", "couplings"} <= set(figs)
    gam = client.get("/api/gamma", params={"panel": "paper-base", "family": "Pythia"}).json()["result"]
    n = sum(len(_values(t["x"])) for t in figs["interval-gammas"]["data"] if t.get("mode") == "markers")
    assert n == len(gam["local"]["intervals"]) > 0


def test_frontier_release_h_and_interval(client):
    text = _page(client, "/frontier?swe=60&gpqa=70&lab=NewLab")
    api = client.get("/api/release", params={"swe": 60, "gpqa": 70, "lab": "NewLab"}).json()["result"]
    fmt = cape.analysis.results.fmt_num
    assert f"<td>{fmt(api['h'])}</td>" in text and f"<td>{fmt(api['pi'][0])}</td>" in text
    figs = _figures(text)
    assert {"frontier-fit", "hfield-labs", "lab-trajectories", "saturation"} <= set(figs)
    names = [t.get("name") for t in figs["frontier-fit"]["data"]]
    assert "your release" in names
    # without a release there is no star (the check above can fail)
    assert "your release" not in [t.get("name") for t in _figures(_page(client, "/frontier"))["frontier-fit"]["data"]]


def test_structure_and_audit_pages(client):
    text = _page(client, "/structure?family=Pythia")
    assert {"eigen-spectra", "width-null", "dynamics-crossval"} <= set(_figures(text))
    assert "Pythia predicted from its smallest model" in text
    text = _page(client, "/audit")
    audit = client.get("/api/audit").json()["result"]
    assert len(re.findall(r"<tr><td>A\d+</td>", text)) == sum(1 for r in audit["table"] if r["id"].startswith("A"))
    assert "<input id='filter-audit' class='filter' data-table='audit' type='search'>" in text


def test_a_long_analysis_shows_progress_then_the_result(client):
    # a fresh seed is not cached: the page answers at once with a job block
    r = client.get("/structure?panel=paper-base&dynamics_panel=paper-base", headers=HTML)
    assert r.status_code == 200
    jobs = re.findall(r"class='job' data-job='([0-9a-f]+)'", r.text)
    assert jobs and "<progress" in r.text and "class='cancel'" in r.text
    _wait_jobs(client, r.text)
    again = client.get("/structure?panel=paper-base&dynamics_panel=paper-base", headers=HTML)
    assert "class='job'" not in again.text and "dynamics-crossval" in again.text


def test_user_text_is_data_in_pages_and_figures(client, tmp_path):
    evil_family = "<a href=https://evil.example>fam</a>"
    evil_model = "org/m&x>y"           # the importers refuse model ids that are markup; '>' and '&' pass
    csv = tmp_path / "evil.csv"
    rows = ["model,family,params,hellaswag,truthfulqa"]
    for i, (p, h, t) in enumerate([("1e8", 30, 45), ("4e8", 40, 43), ("1e9", 50, 40), ("3e9", 60, 42)]):
        rows.append(f"\"{evil_model}{i}\",\"{evil_family}\",{p},{h},{t}")
    csv.write_text("\n".join(rows) + "\n")
    cape.ingest(csv, panel="evil")
    try:
        text = _page(client, "/families?panel=evil")
        assert "<script>alert" not in text and "<a href=https://evil.example>" not in text
        assert "org/m&amp;x&gt;y0" in text                                   # shown as text in the tables
        assert "&lt;a href=https://evil.example&gt;fam&lt;/a&gt;" in text
        figs = _figures(text)
        for fig in figs.values():                                            # no markup reaches Plotly
            assert "<a href" not in json.dumps(fig["data"]), fig["layout"].get("meta")
        assert any("&lt;a href" in json.dumps(t.get("customdata")) or "&lt;a href" in str(t.get("name"))
                   for f in figs.values() for t in f["data"])
        title = re.search(r"<title>(.*?)</title>", text).group(1)
        assert "<" not in title
    finally:
        cape.delete_panel("evil")


def test_static_files_and_plotly_are_served_locally(client):
    r = client.get("/static/plotly.min.js")
    assert r.status_code == 200 and len(r.content) > 1_000_000 and "javascript" in r.headers["content-type"]
    for name in ("cape.js", "cape.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    page = client.get("/", headers=HTML)
    assert "default-src 'self'" in page.headers["content-security-policy"]
    srcs = re.findall(r"<script[^>]* src='([^']+)'", page.text) + re.findall(r"<link[^>]* href='([^']+)'", page.text)
    assert srcs and all(s.startswith("/") or s.startswith("data:") for s in srcs)


def test_a_finished_page_is_served_from_the_cache_until_an_upload(client):
    path = "/frontier?subset=core"
    first = client.get(path, headers=HTML)
    assert first.status_code == 200
    state = client.app.state.cape
    from cape.web.state import store_version

    key = f"page:/frontier?subset=core|{store_version()}"
    assert state.cache.get(key) == first.text
    state.cache.put(key, "<!DOCTYPE html><p>from the cache</p>")        # the cached copy is what is served
    assert client.get(path, headers=HTML).text == "<!DOCTYPE html><p>from the cache</p>"
    state.invalidate()                                                   # as an upload does
    assert client.get(path, headers=HTML).text == first.text
    # a page with an error is not kept
    assert client.get("/frontier?panel=nope", headers=HTML).status_code == 404
    assert state.cache.get(f"page:/frontier?panel=nope|{store_version()}") is None


def test_a_cape_ingest_outside_the_dashboard_is_seen(client, tmp_path):
    """Results of a stored panel are keyed by the store's version: reads hit the cache, and
    new data ingested from a terminal is a new computation with the new models."""
    rows = [("1e8", 30, 45), ("4e8", 40, 43), ("1e9", 50, 40), ("3e9", 60, 42)]
    first = tmp_path / "first.csv"
    first.write_text("model,family,params,hellaswag,truthfulqa\n"
                     + "".join(f"org/a-{i},fa,{p},{h},{t}\n" for i, (p, h, t) in enumerate(rows)))
    cape.ingest(first, panel="outside")
    try:
        one = client.get("/api/coupling", params={"panel": "outside", "resamples": 200}).json()
        again = client.get("/api/coupling", params={"panel": "outside", "resamples": 200}).json()
        assert not one["cached"] and again["cached"]                    # reading does not change the store
        assert [r["family"] for r in one["result"]["table"]] == ["fa"]
        second = tmp_path / "second.csv"
        second.write_text("model,family,params,hellaswag,truthfulqa\n"
                          + "".join(f"org/b-{i},fb,{p},{h + 1},{t - 1}\n" for i, (p, h, t) in enumerate(rows)))
        cape.ingest(second, panel="outside")                              # as `cape ingest` in a terminal
        after = client.get("/api/coupling", params={"panel": "outside", "resamples": 200}).json()
        assert not after["cached"]
        assert sorted(r["family"] for r in after["result"]["table"]) == ["fa", "fb"]
        assert "fb" in client.get("/families?panel=outside&family=fb", headers=HTML).text
    finally:
        cape.delete_panel("outside")


def test_analyze_against_a_panel_too_small_to_calibrate(client, tmp_path):
    csv = tmp_path / "small.csv"
    csv.write_text("model,family,params,hellaswag,truthfulqa\n"
                   + "".join(f"org/s-{i},fam{i % 2},{p},{h},{t}\n" for i, (p, h, t) in
                             enumerate([("1e8", 30, 45), ("4e8", 40, 43), ("1e9", 50, 40), ("3e9", 60, 42),
                                        ("2e8", 33, 44), ("8e8", 45, 41), ("2e9", 55, 43)])))
    cape.ingest(csv, panel="small-cal")
    try:
        r = client.get("/api/phase", params={"params": 7e9, "hellaswag": 78, "truthfulqa": 43, "panel": "small-cal"})
        assert r.status_code in (200, 400), r.text          # never a 500
        if r.status_code == 200:     # the calibration without an interval says so instead of failing
            assert "no interval" in json.dumps(r.json()["result"]) or "undefined" in json.dumps(r.json()["result"])
        page = client.get("/analyze?params=7e9&hellaswag=78&truthfulqa=43&panel=small-cal", headers=HTML)
        assert page.status_code in (200, 400)
    finally:
        cape.delete_panel("small-cal")
