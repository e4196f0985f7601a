"""``build_report``: run the analyses on the bundled panels, draw every figure, and write one
self-contained ``report.html`` (plotly.js inline, works offline) plus ``figures/NAME.png``
and ``figures/NAME.svg``.

The report is written into a temporary folder beside ``out_dir`` and renamed into place at
the end, so a failure leaves nothing half-written and an older report at ``out_dir`` stays
whole until the new one replaces it.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import __version__, api, stats
from ..analysis import (critical_scale, eigenstructure, family_coupling, pair_data, running_coupling,
                        width_normalization)
from ..analysis import dynamics as dy
from ..analysis import frontier as fr
from ..analysis.results import Result
from ..analysis.saturation import saturation
from ..errors import CapeError
from ..predictions import evaluate_predictions
from . import figures as F
from .export import FORMATS, StaticExport, StaticExporter
from .page import FigureBlock, Section, TextBlock, frame_html, render_page

__all__ = ["check_out_dir", "REPORT_FILE", "FIGURES_DIR", "AUDIT_HINT", "REPLICATION_HINT", "STEERING_HINT", "ReportFigure",
           "ReportResult", "build_report"]

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
#: What the "not computed" notices tell a reader to run.
AUDIT_HINT = ("<code>cape audit</code>, or pass <code>audit=</code> (an object with a <code>.table</code>) "
              "to <code>cape.report.build_report</code>")
REPLICATION_HINT = ("<code>cape audit</code> (its replication section), or pass <code>replication=</code> "
                    "(e.g. <code>cape.analysis.replication(...)</code>) to <code>cape.report.build_report</code>")
STEERING_HINT = ("<code>cape steer eval --model PATH --vector v.safetensors --truthfulqa TruthfulQA.csv</code> "
                 "(it records its results in <code>$CAPE_HOME/steering</code>, where <code>cape report</code> "
                 "finds them), or pass <code>steering=</code> (saved steering evaluations)")
#: Names a report folder may hold; anything else means the folder is not a CAPE report.
_REPORT_NAMES = {REPORT_FILE, FIGURES_DIR}


@dataclass
class ReportFigure:
    """One figure of the report: its name, section, title, and static files (if any)."""

    name: str
    section: str
    title: str
    png: Path | None = None
    svg: Path | None = None


@dataclass
class ReportResult(Result):
    """What ``build_report`` wrote: the page, the figures, how static export went, how long
    each stage took and which sections are missing."""

    out_dir: Path
    html: Path
    figures: list[ReportFigure]
    static_method: str | None
    static_note: str
    seed: int | None
    missing: list[str]
    timings: dict[str, float]
    version: str = __version__
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        return plain(super().to_dict())

    def summary(self) -> str:
        lines = [f"Report written to {self.html} ({len(self.figures)} figures)",
                 f"  {self.static_note}"]
        if self.static_method:
            lines.append(f"  static files in {self.out_dir / FIGURES_DIR}")
        if self.missing:
            lines.append(f"  not computed: {', '.join(self.missing)}")
        lines.append("  timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------ folders
def check_out_dir(out_dir: str | Path) -> Path:
    """Refuse (CapeError) a folder that cannot take a report, before any work is done:
    a file, a folder holding other files, or a place without write permission."""
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise CapeError(f"cannot write the report to {out_dir}: it exists and is not a folder")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in _REPORT_NAMES)
        if foreign:
            raise CapeError(f"cannot write the report to {out_dir}: the folder holds other files "
                            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})",
                            hint="choose an empty or new folder, or one holding an earlier CAPE report")
    anc = out_dir.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise CapeError(f"cannot write the report to {out_dir}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise CapeError(f"cannot write the report to {out_dir}: no permission to write in {anc}")
    return out_dir


def _prepare(out_dir: Path) -> Path:
    """Check ``out_dir`` can take a report and make the temporary folder beside it."""
    check_out_dir(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return _new_dir(out_dir, "tmp")
    except OSError as exc:
        raise CapeError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None


def _new_dir(out_dir: Path, kind: str) -> Path:
    """A new hidden folder beside ``out_dir`` (made with the user's umask, unlike mkdtemp's 0700)."""
    for _ in range(100):
        path = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:10]}.{kind}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {out_dir}")


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``; an earlier report there is moved aside first and
    deleted only once the new one is in place (put back if the rename fails)."""
    old = None
    try:
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:10]}.old"
            out_dir.rename(old)
        tmp.rename(out_dir)
    except OSError as exc:
        if old is not None and old.exists() and not out_dir.exists():
            old.rename(out_dir)
            old = None
        raise CapeError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------ analyses
