"""Static export of figures to PNG and SVG, offline.

Two ways, tried in this order (``method="auto"``):

``kaleido``     kaleido >= 1.0 drives a Chrome/Chromium through choreographer. CAPE hands
                it the browser explicitly (see :func:`find_browser`), the plotly.js that
                ships with plotly.py, and no MathJax, so nothing is fetched from a network.
``playwright``  the fallback: Playwright launches the same browser headless, loads a page
                holding plotly.js inline and asks ``Plotly.toImage`` for each PNG and SVG.
                Needs ``pip install playwright`` (the ``test`` extra has it); Playwright's
                own browser download is never needed, because the system browser is used.

Both need a Chromium-family browser: Debian's ``chromium`` package (``scripts/setup-dev.sh``
installs it), or any browser named by ``$BROWSER_PATH`` (the variable choreographer reads).
If neither way works the report is still written, without static files, and
:class:`StaticExport` says why.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

__all__ = ["BROWSER_NAMES", "FORMATS", "WIDTH", "StaticExport", "find_browser", "plotly_js_path",
           "export_static"]

#: Executable names searched on PATH, in order, when $BROWSER_PATH is not set.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FORMATS = ("png", "svg")
#: Width in CSS pixels of a static figure (its height is the figure's own).
WIDTH = 1100
#: PNG pixel density: 2 gives sharp images on high-density screens and in print.
PNG_SCALE = 2
#: Seconds a browser may take to render one image before export gives up.
RENDER_TIMEOUT_S = 90


@dataclass
class StaticExport:
    """What static export did: the method used (None when none worked), the files written
    (name -> {format: path}) and the reason of every failed attempt."""

    method: str | None
    files: dict[str, dict[str, Path]] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)
    browser: str | None = None

    @property
    def ok(self) -> bool:
        return self.method is not None

    @property
    def note(self) -> str:
        if self.ok:
            return f"static figures by {self.method} ({self.browser or 'browser found by kaleido'})"
        return "no static figures: " + "; ".join(self.attempts or ["not attempted"])


def find_browser() -> str | None:
    """The Chromium-family browser to render with: $BROWSER_PATH if set (choreographer's
    own override), else the first of :data:`BROWSER_NAMES` on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def plotly_js_path() -> Path:
    """The plotly.js bundled with plotly.py (what the report embeds and the export uses)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _jobs(figures: Mapping[str, go.Figure], folder: Path, formats: Sequence[str]):
    for name, fig in figures.items():
        height = int(fig.layout.height or 520)
        for fmt in formats:
            yield name, fmt, folder / f"{name}.{fmt}", height


def _kaleido(figures: Mapping[str, go.Figure], folder: Path, formats: Sequence[str], browser: str | None,
             progress: Callable[[int, int], None] | None) -> dict[str, dict[str, Path]]:
    import kaleido

    kopts = {"mathjax": False, "plotlyjs": plotly_js_path(), "n": min(4, os.cpu_count() or 1),
             "timeout": RENDER_TIMEOUT_S}
    if browser:
        kopts["path"] = browser
    specs, files = [], {}
    for name, fmt, path, height in _jobs(figures, folder, formats):
        specs.append({"fig": figures[name], "path": path,
                      "opts": {"format": fmt, "width": WIDTH, "height": height,
                               "scale": PNG_SCALE if fmt == "png" else 1}})
        files.setdefault(name, {})[fmt] = path
    errors = kaleido.write_fig_from_object_sync(specs, kopts=kopts)
    if errors:
        raise RuntimeError("; ".join(str(e) for e in errors))
    if progress:
        progress(len(specs), len(specs))
    return files


_PAGE = "<!DOCTYPE html><html><head><meta charset='utf-8'><script>{js}</script></head><body></body></html>"


def _playwright(figures: Mapping[str, go.Figure], folder: Path, formats: Sequence[str], browser: str | None,
                progress: Callable[[int, int], None] | None) -> dict[str, dict[str, Path]]:
    from playwright.sync_api import sync_playwright

    jobs = list(_jobs(figures, folder, formats))
    files: dict[str, dict[str, Path]] = {}
    with sync_playwright() as p:
        kw = {"args": ["--no-sandbox"]}
        if browser:
            kw["executable_path"] = browser
        b = p.chromium.launch(**kw)
        try:
            page = b.new_page()
            page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(("data:", "about:"))
                       else route.continue_())
            page.set_content(_PAGE.format(js=plotly_js_path().read_text(encoding="utf-8")))
            for i, (name, fmt, path, height) in enumerate(jobs):
                url = page.evaluate(
                    "([fig, opts]) => Plotly.toImage(fig, opts)",
                    [json.loads(figures[name].to_json()),
                     {"format": fmt, "width": WIDTH, "height": height, "scale": PNG_SCALE if fmt == "png" else 1}])
                head, _, body = url.partition(",")
                data = base64.b64decode(body) if head.endswith(";base64") else urllib.parse.unquote(body).encode()
                path.write_bytes(data)
                files.setdefault(name, {})[fmt] = path
                if progress:
                    progress(i + 1, len(jobs))
        finally:
            b.close()
    return files


_METHODS = {"kaleido": _kaleido, "playwright": _playwright}


def export_static(figures: Mapping[str, go.Figure], folder: str | Path, *, method: str = "auto",
                  formats: Sequence[str] = FORMATS,
                  progress: Callable[[int, int], None] | None = None) -> StaticExport:
    """Write ``folder/NAME.png`` and ``folder/NAME.svg`` for every figure. ``method`` is
    ``auto`` (kaleido, then Playwright), ``kaleido`` or ``playwright``. Never raises for a
    missing browser or package: the result lists what was tried and why it failed."""
    if method not in ("auto", *_METHODS):
        raise ValueError(f"static export method is auto, kaleido or playwright, not {method!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    browser = find_browser()
    attempts = []
    for name in (_METHODS if method == "auto" else [method]):
        try:
            # in a worker thread: both run their own event loop, which cannot nest in a caller's
            # (a Jupyter kernel runs one)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                files = pool.submit(_METHODS[name], figures, folder, formats, browser, progress).result()
        except Exception as exc:  # noqa: BLE001 - any failure moves on to the next method
            attempts.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            for f in folder.iterdir():
                f.unlink()
            continue
        return StaticExport(name, files, attempts, browser)
    if browser is None:
        attempts.append("no Chromium-family browser found (install Debian's chromium, or set BROWSER_PATH)")
    return StaticExport(None, {}, attempts, browser)
