"""The dashboard's safety rules (:mod:`cape.web.security`), against a real uvicorn server with
raw HTTP, so that the Host, Origin and cookie headers are exactly the ones a browser or an
attacker's page would send:

- a foreign Host header (DNS rebinding) is refused on pages, API and static files;
- a state-changing request (POST, DELETE) from a foreign origin, a ``null`` origin or marked
  cross-site is refused and changes nothing; reads stay open, without CORS grants;
- bound off loopback, every request needs the token (query, cookie or header);
- ``cape serve`` binds 127.0.0.1 by default, and prints the token when bound elsewhere;
- pages carry a Content-Security-Policy.
"""

from __future__ import annotations

import http.client
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("uvicorn", reason="the dashboard needs uvicorn (a dependency of cape)")

from web_server import serve  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
FOREIGN_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "127.0.0.1.evil.example:{port}",
                 "localhost.evil.example:{port}", "", "10.0.0.1:{port}", "[::2]:{port}"]
LOOPBACK_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}", "[::1]:{port}", "127.0.0.1",
                  "localhost"]
#: pages, the API, the schema, CAPE's static files and the bundled Plotly, refused when they must be
PATHS = ["/", "/audit", "/data", "/api/health", "/api/panels", "/api/nc", "/openapi.json", "/static/cape.css",
         "/static/cape.js", "/static/plotly.min.js"]
#: the same kinds, served when they may be ("/data": a page that starts no computation; the
#: overview would start the whole audit in the background)
SERVED_PATHS = ["/data", "/steering", "/api/health", "/api/panels", "/openapi.json", "/static/cape.css",
                "/static/cape.js", "/static/plotly.min.js"]


def call(url: str, method: str = "GET", path: str = "/", *, host: str | None = None,
         headers: dict | None = None, body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One raw HTTP request to the server at ``url``; ``host`` replaces the Host header."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        sent = dict(headers or {})
        if host is not None:
            sent["Host"] = host
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real server on 127.0.0.1 (the default: no token)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAPE_HOME", str(tmp_path_factory.mktemp("cape-home-security")))
        with serve() as url:
            yield url


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    """A server configured as if bound to 0.0.0.0 with a token (the socket itself is on
    127.0.0.1: tests never listen on a public interface)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAPE_HOME", str(tmp_path_factory.mktemp("cape-home-token")))
        with serve(host="0.0.0.0", token=TOKEN) as url:
            yield url


@pytest.fixture
def jobs(server):
    """The server's jobs, emptied before the test (so it can check none was started)."""
    state = server.app.state.cape
    with state.jobs._lock:
        for job in state.jobs._jobs.values():
            job.cancel_event.set()
        state.jobs._jobs.clear()
        state.jobs._by_key.clear()
    state.cache.clear()
    return state.jobs


def started(jobs, name: str = "coupling") -> list:
    """The jobs of analysis ``name`` the server holds (JOB below starts one)."""
    with jobs._lock:
        return [j for j in jobs._jobs.values() if j.name == name]


# ------------------------------------------------------------------------------ Host
@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize("path", PATHS)
def test_foreign_host_is_refused(server, host, path):
    status, headers, body = call(server, path=path, host=host.format(port=server.port),
                                 headers={"Accept": "text/html"})
    assert status == 403, body
    assert b"DNS-rebinding" in body
    assert headers.get("access-control-allow-origin") is None


def test_foreign_host_computes_nothing(server, jobs):
    status, _, _ = call(server, path="/api/nc?resamples=100", host="evil.example")
    assert status == 403
    status, _, _ = call(server, "POST", "/api/jobs", host=f"evil.example:{server.port}",
                        body=b'{"analysis": "nc", "params": {"resamples": 100}}')
    assert status == 403
    assert not server.app.state.cape.cache._items and not started(jobs)


def test_no_host_header_is_refused(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("GET", "/api/health", skip_host=True)
        conn.endheaders()
        status = conn.getresponse().status
    finally:
        conn.close()
    assert 400 <= status < 500


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_names_are_accepted(server, host):
    for path in SERVED_PATHS:
        status, _, body = call(server, path=path, host=host.format(port=server.port))
        assert status == 200, (path, body[:200])


# ------------------------------------------------------------------------------ Origin
JOB = b'{"analysis": "coupling", "params": {"resamples": 100, "seed": 11}}'


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},                   # another port: another origin
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Origin": "http://127.0.0.1:{port}.evil.example"},
    {"Origin": "http://localhost:{port}"},              # not the Host the request was sent to
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
], ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_cross_origin_changes_are_refused(server, jobs, headers):
    headers = {k: v.format(port=server.port) for k, v in headers.items()}
    host = f"127.0.0.1:{server.port}"
    status, _, body = call(server, "POST", "/api/jobs", host=host, headers=headers, body=JOB)
    assert status == 403, body
    assert not started(jobs), "a job was started"
    # nor may a foreign page cancel a job
    status, _, body = call(server, "POST", "/api/jobs", host=host, body=JOB)
    assert status in (200, 202), body
    job_id = started(jobs)[0].id
    status, _, _ = call(server, "DELETE", f"/api/jobs/{job_id}", host=host, headers=headers)
    assert status == 403
    assert not jobs.get(job_id).cancel_event.is_set()