def _analyses(seed: int | None, tick: Callable[[str], None]) -> dict[str, object]:
    """Every result the report shows, from the bundled panels (CapeErrors are kept as
    results: the figure becomes a notice saying why it could not be computed)."""
    base, nc_panel = api.load_panel("paper-base"), api.load_panel("paper-nc")
    pythia, frontier = api.load_panel("paper-pythia"), api.load_panel("paper-frontier")
    openllm = api.load_panel("openllm-v1-base")
    out: dict[str, object] = {}

    def run(key: str, fn: Callable[[], object]) -> None:
        try:
            out[key] = fn()
        except CapeError as exc:
            out[key] = exc
        tick(key)

    run("base_pairs", lambda: pair_data(base))
    run("coupling", lambda: family_coupling(base, seed=seed))
    run("running", lambda: running_coupling(base, seed=seed))
    run("nc", lambda: critical_scale(nc_panel, seed=seed))
    run("width", lambda: width_normalization(pythia, seed=seed))
    run("eigen", lambda: [eigenstructure(base, seed=seed), eigenstructure(base, phase="tax", seed=seed),
                          eigenstructure(base, phase="bonus", seed=seed), eigenstructure(openllm, seed=seed)])
    run("crossval", lambda: dy.crossval(nc_panel, seed=seed))
    run("fit", lambda: fr.population_fit(frontier, seed=seed))
    run("hfield", lambda: fr.hfield(frontier))
    run("labs", lambda: fr.labs(frontier, seed=seed))
    run("dynamics", lambda: fr.lab_dynamics(frontier))
    run("saturation", lambda: saturation(frontier, seed=seed))
    run("predictions", lambda: evaluate_predictions(frontier))
    return out


def _family_colours(data) -> dict:
    """One colour per family of the base panel, shared by the phase map and the running coupling."""
    return F.family_colours(data.families())


#: (figure name, section, title, the results it needs, how to draw it)
_FIGURES: list[tuple[str, str, str, tuple[str, ...], Callable]] = [
    ("phase-map", "paper-a", "Phase map", ("base_pairs", "running", "nc"),
     lambda d, rc, nc: F.phase_map(d, rc, nc, colours=_family_colours(d))),
    ("couplings", "paper-a", "Within-family couplings", ("coupling",), F.coupling_forest),
    ("running-coupling", "paper-a", "Running coupling", ("running", "base_pairs"),
     lambda rc, d: F.running_coupling_fit(rc, colours=_family_colours(d))),
    ("nc-bootstrap", "paper-a", "N_c by estimator", ("nc",), F.nc_bootstrap),
    ("width-null", "paper-a", "Width normalization", ("width",), F.width_null),
    ("eigen-spectra", "paper-a", "Eigen spectra", ("eigen",), F.eigen_spectra),
    ("dynamics-crossval", "dynamics", "Cross-validation", ("crossval",), F.crossval_errors),
    ("dynamics-paper-protocol", "dynamics", "Paper protocol", ("crossval",),
     lambda cv: F.paper_protocol_table(cv.paper_protocol)),
    ("frontier-fit", "paper-b", "Population line", ("fit", "hfield"), F.frontier_scatter),
    ("hfield-labs", "paper-b", "h-field by lab", ("hfield", "labs"), F.hfield_by_lab),
    ("lab-trajectories", "paper-b", "Lab trajectories", ("dynamics",), F.lab_trajectories),
    ("saturation", "paper-b", "Saturation", ("saturation",), F.saturation_spreads),
    ("predictions", "paper-b", "Predictions", ("predictions",), F.predictions_table),
]

