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

All figures go through ONE browser session (one page, plotly.js loaded once), started in
a thread of its own before the figures exist (:class:`StaticExporter`): the browser starts
while the caller computes and renders each figure while the caller draws the next.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

__all__ = ["BROWSER_NAMES", "FORMATS", "WIDTH", "StaticExport", "StaticExporter", "find_browser",
           "plotly_js_path", "export_static"]

#: Executable names searched on PATH, in order, when $BROWSER_PATH is not set.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FORMATS = ("png", "svg")
#: Width in CSS pixels of a static figure (its height is the figure's own).
WIDTH = 1100
#: PNG pixel density: 2 gives sharp images on high-density screens and in print.
PNG_SCALE = 2
#: Seconds a browser may take to render one image before export gives up.
RENDER_TIMEOUT_S = 90
#: Browser tabs kaleido renders in at once (each loads plotly.js, about a second of CPU).
TABS = 1


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


class _Figure:
    """A figure as the browser gets it: its plain dict (taken once, so the caller may go on
    using the figure object) and its height."""

    __slots__ = ("data", "height")

    def __init__(self, fig: go.Figure):
        self.data = fig.to_dict()
        self.height = int(fig.layout.height or 520)


class _Aborted(Exception):
    """The caller gave up (its own work failed): stop rendering, try nothing else."""


class _FigureStream:
    """Figures as the caller draws them. Each method reads them through :meth:`replay`: the
    figures received so far, then each new one as it arrives, until :meth:`close`; a fallback
    method replays them from the first."""

    def __init__(self) -> None:
        self._items: list[tuple[str, _Figure]] = []
        self._closed = self._aborted = False
        self._cond = threading.Condition()

    def put(self, name: str, fig: _Figure) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("static export already finished")
            self._items.append((name, fig))
            self._cond.notify_all()

    def close(self, *, abort: bool = False) -> None:
        with self._cond:
            self._closed = True
            self._aborted = self._aborted or abort
            self._cond.notify_all()

    @property
    def aborted(self) -> bool:
        return self._aborted

    def size(self) -> int:
        return len(self._items)

    def replay(self) -> Iterator[tuple[str, _Figure]]:
        i = 0
        while True:
            with self._cond:
                while i >= len(self._items) and not self._closed:
                    self._cond.wait()
                if self._aborted:
                    raise _Aborted("static export cancelled")
                if i >= len(self._items):
                    return
                item = self._items[i]
            i += 1
            yield item


def _opts(fmt: str, height: int) -> dict:
    return {"format": fmt, "width": WIDTH, "height": height, "scale": PNG_SCALE if fmt == "png" else 1}


def _one_page_kaleido(kaleido):
    """kaleido's browser class, reusing each tab for the next figure: kaleido reloads the page
    (and with it all of plotly.js) after every image, which costs more than most images do;
    ``Plotly.toImage`` plots into a div of its own and removes it, so the page stays clean.
    Only where this kaleido has the hook; otherwise kaleido as it is (slower, same files)."""
    base = kaleido.Kaleido
    if not (callable(getattr(base, "_return_kaleido_tab", None)) and callable(getattr(base, "_get_kaleido_tab", None))):
        return base

    class OnePageKaleido(base):
        async def _return_kaleido_tab(self, tab) -> None:
            ready = getattr(self, "tabs_ready", None)
            if ready is None:                      # not the kaleido this was written for
                return await super()._return_kaleido_tab(tab)
            await ready.put(tab)

    return OnePageKaleido


def _kaleido(figures: Iterable[tuple[str, _Figure]], folder: Path, formats: Sequence[str], browser: str | None,
             progress: Callable[[int, int], None] | None) -> dict[str, dict[str, Path]]:
    import asyncio

    import kaleido

    kopts = {"mathjax": False, "plotlyjs": plotly_js_path(), "n": TABS, "timeout": RENDER_TIMEOUT_S}
    if browser:
        kopts["path"] = browser
    files: dict[str, dict[str, Path]] = {}
    count = [0]

    async def specs():
        it = iter(figures)
        while True:
            # the next figure may not be drawn yet: wait for it off the event loop, which
            # renders the figures already given meanwhile
            item = await asyncio.to_thread(next, it, None)
            if item is None:
                return
            name, fig = item
            for fmt in formats:
                path = folder / f"{name}.{fmt}"
                files.setdefault(name, {})[fmt] = path
                count[0] += 1
                yield {"fig": fig.data, "path": path, "opts": _opts(fmt, fig.height)}

    async def run():
        async with _one_page_kaleido(kaleido)(**kopts) as k:
            return await k.write_fig_from_object(specs())

    errors = asyncio.run(run())
    if errors:
        raise RuntimeError("; ".join(str(e) for e in errors))
    if progress:
        progress(count[0], count[0])
    return files


_PAGE = "<!DOCTYPE html><html><head><meta charset='utf-8'><script>{js}</script></head><body></body></html>"
#: Both formats of one figure in one call (the figure crosses to the browser once).
_TO_IMAGES = ("async ([fig, opts]) => { const out = []; "
              "for (const o of opts) out.push(await Plotly.toImage(fig, o)); return out; }")


