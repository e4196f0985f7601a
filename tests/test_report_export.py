"""Static export in one browser session (cape.report.export.StaticExporter): figures stream
to the browser while the caller draws the next, a failing method hands every figure given
so far to the next one, a cancel tries nothing else, and the report's page links exactly the
files the export wrote.

The methods are stand-ins here (they write small files and need no browser); the real
browsers are tested in tests/test_report.py.
"""

from __future__ import annotations

import re
import threading

import plotly.graph_objects as go
import pytest

from cape.report import build_report, export_static
from cape.report import export as export_mod
from cape.report.export import StaticExporter


def fig(name: str, height: int = 400) -> go.Figure:
    return go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name=name), layout={"height": height, "meta": {"name": name}})


def writer(record: list | None = None, fail_after: int | None = None, message: str = "broken"):
    """A stand-in method: writes NAME.FORMAT (the figure's height as text) for each figure it
    reads, recording the names; with ``fail_after`` it raises after that many figures."""

    def method(figures, folder, formats, browser, progress):
        files = {}
        for i, (name, f) in enumerate(figures):
            if fail_after is not None and i == fail_after:
                (folder / "half-written.tmp").write_text("x")
                raise RuntimeError(message)
            if record is not None:
                record.append(name)
            for fmt in formats:
                path = folder / f"{name}.{fmt}"
                path.write_text(str(f.height))
                files.setdefault(name, {})[fmt] = path
        return files

    return method


def test_figures_reach_the_method_while_the_caller_draws_the_next(tmp_path, monkeypatch):
    seen, first_seen = [], threading.Event()

    def method(figures, folder, formats, browser, progress):
        files = {}
        for name, f in figures:
            seen.append(name)
            first_seen.set()
            files[name] = {fmt: folder / f"{name}.{fmt}" for fmt in formats}
            for p in files[name].values():
                p.write_text(str(f.height))
        return files

    monkeypatch.setitem(export_mod._METHODS, "kaleido", method)
    ex = StaticExporter(tmp_path / "figs")
    ex.add("one", fig("one", 300))
    # the first figure is with the browser before the second exists
    assert first_seen.wait(10) and seen == ["one"]
    f2 = fig("two", 450)
    ex.add("two", f2)
    f2.layout.height = 999                       # the exporter took its own copy
    res = ex.finish()
    assert res.method == "kaleido" and res.attempts == [] and seen == ["one", "two"]
    assert (tmp_path / "figs" / "two.png").read_text() == "450"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["one.png", "one.svg", "two.png", "two.svg"]
    assert ex.seconds is not None and ex.seconds >= 0


def test_a_method_failing_half_way_hands_every_figure_to_the_next(tmp_path, monkeypatch):
    got = []
    monkeypatch.setitem(export_mod._METHODS, "kaleido", writer(fail_after=1, message="tab crashed"))
    monkeypatch.setitem(export_mod._METHODS, "playwright", writer(got))
    figs = {n: fig(n) for n in ("a", "b", "c")}
    res = export_static(figs, tmp_path / "figs")
    assert res.method == "playwright" and res.ok
    assert len(res.attempts) == 1 and res.attempts[0].startswith("kaleido: RuntimeError: tab crashed")
    assert got == ["a", "b", "c"] and set(res.files) == {"a", "b", "c"}
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "a.png", "a.svg", "b.png", "b.svg", "c.png", "c.svg"]          # kaleido's leftovers gone


def test_every_method_failing_leaves_no_file_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setitem(export_mod._METHODS, "kaleido", writer(fail_after=1, message="no tab"))
    monkeypatch.setitem(export_mod._METHODS, "playwright", writer(fail_after=0, message="no page"))
    res = export_static({"a": fig("a"), "b": fig("b")}, tmp_path / "figs")
    assert not res.ok and res.files == {}
    assert res.note == "no static figures: kaleido: RuntimeError: no tab; playwright: RuntimeError: no page"
    assert list((tmp_path / "figs").iterdir()) == []
    # and a working method does say "ok": the stand-in is not what makes it fail
    monkeypatch.setitem(export_mod._METHODS, "kaleido", writer())
    assert export_static({"a": fig("a")}, tmp_path / "figs2").method == "kaleido"


def test_cancel_stops_rendering_and_tries_nothing_else(tmp_path, monkeypatch):
    started, fallback = threading.Event(), []

    def waiting(figures, folder, formats, browser, progress):
        for name, _ in figures:                  # waits for figures that never come
            (folder / f"{name}.png").write_text("x")
            started.set()
        return {}

    monkeypatch.setitem(export_mod._METHODS, "kaleido", waiting)
    monkeypatch.setitem(export_mod._METHODS, "playwright", writer(fallback))
    ex = StaticExporter(tmp_path / "figs")
    ex.add("a", fig("a"))
    assert started.wait(10)
    ex.cancel()
    assert fallback == [] and list((tmp_path / "figs").iterdir()) == []
    assert not ex._thread.is_alive()
    with pytest.raises(RuntimeError, match="already finished"):
        ex.add("b", fig("b"))


def test_unknown_method_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="auto, kaleido or playwright, not 'gif'"):
        StaticExporter(tmp_path / "figs", method="gif")
    with pytest.raises(ValueError, match="not 'gif'"):
        export_static({"a": fig("a")}, tmp_path / "figs", method="gif")


@pytest.mark.slow
def test_report_page_links_exactly_the_files_the_export_wrote(tmp_path, monkeypatch):
    """The page is written while the browser renders (links and note filled in for success);
    it must end up as the export went, either way."""
    monkeypatch.setitem(export_mod._METHODS, "kaleido", writer())
    ok = build_report(tmp_path / "ok", seed=0)
    page = ok.html.read_text(encoding="utf-8")
    assert ok.static_method == "kaleido" and "cape-static-note-" not in page
    assert f"{len(ok.figures)} figures; static figures by kaleido" in page
    links = re.findall(r"<a href='figures/([^']+)'>", page)
    assert sorted(links) == sorted(p.name for p in (ok.out_dir / "figures").iterdir())
    assert len(links) == 2 * len(ok.figures) and all(f.png and f.png.is_file() for f in ok.figures)
    assert {"static export", "static export wait"} <= set(ok.timings)

    monkeypatch.setitem(export_mod._METHODS, "kaleido", writer(fail_after=0, message="no tab"))
    monkeypatch.setitem(export_mod._METHODS, "playwright", writer(fail_after=2, message="no page"))
    bad = build_report(tmp_path / "bad", seed=0)
    page = bad.html.read_text(encoding="utf-8")
    assert bad.static_method is None and "cape-static-note-" not in page
    assert "no static figures: kaleido: RuntimeError: no tab; playwright: RuntimeError: no page" in page
    assert "<a href='figures/" not in page and "Static:" not in page
    assert not (bad.out_dir / "figures").exists() and all(f.png is None for f in bad.figures)
    # the same page as without static export, but for the header's note
    plain = build_report(tmp_path / "plain", seed=0, static=False).html.read_text(encoding="utf-8")
    strip = lambda t: re.sub(r"built \d{4}-\d\d-\d\d \d\d:\d\d [^,]*,|figures; [^<]*<", "", t)  # noqa: E731
    assert strip(page) == strip(plain)
