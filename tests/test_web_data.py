"""The dashboard's Data page and upload API (issue 17): uploads go through the importers and
the store exactly as `cape ingest` does; a bad, oversized or empty upload is a clear 4xx and
stores nothing; hostile file names stay in the temporary folder; the page escapes what it shows.

Real files: the lm-eval results under tests/fixtures/lmeval-real (written by other people,
see its README) and, when ../shared/data is present, a published CSV of Ruan et al. (2024).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from cape import api
from cape.web import data as web_data
from cape.web.app import create_app

from conftest import FIXTURES

REAL = FIXTURES / "lmeval-real"
QWEN = REAL / "v0.4_qwen2.5-1.5b_0shot.json"           # lm-eval 0.4, Qwen/Qwen2.5-1.5B, 0 shots
LLAMA = REAL / "v0.3_llama-7B_common_sense_reasoning_0-shot.json"  # lm-eval 0.3, model id a local path
PYTHIA = REAL / "limit10_pythia-14m-deduped_arc_easy_lambada.json"

SMALL_CSV = b"model,family,params,hellaswag,truthfulqa\norg/t-1b,,1B,0.50,0.40\norg/t-3b,,3B,0.60,0.38\n"
BAD_CSV = b"model,params,hellaswag,truthfulqa\norg/a-1b,1B,50,40\norg/a-2b,2B,abc,41\norg/a-3b,3B,60,42\n"


@pytest.fixture
def client():
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def upload_tmp(tmp_path, monkeypatch) -> Path:
    """Temporary folders of the uploads go here, so a test can see what is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _names() -> list[str]:
    return api.list_panels()["name"].tolist()


def _post(client, name: str, content: bytes, url: str = "/api/upload", **fields):
    data = {k: ("true" if v is True else v) for k, v in fields.items()}
    return client.post(url, files={"file": (name, content, "application/octet-stream")}, data=data)


def _stored(panel: str) -> pd.DataFrame:
    cols = ["model", "benchmark", "variant", "value", "stderr", "n_shot", "source", "flags"]
    return api.load_scores(panel)[cols].sort_values(cols[:3]).reset_index(drop=True)


# ----------------------------------------------------------------------------- good uploads
def test_real_lmeval_upload_stores_what_cape_ingest_stores(client, upload_tmp):
    before = _names()
    r = _post(client, QWEN.name, QWEN.read_bytes(), panel="mine")
    assert r.status_code == 200, r.text
    body = r.json()
    read = api.read_results(QWEN)                      # the importer, called directly
    assert body["panel"] == "mine" and body["panel_created"] and not body["dry_run"]
    assert body["models"] == len(read.dataset.models) == 1
    assert body["scores"] == body["scores_added"] == len(read.dataset.scores)
    assert body["formats"] == {QWEN.name: "lm-eval"} and body["files"] == [QWEN.name]
    assert body["unregistered"] and all(v.startswith(QWEN.name) for v in body["unregistered"].values())
    assert not any(str(upload_tmp) in s for s in body["skipped"])     # no temporary path in messages
    # the same rows as `cape ingest` (api.ingest: read_results + Store.ingest) stores from the file
    api.ingest(QWEN, "ref")
    pd.testing.assert_frame_equal(_stored("mine"), _stored("ref"))
    assert _names() == before + ["mine", "ref"]
    assert "mine" in [p["name"] for p in client.get("/api/panels").json()["panels"]]
    page = client.get("/data")
    assert "href='/data?panel=mine'" in page.text and "href='/families?panel=mine'" in page.text
    rows = client.get("/data?panel=mine")
    assert rows.status_code == 200 and "Qwen/Qwen2.5-1.5B" in rows.text
    assert list(upload_tmp.iterdir()) == []                            # temporary folder removed
    again = _post(client, QWEN.name, QWEN.read_bytes(), panel="mine")  # the same file twice: no change
    assert again.status_code == 200 and not again.json()["changed"]
    assert again.json()["scores_unchanged"] == body["scores"]