_SECTIONS = {
    "paper-a": ("Base models (paper A, arXiv:2605.18838)",
                "Within-family coupling of HellaSwag and TruthfulQA, the running coupling and the critical scale "
                "N_c, width normalization and the eigenstructure, on the bundled reference panels "
                "(<code>paper-base</code>, <code>paper-nc</code>, <code>paper-pythia</code>, "
                "<code>openllm-v1-base</code>)."),
    "dynamics": ("Scaling dynamics",
                 "A sparse-regression ODE of the benchmark vector over log10 N, scored on held-out families and "
                 "sizes against simple baselines (<code>paper-nc</code>)."),
    "paper-b": ("Frontier models (paper B, arXiv:2605.18840)",
                "The population line of GPQA Diamond on SWE-bench Verified, each model's residual h, labs, release "
                "dynamics, saturation and the falsifiable predictions (<code>paper-frontier</code>, published "
                "data)."),
    "audit": ("Claims audit", "Each headline claim of the two preprints recomputed from data, with a verdict."),
    "replication": ("Replication", "Does paper A's picture hold on an independent panel?"),
    "steering": ("Steering", "Pushing an open-weight model toward truthful answers at inference time, measured "
                             "honestly."),
    "internals": ("Internal coupling", "Truth and reasoning directions inside a model, per layer and per attention "
                                       "head, raw beside centred and against a null (<code>cape steer internals"
                                       "</code>; the newest recorded result per model)."),
}


def _numbers(results: tuple) -> str:
    texts = []
    for r in results:
        for x in (r if isinstance(r, list) else [r]):
            if hasattr(x, "summary") and not isinstance(x, pd.DataFrame):
                texts.append(x.summary())
    return "\n\n".join(texts)


def _missing(title: str, what: str, hint: str) -> TextBlock:
    return TextBlock(title, f"<p>{html.escape(what)} Not computed: run {hint}.</p>", kind="missing")


def _result_block(title: str, result) -> TextBlock:
    """A result's summary text and every DataFrame it carries, as HTML."""
    summary = result.summary() if hasattr(result, "summary") else repr(result)
    parts = [f"<pre>{html.escape(summary)}</pre>"]
    for name, frame in F.result_tables(result):
        parts.append(f"<h4>{html.escape(name)}</h4>{frame_html(frame)}")
    return TextBlock(title, "".join(parts))