def test_cross_origin_upload_and_steering_are_refused(server, cape_home):
    host = f"127.0.0.1:{server.port}"
    evil = {"Origin": "http://evil.example"}
    csv = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.csv\"\r\n\r\n"
           b"model,hellaswag\r\nm,50\r\n--b\r\nContent-Disposition: form-data; name=\"panel\"\r\n\r\nmine\r\n--b--\r\n")
    status, _, _ = call(server, "POST", "/api/upload", host=host, headers={**evil, "Content-Type":
                                                                            "multipart/form-data; boundary=b"}, body=csv)
    assert status == 403
    assert not cape_home.exists() or not any(cape_home.rglob("*")), "something was stored"
    status, _, _ = call(server, "POST", "/api/steering/load", host=host, headers=evil, body=b'{"model": "x"}')
    assert status == 403
    status, _, body = call(server, "GET", "/api/steering/status", host=host)
    assert b'"state":"none"' in body.replace(b" ", b"")


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:{port}"},
    {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},                          # typed in the address bar
    {},                                                  # not a browser (curl, scripts)
], ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()) or "no-origin")
def test_same_origin_changes_are_accepted(server, jobs, headers):
    headers = {k: v.format(port=server.port) for k, v in headers.items()}
    status, _, body = call(server, "POST", "/api/jobs", host=f"127.0.0.1:{server.port}", headers=headers, body=JOB)
    assert status in (200, 202), body
    assert len(started(jobs)) == 1


def test_localhost_origin_on_localhost_host_is_accepted(server, jobs):
    status, _, body = call(server, "POST", "/api/jobs", host=f"localhost:{server.port}",
                           headers={"Origin": f"http://localhost:{server.port}"}, body=JOB)
    assert status in (200, 202), body


@pytest.mark.parametrize("path", ["/api/health", "/api/panels", "/data"])
def test_reads_from_a_foreign_origin_get_no_cors_grant(server, path):
    status, headers, _ = call(server, path=path, host=f"127.0.0.1:{server.port}",
                              headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert status == 200
    assert not [h for h in headers if h.lower().startswith("access-control-")]


def test_preflight_from_a_foreign_origin_grants_nothing(server):
    status, headers, _ = call(server, "OPTIONS", "/api/jobs", host=f"127.0.0.1:{server.port}",
                              headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "content-type"})
    assert status >= 400
    assert not [h for h in headers if h.lower().startswith("access-control-")]