def test_lmeval_model_field_as_cape_ingest_model(client):
    """A real lm-eval 0.3 file naming a local path: refused without `model`, stored with it."""
    r = _post(client, LLAMA.name, LLAMA.read_bytes(), panel="llama")
    assert r.status_code == 400
    assert LLAMA.name in r.json()["detail"] and "config.model_args" in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "config.model_args"
    assert "llama" not in _names()
    r = _post(client, LLAMA.name, LLAMA.read_bytes(), panel="llama", model="huggyllama/llama-7b",
              family="Llama", kind="base")
    assert r.status_code == 200, r.text
    models = api.load_models("llama")
    assert models["model"].tolist() == ["huggyllama/llama-7b"]
    assert models["family"].tolist() == ["Llama"] and models["kind"].tolist() == ["base"]


def test_small_csv_with_family_and_units(client):
    state = client.app.state.cape
    state.cache.put("some-result", object())
    r = _post(client, "tiny.csv", SMALL_CSV, panel="tiny-panel", family="tiny", units="fraction",
              source="my-run")
    assert r.status_code == 200, r.text
    assert r.json()["models"] == 2 and r.json()["scores_added"] == 4
    assert state.cache.get("some-result") is None                     # cached results invalidated
    wide = api.load_panel("tiny-panel")
    assert wide.loc["org/t-1b", "hellaswag"] == pytest.approx(50.0)   # fractions -> percent
    assert set(wide["family"]) == {"tiny"}
    assert set(api.load_scores("tiny-panel")["source"]) == {"my-run"}
    assert "tiny-panel" in [p["name"] for p in client.get("/api/panels").json()["panels"]]
    assert "tiny-panel" in client.get("/data").text


def test_published_csv_from_shared_data(client, shared_data):
    path = shared_data / "data" / "open-llm-leaderboard" / "base_llm_benchmark_eval_sub_10b.csv"
    r = _post(client, path.name, path.read_bytes(), panel="ruan")
    assert r.status_code == 400 and "Winograd" in r.json()["detail"] and path.name in r.json()["detail"]
    assert "ruan" not in _names()
    r = _post(client, path.name, path.read_bytes(), panel="ruan", skip_unknown=True)
    assert r.status_code == 200, r.text
    read = api.read_results(path, skip_unknown=True)
    assert r.json()["models"] == len(read.dataset.models) and r.json()["scores"] == len(read.dataset.scores)
    assert len(api.load_panel("ruan")) == len(read.dataset.models)


def test_dry_run_stores_nothing(client):
    r = _post(client, "tiny.csv", SMALL_CSV, panel="dry", units="fraction", dry_run=True)
    assert r.status_code == 200 and r.json()["dry_run"] and r.json()["scores_added"] == 4
    assert "dry" not in _names()


# ----------------------------------------------------------------------------- bad uploads
def test_bad_csv_value_in_row_3_is_400_and_stores_nothing(client, upload_tmp):
    before = api.list_panels()
    r = _post(client, "bad.csv", BAD_CSV, panel="bad")
    assert r.status_code == 400
    body = r.json()
    assert body["detail"].startswith("bad.csv, row 3, field 'hellaswag'") and "'abc' is not a number" in body["detail"]
    assert body["errors"] == [{"message": body["detail"], "file": "bad.csv", "row": 3, "field": "hellaswag"}]
    pd.testing.assert_frame_equal(api.list_panels(), before)
    assert list(upload_tmp.iterdir()) == []


@pytest.mark.parametrize("content, words", [
    (b'{"results": {"hellaswag": {"acc,none": 0.5', "truncated JSON"),
    (b"[" * 5000 + b"]" * 5000, "could not read"),          # an importer's RecursionError: still a 400
    (b"\xff\xfe\x00garbage", "not UTF-8"),
])
def test_malformed_json_is_400(client, content, words):
    before = api.list_panels()
    r = _post(client, "results.json", content, panel="broken")
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("results.json") and words in r.json()["detail"]
    pd.testing.assert_frame_equal(api.list_panels(), before)