def _playwright(figures: Iterable[tuple[str, _Figure]], folder: Path, formats: Sequence[str], browser: str | None,
                progress: Callable[[int, int], None] | None) -> dict[str, dict[str, Path]]:
    import plotly.io as pio
    from playwright.sync_api import sync_playwright

    files: dict[str, dict[str, Path]] = {}
    done = 0
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
            for name, fig in figures:
                urls = page.evaluate(_TO_IMAGES, [json.loads(pio.to_json(fig.data, validate=False)),
                                                  [_opts(fmt, fig.height) for fmt in formats]])
                for fmt, url in zip(formats, urls):
                    head, _, body = url.partition(",")
                    data = base64.b64decode(body) if head.endswith(";base64") else urllib.parse.unquote(body).encode()
                    path = folder / f"{name}.{fmt}"
                    path.write_bytes(data)
                    files.setdefault(name, {})[fmt] = path
                    done += 1
                    if progress:
                        progress(done, done)
        finally:
            b.close()
    return files


_METHODS = {"kaleido": _kaleido, "playwright": _playwright}


class StaticExporter:
    """One browser session for many figures, started before the figures exist.

    The browser starts and loads plotly.js in a thread of its own as soon as the exporter is
    made, so it does while the caller computes; each figure given to :meth:`add` is
    rendered while the caller draws the next; :meth:`finish` waits for the last file and says
    what was done (:class:`StaticExport`). Methods are tried as by :func:`export_static`: a
    method that fails leaves no file behind and the next one renders every figure given so far
    and the rest. :meth:`cancel` stops it (nothing else is tried) and waits for the browser
    to close, e.g. before the caller removes ``folder``.

    >>> ex = StaticExporter("figures")                    # doctest: +SKIP
    >>> ex.add("couplings", fig)                          # doctest: +SKIP
    >>> ex.finish().files["couplings"]["png"]             # doctest: +SKIP
    """

    def __init__(self, folder: str | Path, *, method: str = "auto", formats: Sequence[str] = FORMATS,
                 progress: Callable[[int, int], None] | None = None):
        if method not in ("auto", *_METHODS):
            raise ValueError(f"static export method is auto, kaleido or playwright, not {method!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.method, self.formats, self._progress = method, tuple(formats), progress
        self._stream = _FigureStream()
        self._result: StaticExport | None = None
        self.started = time.perf_counter()
        #: Seconds from the start to the last file (or the last failure).
        self.seconds: float | None = None
        # a thread of its own: both methods run their own event loop, which cannot nest in a
        # caller's (a Jupyter kernel runs one)
        self._thread = threading.Thread(target=self._run, name="cape-static-export", daemon=True)
        self._thread.start()

    def add(self, name: str, fig: go.Figure) -> None:
        """Render ``fig`` to ``folder/NAME.png`` and ``.svg`` (it is copied now: the caller
        may go on using it)."""
        self._stream.put(name, _Figure(fig))

    def finish(self) -> StaticExport:
        """No more figures: wait for the files and say how it went."""
        self._stream.close()
        self._thread.join()
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        """Stop rendering, try no other method, and wait for the browser to close."""
        self._stream.close(abort=True)
        self._thread.join()

    def _clear(self) -> None:
        if self.folder.is_dir():                   # the caller may have removed it after a cancel
            for f in self.folder.iterdir():
                f.unlink(missing_ok=True)

    def _run(self) -> None:
        browser = attempts = None
        try:
            browser = find_browser()
            attempts = []
            # a method knows the images done, the stream how many figures there are so far
            progress = None if self._progress is None else (
                lambda done, _total: self._progress(done, max(done, len(self.formats) * self._stream.size())))
            for name in (_METHODS if self.method == "auto" else [self.method]):
                try:
                    files = _METHODS[name](self._stream.replay(), self.folder, self.formats, browser, progress)
                except Exception as exc:  # noqa: BLE001 - any failure moves on to the next method
                    if self._stream.aborted:
                        attempts.append("static export cancelled")
                        self._clear()
                        break
                    attempts.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
                    self._clear()
                    continue
                self._result = StaticExport(name, files, attempts, browser)
                return
            if browser is None:
                attempts.append("no Chromium-family browser found (install Debian's chromium, or set BROWSER_PATH)")
        except BaseException as exc:  # noqa: BLE001 - the caller must always get an answer
            attempts = [*(attempts or []), f"static export: {type(exc).__name__}: {exc}"]
        finally:
            self.seconds = time.perf_counter() - self.started
            if self._result is None:
                self._result = StaticExport(None, {}, attempts or [], browser)


def export_static(figures: Mapping[str, go.Figure], folder: str | Path, *, method: str = "auto",
                  formats: Sequence[str] = FORMATS,
                  progress: Callable[[int, int], None] | None = None) -> StaticExport:
    """Write ``folder/NAME.png`` and ``folder/NAME.svg`` for every figure, all in one browser
    session. ``method`` is ``auto`` (kaleido, then Playwright), ``kaleido`` or ``playwright``.
    Never raises for a missing browser or package: the result lists what was tried and why it
    failed. (:class:`StaticExporter` does the same for figures given one at a time.)"""
    ex = StaticExporter(folder, method=method, formats=formats, progress=progress)
    try:
        for name, fig in figures.items():
            ex.add(name, fig)
    except BaseException:
        ex.cancel()
        raise
    return ex.finish()
