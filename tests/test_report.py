"""The shareable report (cape.report): real analyses on the bundled panels, a real Chromium
(Debian's, driven by kaleido and by Playwright), real files.

Browser tests are marked slow; they need `chromium` on PATH and the `playwright` package
(scripts/setup-dev.sh installs both; under CI their absence is a failure, not a skip).
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from cape.analysis import running_coupling, width_normalization
from cape.analysis.results import Result
from cape.errors import CapeError
from cape.report import build_report, export_static, figures
from cape.report import export as export_mod

from browser_tools import need_browser, need_playwright
from conftest import cached_panel, run_cli

#: Figures every report has (paper A 6, dynamics 2, paper B 5).
BASE_FIGURES = {"phase-map", "couplings", "running-coupling", "nc-bootstrap", "width-null", "eigen-spectra",
                "dynamics-crossval", "dynamics-paper-protocol", "frontier-fit", "hfield-labs",
                "lab-trajectories", "saturation", "predictions"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------------------------ stand-ins
@dataclass
class StandInAudit:
    """The audit's interface: an object with ``.table``."""

    table: pd.DataFrame


def stand_in_audit() -> StandInAudit:
    verdicts = ["reproduced", "reproduced but fragile", "not reproduced", "not computable", "not computed yet"]
    return StandInAudit(pd.DataFrame({
        "id": [f"Z{i}" for i in range(1, 6)],
        "claim": [f"Stand-in claim number {i} about quokkas" for i in range(1, 6)],
        "published": ["r = -0.5", "N_c = 1B", "5 of 5", "10:1", "60%"],
        "paper": ["-0.51", "1.1B", "4 of 5", None, None],
        "sound": ["-0.49", "0.2B-9B", "4 of 5", None, None],
        "verdict": verdicts,
        "reason": [f"stand-in reason {v}" for v in verdicts]}))


@dataclass
class StandInReplication(Result):
    panel: str
    families: pd.DataFrame
    verdict: str

    def summary(self) -> str:
        return f"Stand-in replication on {self.panel}: the picture {self.verdict} in 2 of 3 families"


def stand_in_replication() -> StandInReplication:
    return StandInReplication("openllm-v1-base", pd.DataFrame({
        "family": ["Wombat-family", "Numbat-family", "Bilby-family"], "n": [5, 4, 6], "r": [-0.91, -0.62, 0.33]}),
        "holds")


@dataclass
class StandInSteering(Result):
    table: pd.DataFrame

    def summary(self) -> str:
        return "Stand-in steering of a platypus model: 3 of 14 prompts changed"


# ------------------------------------------------------------------------------ helpers


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_root(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG_NS}svg", f"{path.name}: root is {root.tag}"
    return root


def svg_text(root: ET.Element) -> str:
    return " ".join(t for el in root.iter() for t in (el.text, el.tail) if t)


_COLOURS_JS = """async (b64) => {
  const bin = atob(b64); const arr = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) arr[i] = bin.charCodeAt(i);
  const bmp = await createImageBitmap(new Blob([arr], {type: 'image/png'}));
  const c = new OffscreenCanvas(bmp.width, bmp.height); const ctx = c.getContext('2d');
  ctx.drawImage(bmp, 0, 0);
  const d = ctx.getImageData(0, 0, bmp.width, bmp.height).data; const s = new Set();
  for (let i = 0; i < d.length; i += 4) s.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  return [bmp.width, bmp.height, s.size];
}"""


def distinct_colours(page, png: bytes) -> tuple[int, int, int]:
    """(width, height, number of distinct RGB colours) of a PNG, decoded by the browser."""
    return tuple(page.evaluate(_COLOURS_JS, base64.b64encode(png).decode()))