def test_conflict_is_refused_whole_and_replace_overwrites(client):
    assert _post(client, "tiny.csv", SMALL_CSV, panel="p", units="fraction").status_code == 200
    before = _stored("p")
    changed = SMALL_CSV.replace(b"0.60", b"0.70") + b"org/t-7b,,7B,0.70,0.35\n"  # and a new model
    r = _post(client, "tiny.csv", changed, panel="p", units="fraction")
    assert r.status_code == 400 and "differ" in r.json()["detail"] and "org/t-3b" in r.json()["detail"]
    assert "cape-upload-" not in r.json()["detail"]
    pd.testing.assert_frame_equal(_stored("p"), before)       # all or nothing
    r = _post(client, "tiny.csv", changed, panel="p", units="fraction", replace=True)
    assert r.status_code == 200 and r.json()["scores_replaced"] == 1 and r.json()["models_added"] == 1
    assert api.load_panel("p").loc["org/t-3b", "hellaswag"] == pytest.approx(70.0)


def test_oversized_is_413_and_stores_nothing(client, monkeypatch, upload_tmp):
    monkeypatch.setattr(web_data, "MAX_UPLOAD_BYTES", 1000)
    big = SMALL_CSV + b"".join(b"org/m-%db,,%dB,0.5,0.4\n" % (i, i + 1) for i in range(100))
    assert len(big) > 1000
    r = _post(client, "big.csv", big, panel="big")
    assert r.status_code == 413 and "upload limit of 1000 bytes" in r.json()["detail"]
    assert "cape ingest" in r.json()["detail"]
    assert "big" not in _names() and list(upload_tmp.iterdir()) == []
    # a body streamed without Content-Length is cut off as it arrives
    monkeypatch.setattr(web_data, "FORM_OVERHEAD_BYTES", 100)
    boundary = "xyzzy"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"panel\"\r\n\r\nbig\r\n--{boundary}\r\n"
            "Content-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(50):
            yield big[:200]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/api/upload", content=chunks(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "big" not in _names()
    assert list(upload_tmp.iterdir()) == []


def test_content_length_over_the_real_limit_is_413(client):
    r = client.post("/api/upload", content=b"x" * 16,
                    headers={"content-type": "multipart/form-data; boundary=b",
                             "content-length": str(web_data.MAX_UPLOAD_BYTES + web_data.FORM_OVERHEAD_BYTES + 1)})
    assert r.status_code == 413 and "20 MiB" in r.json()["detail"]


def test_empty_file_is_422(client):
    r = _post(client, "empty.csv", b"", panel="empty")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"] and "empty" in r.json()["detail"][0]["msg"]
    r = _post(client, "blank.csv", b"  \n\n", panel="empty")            # only whitespace: the importer says so
    assert r.status_code == 400 and "blank.csv: the file is empty" in r.json()["detail"]
    assert "empty" not in _names()


@pytest.mark.parametrize("fields, field, words", [
    ({}, "panel", "Field required"),
    ({"panel": "paper-base"}, "panel", "built-in"),
    ({"panel": "../x"}, "panel", "pattern"),
    ({"panel": "ok", "units": "kg"}, "units", "percent"),
    ({"panel": "ok", "kind": "chat"}, "kind", "base"),
    ({"panel": "ok", "skip-unknown": "true"}, "skip-unknown", "not permitted"),
    ({"panel": "ok", "replace": "perhaps"}, "replace", "boolean"),
])
def test_invalid_field_is_422_naming_it(client, fields, field, words):
    r = client.post("/api/upload", files={"file": ("t.csv", SMALL_CSV)}, data=fields)
    assert r.status_code == 422, r.text
    entry = next(e for e in r.json()["detail"] if e["loc"] == ["body", field])
    assert words in entry["msg"]
    assert _names() == api.list_panels()["name"].tolist() and "ok" not in _names()