# ------------------------------------------------------------------------------ the report
def build_report(out_dir: str | Path, *, seed: int | None = 0, audit=None, replication: Result | None = None,
                 steering: Result | Sequence | None = None, internals: Sequence = (),
                 advice: Sequence[Result] = (), static: bool | str = True,
                 progress: stats.Progress | None = None) -> ReportResult:
    """Build the report into ``out_dir`` (created; an earlier CAPE report there is replaced).

    ``audit`` is an object whose ``.table`` is a DataFrame with the columns
    :data:`cape.report.figures.AUDIT_COLUMNS`; ``replication`` is a CAPE result object (its
    ``summary()`` and DataFrames are shown); ``steering`` is a result object or a list of saved
    steering evaluations (:func:`cape.steer.evaluate.saved_evaluations`: each gets its sweep
    figure and its table); ``internals``: recorded internal-coupling results
    (:func:`cape.steer.internals.saved_internals`: each gets its layer figure and, with heads,
    its head map); ``advice``: intervention
    suggestions (:func:`cape.analysis.advise.advise` results), shown after the replication.
    Each of audit, replication and steering that is None gets a
    "not computed" notice naming the command that computes it. ``static`` is True (PNG and
    SVG by kaleido, falling back to Playwright), ``"kaleido"`` or ``"playwright"`` (that
    method only), or False (none); the browser starts at once and renders each figure while
    the analyses run and the next is drawn (:class:`cape.report.export.StaticExporter`), so
    ``timings`` gives its whole span (``static export``) and what the report still waited
    for it at the end (``static export wait``). ``progress(done, total)`` is called after each step.

    Raises :class:`cape.errors.CapeError` when ``out_dir`` cannot be written; nothing is
    left behind then.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir).expanduser().absolute()
    n_steps = 13 + len(_FIGURES) + 3 + (1 if static else 0) + 2   # analyses, figures, sections, export, page
    done = [0]

    def tick(_label: str = "") -> None:
        done[0] += 1
        if progress is not None:
            progress(min(done[0], n_steps), n_steps)

    tmp = _prepare(out_dir)
    exporter = None
    try:
        timings: dict[str, float] = {}
        figs, meta, notes = {}, [], []
        if static:
            # one browser session, started now: it loads while the analyses run and renders
            # each figure while the next is drawn
            exporter = StaticExporter(tmp / FIGURES_DIR, method="auto" if static is True else str(static))

        def add_figure(name: str, fig) -> None:
            figs[name] = fig
            if exporter is not None and name not in early:
                exporter.add(name, fig)

        # The figures that need no analysis (the audit table is the slowest to render) go to
        # the browser first, to render while the analyses run; the page keeps its order.
        early: dict[str, object] = {}
        if exporter is not None and audit is not None:
            early["audit"] = F.audit_table(audit)
            exporter.add("audit", early["audit"])

        t0 = time.perf_counter()
        results = _analyses(seed, tick)
        timings["analyses"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        blocks: dict[str, list] = {k: [] for k in _SECTIONS}
        for name, section, title, keys, draw in _FIGURES:
            args = tuple(results[k] for k in keys)
            failed = [a for a in args if isinstance(a, CapeError)]
            if failed:
                blocks[section].append(TextBlock(title, f"<p>Could not be computed: {html.escape(str(failed[0]))}</p>",
                                                 kind="missing"))
                notes.append(f"{name}: {failed[0]}")
            else:
                fig = draw(*args)
                add_figure(name, fig)
                blocks[section].append(FigureBlock(fig, _numbers(args)))
                meta.append(ReportFigure(name, section, title))
            tick(name)
        if audit is not None:
            fig = early["audit"] if "audit" in early else F.audit_table(audit)
            add_figure("audit", fig)
            blocks["audit"].append(FigureBlock(fig, "", extra_html="<details><summary>Table as text</summary>"
                                               + frame_html(audit.table) + "</details>"))
            meta.append(ReportFigure("audit", "audit", "Claims audit"))
        else:
            blocks["audit"].append(_missing("Claims audit", "The audit table of the preprints' claims.", AUDIT_HINT))
        tick("audit")
        if replication is not None:
            flip = getattr(replication, "flip", None)
            if flip is not None and len(flip.profile):
                fig = F.breakpoint_profile(flip)
                add_figure("breakpoint-profile", fig)
                blocks["replication"].append(FigureBlock(fig, flip.summary()))
                meta.append(ReportFigure("breakpoint-profile", "replication", "Breakpoint profile"))
            blocks["replication"].append(_result_block(type(replication).__name__, replication))
        else:
            blocks["replication"].append(_missing("Replication", "Paper A's analyses on an independent panel.",
                                                  REPLICATION_HINT))
        for adv in advice:
            blocks["replication"].append(_result_block(f"Intervention suggestions: {getattr(adv, 'target', '')}",
                                                       adv))
        tick("replication")
        if isinstance(steering, (list, tuple)) and not steering:
            steering = None
        if steering is not None:
            evaluations = list(steering) if isinstance(steering, (list, tuple)) else [steering]
            for i, ev in enumerate(evaluations):
                tail = "" if len(evaluations) == 1 else f"-{i + 1}"
                if hasattr(ev, "random_summary"):  # a steering evaluation: its sweep, then its table
                    fig = F.steering_sweep(ev)
                    fig.layout.meta = {**fig.layout.meta, "name": f"steering-sweep{tail}"}
                    add_figure(f"steering-sweep{tail}", fig)
                    blocks["steering"].append(FigureBlock(fig, ev.summary()))
                    meta.append(ReportFigure(f"steering-sweep{tail}", "steering", f"Steering sweep: {ev.model_id}"))
                fig = F.steering_table(ev)
                fig.layout.meta = {**fig.layout.meta, "name": f"steering{tail}"}
                add_figure(f"steering{tail}", fig)
                blocks["steering"].append(FigureBlock(fig, "" if hasattr(ev, "random_summary") else
                                                      (ev.summary() if hasattr(ev, "summary") else "")))
                meta.append(ReportFigure(f"steering{tail}", "steering", "Steering"))
        else:
            blocks["steering"].append(_missing("Steering results", "Steering results: not computed yet.",
                                               STEERING_HINT))
        tick("steering")
        for i, res in enumerate(internals):
            tail = "" if len(internals) == 1 else f"-{i + 1}"
            draws = [("internal-coupling", F.internal_coupling)]
            if getattr(res, "heads", None) is not None:
                draws.append(("head-coupling", F.head_coupling))
            for name, draw in draws:
                fig = draw(res)
                fig.layout.meta = {**fig.layout.meta, "name": f"{name}{tail}"}
                add_figure(f"{name}{tail}", fig)
                blocks["internals"].append(FigureBlock(fig, res.summary() if name == "internal-coupling" else ""))
                meta.append(ReportFigure(f"{name}{tail}", "internals", f"{name}: {res.model_id}"))
        if not internals:
            blocks["internals"].append(_missing("Internal coupling", "Internal coupling of a local model.",
                                                "<code>cape steer internals --model PATH</code> (it records its "
                                                "results where <code>cape report</code> finds them)"))
        timings["figures"] = time.perf_counter() - t0

        # The page is written while the browser still renders, with the links an export that
        # works gives (every figure in every format; the note a placeholder); should it not
        # work, the page is written again with what it did.
        t0 = time.perf_counter()
        expected = {name: {fmt: f"{FIGURES_DIR}/{name}.{fmt}" for fmt in FORMATS} for name in figs} if static else {}
        note_token = f"cape-static-note-{uuid.uuid4().hex}"
        missing = [k for k, v in (("audit", audit), ("replication", replication), ("steering", steering))
                   if v is None]
        header = [f"CAPE {__version__}, built {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}, "
                  f"seed {seed}, {stats.DEFAULT_BOOTSTRAP:,} bootstrap resamples per interval unless stated",
                  f"{len(figs)} figures; {note_token}"]
        if missing:
            header.append("Not computed yet: " + ", ".join(missing))
        sections = [Section(k, t, intro, blocks[k]) for k, (t, intro) in _SECTIONS.items()]

        def page(links: dict[str, dict[str, str]]) -> str:
            for sec in blocks.values():
                for b in sec:
                    if isinstance(b, FigureBlock):
                        b.files = dict(links.get(b.name, {}))
            return render_page("CAPE report: capability coupling of language models", header, sections)

        text = page(expected)
        timings["html"] = time.perf_counter() - t0

        export = StaticExport(None, attempts=["static export turned off"])
        if exporter is not None:
            t0 = time.perf_counter()
            export = exporter.finish()
            timings["static export"] = exporter.seconds
            timings["static export wait"] = time.perf_counter() - t0
            tick("static")
            if not export.ok:
                shutil.rmtree(tmp / FIGURES_DIR, ignore_errors=True)
        for m in meta:
            files = export.files.get(m.name, {})
            m.png = out_dir / FIGURES_DIR / files["png"].name if "png" in files else None
            m.svg = out_dir / FIGURES_DIR / files["svg"].name if "svg" in files else None
        links = {name: {fmt: f"{FIGURES_DIR}/{p.name}" for fmt, p in export.files[name].items()}
                 for name in figs if export.files.get(name)}
        if {k: list(v.items()) for k, v in links.items()} != {k: list(v.items()) for k, v in expected.items()}:
            t0 = time.perf_counter()
            text = page(links)
            timings["html"] += time.perf_counter() - t0
        (tmp / REPORT_FILE).write_text(text.replace(note_token, html.escape(export.note)), encoding="utf-8")
        tick("html")
        _move_into_place(tmp, out_dir)
        tick("done")
    except OSError as exc:
        if exporter is not None:
            exporter.cancel()
        shutil.rmtree(tmp, ignore_errors=True)
        raise CapeError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None
    except BaseException:
        if exporter is not None:
            exporter.cancel()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total"] = time.perf_counter() - t_start
    return ReportResult(out_dir, out_dir / REPORT_FILE, meta, export.method, export.note, seed, missing,
                        {k: round(v, 3) for k, v in timings.items()}, notes=notes)