def strip_build_time(text: str) -> str:
    return re.sub(r"built \d{4}-\d\d-\d\d \d\d:\d\d [^,]*,", "built", text)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One report with static files (kaleido) and the audit and replication stand-ins."""
    need_browser()
    out = tmp_path_factory.mktemp("full") / "report"
    steps = []
    res = build_report(out, seed=0, audit=stand_in_audit(), replication=stand_in_replication(),
                       progress=lambda d, t: steps.append((d, t)))
    return res, steps


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """A report without static files, nothing optional given."""
    return build_report(tmp_path_factory.mktemp("quick") / "report", seed=0, static=False)


# ------------------------------------------------------------------------------ the page, fast
def test_page_without_static_files_has_every_figure_and_the_missing_notices(quick_report):
    res = quick_report
    text = res.html.read_text(encoding="utf-8")
    assert {f.name for f in res.figures} == BASE_FIGURES
    assert text.count('class="plotly-graph-div"') == len(BASE_FIGURES)
    for name in BASE_FIGURES:
        assert f'id="fig-{name}"' in text
    assert not (res.out_dir / "figures").exists() and res.static_method is None
    assert res.missing == ["audit", "replication", "steering"]
    for section in ("Claims audit", "Replication", "Steering", "Internal coupling"):
        assert section in text
    assert text.count("Not computed: run") == 4 and "<code>cape steer internals --model PATH</code>" in text
    assert "<code>cape audit</code>" in text and "its replication section" in text
    assert "not computed yet" in text
    # offline: plotly.js inline, no external script or stylesheet
    assert "<script src=" not in text
    assert not re.search(r"<(script|link)[^>]+(src|href)=['\"]https?:", text)
    assert len(text) > 4_000_000  # plotly.js itself is in the page


def test_report_result_json_and_summary(quick_report):
    d = quick_report.to_dict()
    json.dumps(d)
    assert d["html"].endswith("report.html") and len(d["figures"]) == len(BASE_FIGURES)
    assert d["timings"]["total"] > 0
    assert "13 figures" in quick_report.summary()


def test_same_seed_same_report_other_seed_differs(tmp_path):
    a = build_report(tmp_path / "a", seed=3, static=False).html.read_text(encoding="utf-8")
    again = build_report(tmp_path / "a", seed=3, static=False)          # replaces the earlier report
    b = again.html.read_text(encoding="utf-8")
    c = build_report(tmp_path / "c", seed=4, static=False).html.read_text(encoding="utf-8")
    assert strip_build_time(a) == strip_build_time(b)
    assert strip_build_time(a) != strip_build_time(c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c"]       # no temporary folders left


def test_steering_result_becomes_a_figure(tmp_path):
    st = StandInSteering(pd.DataFrame({"prompt": ["p1", "p2"], "changed": [True, False]}))
    res = build_report(tmp_path / "r", seed=0, static=False, steering=st)
    text = res.html.read_text(encoding="utf-8")
    assert "steering" in {f.name for f in res.figures} and 'id="fig-steering"' in text
    assert "platypus" in text and res.missing == ["audit", "replication"]


def test_advice_results_are_shown_after_the_replication(tmp_path):
    from cape.analysis.advise import advise

    adv = advise(cached_panel("openllm-v1-base"), family="Pythia", n_resamples=200, seed=0)
    res = build_report(tmp_path / "r", seed=0, static=False, advice=[adv])
    text = res.html.read_text(encoding="utf-8")
    assert f"Intervention suggestions: {adv.target}" in text
    assert text.index(f"Intervention suggestions: {adv.target}") > text.index("id='section-replication'")
    assert adv.summary().splitlines()[1].split(":")[0] in text           # the summary is on the page
    plain = build_report(tmp_path / "p", seed=0, static=False).html.read_text(encoding="utf-8")
    assert "Intervention suggestions:" not in plain


def test_cli_report_advise_option(tmp_path):
    r = run_cli("report", "--out", str(tmp_path / "rep"), "--no-static", "--no-audit", "--advise", "Pythia", "--json")
    assert r.returncode == 0, r.stderr
    assert "Intervention suggestions: Pythia" in Path(json.loads(r.stdout)["html"]).read_text(encoding="utf-8")
    r = run_cli("report", "--out", str(tmp_path / "rep2"), "--no-static", "--no-audit", "--advise", "Nope")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Nope" in r.stderr
    assert not (tmp_path / "rep2").exists()


# ------------------------------------------------------------------------------ errors, atomicity
def test_unwritable_folder_is_a_cape_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "report"
    with pytest.raises(CapeError, match=r"cannot write the report to .*a-file/report: .*a-file is a file"):
        build_report(target, static=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write a read-only folder")
def test_read_only_parent_is_a_cape_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CapeError, match="no permission to write"):
            build_report(ro / "report", static=False)
    finally:
        ro.chmod(0o700)
    assert list(ro.iterdir()) == []


def test_folder_with_other_files_is_refused_and_left_alone(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(CapeError, match="holds other files .*notes.txt"):
        build_report(d, static=False)
    assert [p.name for p in d.iterdir()] == ["notes.txt"]


def test_failure_leaves_nothing_half_written_and_keeps_an_earlier_report(tmp_path, monkeypatch):
    import cape.report.build as build_mod

    def boom(*a, **k):
        raise RuntimeError("page failed")

    monkeypatch.setattr(build_mod, "render_page", boom)
    with pytest.raises(RuntimeError, match="page failed"):
        build_report(tmp_path / "new", static=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    first = build_report(tmp_path / "rep", static=False).html.read_text(encoding="utf-8")
    monkeypatch.setattr(build_mod, "render_page", boom)
    with pytest.raises(RuntimeError):
        build_report(tmp_path / "rep", static=False)
    assert (tmp_path / "rep" / "report.html").read_text(encoding="utf-8") == first
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


# ------------------------------------------------------------------------------ figure functions
def test_figures_state_data_n_and_method():
    rc = running_coupling(cached_panel("paper-base"), seed=0)
    fig = figures.running_coupling_fit(rc)
    sub = fig.layout.title.subtitle.text
    assert isinstance(fig, go.Figure) and fig.layout.meta["name"] == "running-coupling"
    assert "paper-base" in sub and f"{rc.n_intervals} intervals" in sub and "OLS" in sub
    assert "resamples" in sub.replace("<br>", " ")
    # the fitted line is drawn through the analysis's own gamma_at, not refitted
    line = next(t for t in fig.data if t.mode == "lines")
    assert line.y[0] == pytest.approx(rc.gamma_at(10 ** rc.x_range[0])[0])
    w = width_normalization(cached_panel("paper-pythia"), seed=0)
    fig = figures.width_null(w)
    assert len(fig.data[0].x) == w.n_null and "8 models" in fig.layout.title.subtitle.text


def test_audit_table_needs_its_columns():
    bad = StandInAudit(pd.DataFrame({"id": ["A1"], "claim": ["x"]}))
    with pytest.raises(CapeError, match="lacks the column"):
        figures.audit_table(bad)
    fig = figures.audit_table(stand_in_audit())
    cells = fig.data[0].cells
    assert list(cells.values[0]) == ["Z1", "Z2", "Z3", "Z4", "Z5"]
    assert cells.fill.color[0][0] == figures.VERDICT_COLOURS["reproduced"]
    assert cells.fill.color[0][2] == figures.VERDICT_COLOURS["not reproduced"]


# ------------------------------------------------------------------------------ static files, browser
@pytest.mark.slow
def test_static_files_are_valid_png_and_svg(full_report):
    res, steps = full_report
    assert res.static_method == "kaleido", res.static_note
    assert {f.name for f in res.figures} == BASE_FIGURES | {"audit"}
    pngs = sorted((res.out_dir / "figures").glob("*.png"))
    svgs = sorted((res.out_dir / "figures").glob("*.svg"))
    assert len(pngs) == len(svgs) == len(res.figures)
    for f in res.figures:
        w, h = png_size(f.png)
        assert w == export_mod.WIDTH * export_mod.PNG_SCALE and h >= 400
        root = svg_root(f.svg)
        assert len(list(root.iter())) > 50
    assert "Within-family coupling" in svg_text(svg_root(res.out_dir / "figures" / "couplings.svg"))
    assert "quokkas" in svg_text(svg_root(res.out_dir / "figures" / "audit.svg"))
    assert steps[-1][0] == steps[-1][1] and len(steps) > 20        # progress reached the end


@pytest.mark.slow
def test_report_in_headless_chromium(full_report):
    res, _ = full_report
    sync_playwright = need_playwright()
    browser_path = need_browser()
    page_url = res.html.as_uri()
    console, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_url)
            page.wait_for_function("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                   ".every(e => e._fullLayout && e.querySelector('.main-svg'))", timeout=60_000)
            plots = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                  ".map(e => [e.id, e.data.length, e.querySelectorAll('.main-svg *').length])")
            text = page.inner_text("body")
            # the page's own ids (Plotly's tables reuse ids inside their SVGs, which is theirs)
            duplicate_ids = page.evaluate("(() => { const ids = Array.from(document.querySelectorAll("
                                          "'section[id], figure[id], .js-plotly-plot')).map(e => e.id);"
                                          " return ids.length - new Set(ids).size; })()")
            shot = page.locator("#phase-map").screenshot()
            full = page.screenshot()
            checker = browser.new_page()
            fig_colours = distinct_colours(checker, shot)
            view_colours = distinct_colours(checker, full)
            file_colours = {f.name: distinct_colours(checker, f.png.read_bytes()) for f in res.figures[:3]}
        finally:
            browser.close()
    errors = [c for c in console if c[0] in ("error", "pageerror")]
    assert errors == []
    assert not [c for c in console if "WARN" in c[1]]                 # Plotly's own warnings
    assert requests == [page_url]                                     # the page itself, nothing else
    assert duplicate_ids == 0
    assert len(plots) == len(res.figures) == len(BASE_FIGURES) + 1
    assert {pid.removeprefix("fig-") for pid, _, _ in plots} == {f.name for f in res.figures}
    for pid, n_traces, n_svg in plots:
        assert n_traces > 0, pid
        assert n_svg > 20, pid
    assert fig_colours[2] > 100 and view_colours[2] > 100
    for name, (w, h, n) in file_colours.items():
        assert n > 50, name
    # the stand-ins are in the page
    for i in range(1, 6):
        assert f"Stand-in claim number {i} about quokkas" in text
    assert "reproduced but fragile" in text and "stand-in reason not computable" in text
    assert "Stand-in replication on openllm-v1-base: the picture holds in 2 of 3 families" in text
    assert "Numbat-family" in text and "Bilby-family" in text
    assert "Steering results: not computed yet." in text


@pytest.mark.slow
def test_playwright_fallback_when_kaleido_fails(tmp_path, monkeypatch):
    need_browser()
    need_playwright()

    def broken(*a, **k):
        raise RuntimeError("kaleido is broken here")

    monkeypatch.setitem(export_mod._METHODS, "kaleido", broken)
    figs = {"width-null": figures.width_null(width_normalization(cached_panel("paper-pythia"), seed=0)),
            "audit": figures.audit_table(stand_in_audit())}
    res = export_static(figs, tmp_path / "figs")
    assert res.method == "playwright" and "kaleido is broken here" in res.attempts[0]
    for name in figs:
        w, h = png_size(res.files[name]["png"])
        assert w == export_mod.WIDTH * export_mod.PNG_SCALE
        assert svg_root(res.files[name]["svg"]) is not None
    assert "quokkas" in svg_text(svg_root(res.files["audit"]["svg"]))
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "audit.png", "audit.svg", "width-null.png", "width-null.svg"]


def test_no_browser_means_no_static_files_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))
    def no_playwright(*a, **k):
        raise RuntimeError("no playwright browser")

    monkeypatch.setitem(export_mod._METHODS, "playwright", no_playwright)
    fig = figures.width_null(width_normalization(cached_panel("paper-pythia"), seed=0, n_null=200))
    res = export_static({"width-null": fig}, tmp_path / "figs")
    assert res.method is None and not res.ok and len(res.attempts) == 2
    assert res.note.startswith("no static figures: kaleido:")
    assert list((tmp_path / "figs").iterdir()) == []


# ------------------------------------------------------------------------------ the command
@pytest.mark.slow
def test_cli_report_json_and_errors(tmp_path):
    r = run_cli("report", "--out", str(tmp_path / "rep"), "--no-static", "--json", "--seed", "1")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["command"] == "report" and Path(d["html"]).is_file() and d["seed"] == 1
    # the CLI runs the audit (and its replication section) and adds them
    # ... and the replication's breakpoint profile (the flip test behind its verdict)
    assert d["static_method"] is None and len(d["figures"]) == len(BASE_FIGURES) + 2
    names = [f["name"] for f in d["figures"]]
    assert "audit" in names and "breakpoint-profile" in names and d["missing"] == ["steering"]
    page = Path(d["html"]).read_text(encoding="utf-8")
    assert "Where does the coupling flip within families?" in page and "flip_profile" in page
    r = run_cli("report", "--out", str(tmp_path / "rep2"), "--no-static", "--no-audit")
    assert r.returncode == 0 and f"Report: {tmp_path / 'rep2' / 'report.html'}" in r.stdout
    (tmp_path / "f").write_text("x")
    r = run_cli("report", "--out", str(tmp_path / "f" / "rep"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: cannot write the report to {tmp_path / 'f' / 'rep'}: {tmp_path / 'f'} is a file, not a folder"]


def test_saved_steering_evaluations_get_their_sweep_and_table(tmp_path):
    """Saved steering evaluations (as `cape steer eval` records them) become a sweep figure
    and a table each; a model name is text, never markup."""
    from cape.steer.evaluate import SteeringEvaluation

    def row(cond, alpha, mc2, seed=None, **kw):
        return {"condition": cond, "control_seed": seed, "layer": None if cond in ("unsteered", "prompt") else 5,
                "alpha": alpha, "mc1": 0.3, "mc2": mc2, "mc2_ci": [mc2 - 0.05, mc2 + 0.05], "kl": 0.01 * (alpha or 0),
                "ce_increase": 0.02 * (alpha or 0), "ce_increase_ci": [0.0, 0.1], **kw}
    conds = [row("unsteered", None, 0.40), row("prompt", None, 0.42)]
    for a in (2.0, 4.0):
        conds += [row("steered", a, 0.40 + 0.01 * a, d_mc2=0.01 * a, d_mc2_ci=[0.0, 0.02 * a], margin_mc2=0.005 * a,
                      margin_mc2_ci=[-0.01, 0.03]),
                  row("negated", a, 0.40 - 0.01 * a, d_mc2=-0.01 * a),
                  row("random", a, 0.401, seed=0, d_mc2=0.001), row("random", a, 0.399, seed=1, d_mc2=-0.001)]
    doc = {"kind": "cape-steering-evaluation", "model": "<b>m&co</b>", "per_question": [],
           "meta": {"n_questions": 12, "targets": "mc_task.json", "unit": "sd", "n_random": 2,
                    "finished_at": "2026-12-01T00:00:00+00:00"}, "conditions": conds}
    path = tmp_path / "ev.json"
    path.write_text(json.dumps(doc))
    ev = SteeringEvaluation.load(path)
    rs = ev.random_summary()
    assert list(rs["k"]) == [2, 2] and rs["mc2"].tolist() == pytest.approx([0.4, 0.4])
    assert rs["mc2_min"].tolist() == [0.399, 0.399] and rs["mc2_max"].tolist() == [0.401, 0.401]
    res = build_report(tmp_path / "r", seed=0, static=False, steering=[ev])
    names = {f.name for f in res.figures}
    assert {"steering-sweep", "steering"} <= names and "steering" not in res.missing
    text = res.html.read_text(encoding="utf-8")
    assert 'id="fig-steering-sweep"' in text and "<b>m&co</b>" not in text
    fig = figures.steering_sweep(ev)
    assert fig.layout.title.text == "<b>Steering sweep: &lt;b&gt;m&amp;co&lt;/b&gt;</b>"
    steered = [t for t in fig.data if t.name == "steered, layer 5"]
    # one trace per panel: MC1, MC2, CE, KL (no open-ended answers in this run: no corrected panel)
    assert list(steered[0].y) == pytest.approx([0.3, 0.3]) and len(steered) == 4
    assert [a.text for a in fig.layout.annotations if "rate" in a.text] == []


def test_recorded_internal_coupling_gets_its_figures(tmp_path):
    from cape.steer.internals import InternalCoupling

    layers = pd.DataFrame({"layer": [0, 1, 2], "raw_cos": [0.97, 0.98, 0.98], "centred_cos": [0.05, -0.2, 0.01],
                           "null_low": [-0.1] * 3, "null_high": [0.1] * 3, "outside_null": [False, True, False],
                           "truth_acc": [0.6] * 3, "reason_acc": [0.7] * 3, "n_null": [50] * 3})
    heads = pd.DataFrame({"layer": [0, 0, 1, 1, 2, 2], "head": [0, 1] * 3, "cos": [0.1, -0.9, 0.0, 0.2, -0.1, 0.3],
                          "null_low": [-0.3] * 6, "null_high": [0.3] * 6, "paper_share": [0, 0.8, 0, 0, 0, 0],
                          "competing_paper": [False, True, False, False, False, False],
                          "competing_sound": [False, True, False, False, False, False]})
    meta = {"n_truth": 10, "n_reason": 8, "n_null": 50, "pooling": "last", "n_pairs": 4,
            "heads": {"n_heads": 6, "paper": {"k": 1, "share": 1 / 6, "ci": [0.03, 0.56]},
                      "sound": {"k": 1, "share": 1 / 6, "ci": [0.03, 0.56], "expected_by_chance": 0.15}}}
    res = InternalCoupling("m<1>", layers, meta, heads)
    out = build_report(tmp_path / "r", seed=0, static=False, internals=[res])
    names = {f.name for f in out.figures}
    assert {"internal-coupling", "head-coupling"} <= names
    text = out.html.read_text(encoding="utf-8")
    assert 'id="fig-head-coupling"' in text and "m<1>" not in text and "competing heads of 6" in text
    fig = figures.head_coupling(res)
    marked = {t.name: list(zip(t.x, t.y)) for t in fig.data if t.type == "scatter"}
    assert marked == {"competing (preprint)": [(0, 1)], "competing (vs null)": [(0, 1)]}