def test_missing_file_is_422(client):
    r = client.post("/api/upload", data={"panel": "paper-base"})          # urlencoded: no file at all
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["detail"]]
    assert ["body", "panel"] in locs and ["body", "file"] in locs
    r = client.post("/api/upload", json={"panel": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]


@pytest.mark.parametrize("hostile", ["../../evil.csv", "..\\..\\evil.csv", "/etc/evil.csv", ".evil.csv",
                                     "sub/../../evil.csv"])
def test_hostile_file_name_stays_in_the_temporary_folder(client, upload_tmp, tmp_path, monkeypatch, hostile):
    seen: list[Path] = []
    real = api.read_results

    def spy(paths, **kw):
        seen.extend(Path(p) for p in paths)
        assert all(p.is_file() for p in seen)
        return real(paths, **kw)

    monkeypatch.setattr(api, "read_results", spy)
    r = _post(client, hostile, SMALL_CSV, panel="hostile", units="fraction")
    assert r.status_code == 200, r.text
    assert len(seen) == 1 and seen[0].name == "evil.csv"
    assert seen[0].parent.parent == upload_tmp and seen[0].parent.name.startswith("cape-upload-")
    assert list(upload_tmp.iterdir()) == []                            # removed afterwards
    assert not list(tmp_path.rglob("*evil*")) and not (tmp_path.parent / "evil.csv").exists()
    assert set(api.load_scores("hostile")["source"]) == {"file:evil.csv"}


def test_safe_filename():
    assert web_data.safe_filename("../../a.json") == "a.json"
    assert web_data.safe_filename("C:\\Users\\x\\results_2024.json") == "results_2024.json"
    assert web_data.safe_filename("...") == "upload" and web_data.safe_filename(None) == "upload"
    assert web_data.safe_filename("a\x00b<script>.csv") == "a_b_script_.csv"
    long = web_data.safe_filename("x" * 500 + ".parquet")
    assert len(long) == 200 and long.endswith(".parquet")


def test_foreign_origin_is_403(client):
    for url in ("/api/upload", "/data/upload"):
        r = client.post(url, files={"file": ("t.csv", SMALL_CSV)}, data={"panel": "evil", "units": "fraction"},
                        headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "origin" in r.json()["detail"]
    assert "evil" not in _names()
    r = client.post("/data/upload", files={"file": ("t.csv", SMALL_CSV)}, data={"panel": "own", "units": "fraction"},
                    headers={"Origin": "http://127.0.0.1"})                   # the page's own origin
    assert r.status_code == 200 and "own" in _names()


# ----------------------------------------------------------------------------- the page
def test_data_page_lists_panels_and_has_the_upload_form(client):
    r = client.get("/data")
    assert r.status_code == 200 and "href='/data' aria-current='page'" in r.text
    for name in api.list_panels()["name"]:
        assert f"href='/data?panel={name}'" in r.text and f"href='/families?panel={name}'" in r.text
    assert "<table id='panels'>" in r.text and "data-table='panels'" in r.text
    assert "action='/data/upload'" in r.text and "enctype='multipart/form-data'" in r.text
    for f in ("file", "panel", "family", "units", "kind", "source", "model", "skip_unknown", "dry_run"):
        assert f"<label for='f-{f}'>" in r.text and f"id='f-{f}'" in r.text
    assert "20 MiB" in r.text


def test_data_page_panel_rows_filterable(client):
    r = client.get("/data?panel=paper-pythia")
    assert r.status_code == 200
    assert "<table id='panel-rows'>" in r.text
    assert "<input id='filter-panel-rows' class='filter' type='search' data-table='panel-rows'" in r.text
    assert "<label for='filter-panel-rows'>" in r.text
    wide = api.load_panel("paper-pythia")
    assert all(str(m) in r.text for m in wide.index)
    r = client.get("/data?panel=no-such-panel")
    assert r.status_code == 404 and "no panel named" in r.text and "role='alert'" in r.text


def test_script_in_model_and_family_is_escaped(client):
    r = _post(client, PYTHIA.name, PYTHIA.read_bytes(), panel="xss", model="org/<script>alert(1)</script>",
              family="<script>alert(2)</script>")
    assert r.status_code == 200, r.text
    page = client.get("/data?panel=xss")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "org/&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "&lt;script&gt;alert(2)" in page.text
    assert "<script>alert" not in client.get("/data").text


def test_html_form_good_and_bad(client, monkeypatch):
    r = client.post("/data/upload", files={"file": ("tiny.csv", SMALL_CSV)},
                    data={"panel": "form-panel", "units": "fraction", "family": "tiny"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "notice info" in r.text and "Stored" in r.text and "panel form-panel (new)" in r.text
    assert "href='/data?panel=form-panel'" in r.text and "<table id='panel-rows'>" in r.text
    assert "form-panel" in _names()
    before = api.list_panels()
    bad = client.post("/data/upload", files={"file": ("bad.csv", BAD_CSV)}, data={"panel": "form-bad"})
    assert bad.status_code == 400 and "notice error" in bad.text and "role='alert'" in bad.text
    assert "<li>bad.csv, row 3, field &#x27;hellaswag&#x27;: &#x27;abc&#x27; is not a number</li>" in bad.text
    assert "value='form-bad'" in bad.text                                # the form keeps what was typed
    builtin = client.post("/data/upload", files={"file": ("tiny.csv", SMALL_CSV)}, data={"panel": "paper-base"})
    assert builtin.status_code == 422 and "<li>panel: &#x27;paper-base&#x27; is a built-in" in builtin.text
    monkeypatch.setattr(web_data, "MAX_UPLOAD_BYTES", 100)
    big = client.post("/data/upload", files={"file": ("tiny.csv", SMALL_CSV * 3)}, data={"panel": "form-big"})
    assert big.status_code == 413 and "too large" in big.text and "100 bytes" in big.text
    pd.testing.assert_frame_equal(api.list_panels(), before)


def test_formats_api_from_the_importers(client):
    from cape.io.tables import TABLE_SUFFIXES

    body = client.get("/api/data/formats").json()
    assert body["suffixes"] == sorted(TABLE_SUFFIXES)
    assert body["max_upload_bytes"] == web_data.MAX_UPLOAD_BYTES
    assert any("lm-evaluation-harness" in f for f in body["formats"])
    assert any("Epoch AI" in f for f in body["formats"])
    schema = client.get("/openapi.json").json()["paths"]["/api/upload"]["post"]
    assert schema["tags"] == ["data"]
    props = schema["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"file", "panel", "family", "units", "model", "skip_unknown"} <= set(props)


def test_real_server_upload_same_origin_foreign_origin_and_oversized(monkeypatch):
    """Through uvicorn: a browser's same-origin form POST (Origin http://127.0.0.1:PORT) is
    stored, a foreign origin is refused, and an oversized body is answered 413 before it is
    read (the client gets the status, not a broken connection)."""
    import httpx
    from web_server import serve

    with serve() as url:
        ok = httpx.post(url + "/data/upload", files={"file": ("tiny.csv", SMALL_CSV)},
                        data={"panel": "served", "units": "fraction"}, headers={"Origin": url})
        assert ok.status_code == 200 and "panel served (new)" in ok.text
        assert "served" in [p["name"] for p in httpx.get(url + "/api/panels").json()["panels"]]
        foreign = httpx.post(url + "/api/upload", files={"file": ("tiny.csv", SMALL_CSV)},
                             data={"panel": "foreign", "units": "fraction"}, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        monkeypatch.setattr(web_data, "MAX_UPLOAD_BYTES", 1000)
        monkeypatch.setattr(web_data, "FORM_OVERHEAD_BYTES", 100)
        big = httpx.post(url + "/api/upload", files={"file": ("big.csv", SMALL_CSV * 2000)},
                         data={"panel": "big", "units": "fraction"}, headers={"Origin": url})
        assert big.status_code == 413 and "upload limit" in big.json()["detail"]
        assert httpx.get(url + "/api/health").status_code == 200            # still serving
    assert "foreign" not in _names() and "big" not in _names()