# ------------------------------------------------------------------------------ headers
def test_pages_carry_a_content_security_policy(server):
    status, headers, body = call(server, path="/data", host=f"127.0.0.1:{server.port}")
    assert status == 200 and b"<html" in body
    csp = headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["script-src"] == ["'self'"], csp          # no inline scripts, no CDN
    assert directives["default-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    for path in ("/api/health", "/static/cape.js"):
        assert "content-security-policy" in call(server, path=path, host=f"127.0.0.1:{server.port}")[1]


# ------------------------------------------------------------------------------ token
def test_token_is_required(token_server):
    host = f"127.0.0.1:{token_server.port}"
    for path in PATHS:
        status, _, body = call(token_server, path=path, host=host)
        assert status == 403, (path, body)
        assert b"token" in body


@pytest.mark.parametrize("how", ["query", "header", "cookie", "bearer"])
def test_wrong_token_is_refused(token_server, how):
    host = f"127.0.0.1:{token_server.port}"
    wrong = TOKEN[:-1] + "x"
    path, headers = {
        "query": (f"/api/health?token={wrong}", {}),
        "header": ("/api/health", {"Authorization": f"token {wrong}"}),
        "cookie": ("/api/health", {"Cookie": f"cape_token={wrong}"}),
        "bearer": ("/api/health", {"Authorization": f"Bearer {wrong}"}),
    }[how]
    status, headers_back, _ = call(token_server, path=path, host=host, headers=headers)
    assert status == 403
    assert "set-cookie" not in headers_back


def test_token_in_the_query_sets_a_cookie_that_works(token_server):
    host = f"127.0.0.1:{token_server.port}"
    status, headers, body = call(token_server, path=f"/data?token={TOKEN}", host=host)
    assert status == 200, body
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"cape_token={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";")[0]
    for path in SERVED_PATHS:
        status, _, body = call(token_server, path=path, host=host, headers={"Cookie": jar})
        assert status == 200, (path, body[:200])


def test_token_in_the_authorization_header_works(token_server):
    host = f"127.0.0.1:{token_server.port}"
    status, _, body = call(token_server, path="/api/health", host=host, headers={"Authorization": f"token {TOKEN}"})
    assert status == 200, body


def test_with_a_token_any_host_may_be_used_but_only_with_the_token(token_server):
    # Bound off loopback, the server is reached by whatever name or address the machine has
    # (as Jupyter with remote access): the token protects it, which a rebinding page lacks.
    status, _, _ = call(token_server, path=f"/api/health?token={TOKEN}", host="192.0.2.2:8000")
    assert status == 200
    status, _, _ = call(token_server, path="/api/health", host="evil.example")
    assert status == 403
    status, _, _ = call(token_server, path="/api/health?token=wrong-token", host="evil.example")
    assert status == 403


def test_token_does_not_lift_the_origin_rule(token_server):
    status, _, _ = call(token_server, "POST", "/api/jobs", host=f"127.0.0.1:{token_server.port}",
                        headers={"Authorization": f"token {TOKEN}", "Origin": "http://evil.example"}, body=JOB)
    assert status == 403
    assert not started(token_server.app.state.cape.jobs)


# ------------------------------------------------------------------------------ cape serve
def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than 127.x, if it has one."""
    candidates = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))              # no packet is sent
        candidates.append(probe.getsockname()[0])
    except OSError:
        pass
    finally:
        probe.close()
    try:
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    return next((a for a in candidates if not a.startswith("127.") and a != "0.0.0.0"), None)


class Served:
    """``cape serve`` in a subprocess; its first lines of output are read as they come."""

    def __init__(self, *args: str, home) -> None:
        env = dict(os.environ, CAPE_HOME=str(home))
        env.pop("CAPE_TOKEN", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "cape.cli", "serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def first_lines(self, until: str, timeout: float = 60) -> list[str]:
        out, deadline = [], time.monotonic() + timeout
        while not any(until in line for line in out):
            try:
                out.append(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"`cape serve` printed no '{until}' in {timeout:.0f} s: {out}") from None
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _url_of(lines: list[str]) -> str:
    line = next(line for line in lines if line.startswith("CAPE dashboard at "))
    return line.split(" at ", 1)[1].strip()


def _wait_until_up(url: str, timeout: float = 30) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens at {url}"
            time.sleep(0.1)


@pytest.mark.slow
def test_cape_serve_off_loopback_prints_a_token_and_requires_it(tmp_path):
    served = Served("--host", "0.0.0.0", "--port", "0", home=tmp_path)
    try:
        lines = served.first_lines("token:")
        url = _url_of(lines)
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.port
        token = parts.query.removeprefix("token=")
        assert len(token) >= 24, url
        assert any(line.startswith(f"token: {token}") for line in lines), lines
        _wait_until_up(url)
        base = f"http://127.0.0.1:{parts.port}"
        assert call(base, path="/api/health")[0] == 403
        assert call(base, path="/api/health?token=not-the-token")[0] == 403
        assert call(base, path=f"/api/health?token={token}")[0] == 200
        assert call(base, path="/api/health", headers={"Authorization": f"token {token}"})[0] == 200
        # it does listen on the other addresses (so the refusal in the default mode below means something)
        other = _non_loopback_address()
        if other is not None:
            status = call(f"http://{other}:{parts.port}", path="/api/health")[0]
            assert status == 403, "reachable off loopback, but not without the token"
    finally:
        served.close()


@pytest.mark.slow
def test_cape_serve_binds_loopback_only_by_default(tmp_path):
    served = Served("--port", "0", home=tmp_path)
    try:
        lines = served.first_lines("CAPE dashboard at")
        url = _url_of(lines)
        parts = urlsplit(url)
        assert url == f"http://127.0.0.1:{parts.port}/", url       # no token on loopback
        assert not any(line.startswith("token:") for line in lines)
        _wait_until_up(url)
        assert call(url, path="/api/health")[0] == 200
        other = _non_loopback_address()
        if other is None:
            pytest.skip("this machine has no non-loopback address to try")
        with pytest.raises(OSError):
            socket.create_connection((other, parts.port), timeout=5).close()
    finally:
        served.close()


def test_cape_serve_refuses_a_short_token(tmp_path):
    from conftest import run_cli

    r = run_cli("serve", "--token", "short", home=tmp_path)
    assert r.returncode != 0
    assert "at least 8 characters" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
