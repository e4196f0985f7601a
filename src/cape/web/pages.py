"""The dashboard's analysis pages, rendered on the server from CAPE's result objects.

Each page reads its state from the URL (GET forms), validates it with the same input models
as the API (:mod:`cape.web.analyses`), gets each result from the cache, computes it, or for
a long analysis starts a job and shows its progress, and draws the report's figures
(:mod:`cape.report.figures`) with their numbers as tables. Nothing is computed here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from ..analysis.results import Estimate, fmt_num
from ..errors import CapeError
from . import layout as L
from .analyses import load_frame, panel_names
from .state import WebState, http_status, store_version, validation_messages

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


# ------------------------------------------------------------------------------ helpers
@dataclass
class View:
    """One page being built: its state, its HTTP status (the worst error seen) and parts."""

    request: Request
    state: WebState
    status: int = 200
    parts: list[str] = field(default_factory=list)

    def params(self, *names: str) -> dict:
        qp = self.request.query_params
        return {n: qp.get(n) for n in names if qp.get(n) not in (None, "")}

    def inputs(self, name: str, params: dict):
        """Validated inputs, or None with the errors shown (422)."""
        try:
            return self.state.inputs(name, params)
        except ValidationError as exc:
            self.fail(422, validation_messages(exc), title="Check the form")
            return None

    def fail(self, status: int, messages, *, title: str | None = None) -> str:
        self.status = max(self.status, status) if self.status != 200 else status
        block = L.notice(messages, kind="error", title=title)
        self.parts.append(block)
        return block

    def result(self, name: str, q, *, what: str) -> tuple[Any, str | None]:
        """(result, None), or (None, html) for a running job or an error."""
        try:
            result, job = self.state.result_or_job(name, q)
        except CapeError as exc:
            status = http_status(exc)
            self.status = status if self.status == 200 else max(self.status, status)
            return None, L.notice(str(exc), kind="error", title=f"Could not compute {what}")
        if job is not None:
            if job.status == "failed":
                return None, L.notice(job.error or "failed", kind="error", title=f"Could not compute {what}")
            return None, L.job_block(job, what=what)
        return result, None

    def render(self, title: str, *, active: str, intro: str = "") -> HTMLResponse:
        return HTMLResponse(L.page(title, "".join(self.parts), active=active, intro=intro), status_code=self.status)


def _view(request: Request) -> View:
    return View(request=request, state=request.app.state.cape)


def _panel_options() -> list[tuple[str, str]]:
    return [(n, n) for n in panel_names()]


def _families(panel: str) -> list[str]:
    try:
        frame = load_frame(panel)
    except CapeError:
        return []
    return sorted({str(f) for f in frame["family"].dropna()}) if "family" in frame else []


def _estimates(estimates: list[Estimate]) -> pd.DataFrame:
    """Estimates as a table: value, interval, n, method, note."""
    rows = []
    for e in estimates:
        lo, hi = e.ci if e.ci else (math.nan, math.nan)
        rows.append({"estimate": e.name, "value": e.value, "ci_low": lo, "ci_high": hi,
                     "level": e.level, "n": e.n, "unit": e.unit, "method": e.method,
                     "interval": e.interval, "note": e.note})
    return pd.DataFrame(rows)


def _section(title: str, body: str, *, sid: str) -> str:
    return f"<section aria-labelledby='h-{sid}'><h2 id='h-{sid}'>{L.esc(title)}</h2>{body}</section>"


def _api_link(name: str, q) -> str:
    href = L.url(f"/api/{name}", q.model_dump(mode="json"))
    return f"<p class='note'>The same result as JSON: <a href='{L.esc(href)}'>{L.esc(href)}</a></p>"


def _pre(text: str) -> str:
    return f"<pre>{L.esc(text)}</pre>"


async def _run(fn: Callable[[], None]) -> None:
    await run_in_threadpool(fn)


def cached_page(route):
    """Keep a finished page (status 200, no job still running) in the result cache under its
    URL and the store's version: a page is a function of its URL, the stored panels and the
    cached results; an upload clears them all."""
    @functools.wraps(route)
    async def wrapper(request: Request) -> HTMLResponse:
        state: WebState = request.app.state.cape
        key = f"page:{request.url.path}?{request.url.query}|{store_version()}"   # panel lists change
        hit = state.cache.get(key)
        if hit is not None:
            return HTMLResponse(hit)
        response = await route(request)
        if response.status_code == 200 and b"class='job'" not in response.body:
            state.cache.put(key, bytes(response.body).decode())
        return response

    return wrapper


# ------------------------------------------------------------------------------ overview
@router.get("/", response_class=HTMLResponse)
@cached_page
async def overview(request: Request) -> HTMLResponse:
    v = _view(request)
    p = v.params("panel", "pair")
    p.setdefault("panel", "paper-base")
    v.parts.append(L.form(L.select("panel", "Panel", _panel_options(), p["panel"],
                                   help_="Built-in reference panels and those you stored")
                          + L.field("pair", "Benchmark pair", p.get("pair"), help_="A:B, default hellaswag:truthfulqa"),
                          action="/", submit="Show", label="Choose a panel"))

    def build() -> None:
        from ..audit import REPLICATION_PANEL
        from ..report import figures as F

        q = v.inputs("overview", p)
        if q is not None:
            res, other = v.result("overview", q, what="the phase map")
            if res is not None:
                data, running, nc = res.parts.get("data"), res.parts.get("running"), res.parts.get("nc")
                body = ""
                if running is not None:
                    fig = F.phase_map(data, running, nc, colours=F.family_colours(data.families()))
                    body += L.figure(fig, fig_id="phase-map", frames=[("models", data.frame)],
                                     text=running.summary())
                else:
                    body += L.notice(res.errors.get("running", "no running coupling"), title="No phase map")
                v.parts.append(_section("Phase map", body, sid="phase-map"))
                if nc is not None:
                    nc_body = L.table(_estimates(nc.estimates), caption=f"N_c estimates on {nc.panel}")
                    nc_body += L.figure(F.nc_bootstrap(nc), fig_id="nc-bootstrap",
                                        frames=[("leave one family out", nc.leave_one_family_out)], text=nc.summary())
                else:
                    nc_body = L.notice(res.errors.get("nc", "not computed"), title="N_c not computed")
                v.parts.append(_section("Critical scale N_c", nc_body + _api_link("overview", q), sid="nc"))
            else:
                v.parts.append(_section("Phase map", other or "", sid="phase-map"))
        aq = v.state.inputs("audit", {})
        audit, other = v.result("audit", aq, what="the claims audit")
        if audit is not None:
            counts = pd.DataFrame([{"verdict": k, "claims": n} for k, n in audit.counts.items()])
            body = (f"<p class='headline'>{L.esc(audit.summary())}</p>" + L.table(counts, caption="Claims by verdict")
                    + "<p><a href='/audit'>Every claim with its evidence</a></p>")
            v.parts.append(_section("Claims audit", body, sid="audit"))
            rep = audit.replication
            if rep is not None:
                reason = getattr(rep, "verdict_reason", "")
                body = (f"<p class='headline'>Verdict on {L.esc(rep.panel)}: <span class='verdict'>"
                        f"{L.esc(str(rep.verdict))}</span>{(' (' + L.esc(reason) + ')') if reason else ''}</p>"
                        f"<details class='numbers'><summary>Replication in full</summary>{_pre(rep.summary())}</details>")
                v.parts.append(_section(f"Replication ({REPLICATION_PANEL})", body, sid="replication"))
        else:
            v.parts.append(_section("Claims audit and replication", other or "", sid="audit"))

    await _run(build)
    return v.render("Overview", active="/", intro=(
        "Do reasoning and truthfulness improve together as a family scales, and where does that flip? "
        "The phase map of a panel, the critical scale N_c by five estimators with intervals, and the "
        "audit of the preprints' claims with the independent replication."))


# ------------------------------------------------------------------------------ analyze
@router.get("/analyze", response_class=HTMLResponse)
@cached_page
async def analyze(request: Request) -> HTMLResponse:
    v = _view(request)
    p = v.params("params", "hellaswag", "truthfulqa", "panel", "family", "d_model")
    panel = p.get("panel", "paper-base")
    v.parts.append(L.form(
        L.field("params", "Parameters", p.get("params"), help_="e.g. 7e9", required=True, attrs="inputmode='decimal'")
        + L.field("hellaswag", "HellaSwag (%)", p.get("hellaswag"), required=True, attrs="inputmode='decimal'")
        + L.field("truthfulqa", "TruthfulQA (%)", p.get("truthfulqa"), required=True, attrs="inputmode='decimal'")
        + L.field("d_model", "Hidden width (optional)", p.get("d_model"), attrs="inputmode='numeric'")
        + L.select("panel", "Compare with panel", _panel_options(), panel)
        + L.select("family", "Its family (optional)", [("", "(none)")] + [(f, f) for f in _families(panel)],
                   p.get("family", "")),
        action="/analyze", submit="Analyze", label="Your model"))
    if "params" not in p and "hellaswag" not in p and "truthfulqa" not in p:
        v.parts.append(L.notice("Enter your model's size and its HellaSwag and TruthfulQA scores.", kind="info",
                                title="Analyze a model"))
        return v.render("Analyze a model", active="/analyze")

    def build() -> None:
        from ..report import figures as F

        q = v.inputs("phase", {k: p[k] for k in ("params", "hellaswag", "truthfulqa", "panel", "family") if k in p}
                     | {"panel": panel})
        if q is None:
            return
        ph, other = v.result("phase", q, what="the phase of this model")
        if ph is None:
            v.parts.append(other or "")
            return
        probs = pd.DataFrame([{"phase": k, "predictive probability": getattr(ph, f"p_{k}"),
                               "line-only (paper protocol)": ph.line_only.get(f"p_{k}", ph.line_only.get(k))}
                              for k in ("tax", "transition", "bonus")])
        body = (f"<p class='headline'>At {L.esc(fmt_num(ph.params))} parameters: most probable phase "
                f"<span class='verdict'>{L.esc(ph.phase_predictive)}</span> (paper protocol: {L.esc(ph.phase)})</p>"
                + L.table(probs, caption="Phase probabilities at this size")
                + L.table(_estimates([ph.gamma, ph.gamma_predictive, ph.h]), caption="gamma and h(D) with intervals")
                + L.table(ph.nearest, caption="Nearest models of the panel")
                + _pre(ph.explanation) + _api_link("phase", q))
        v.parts.append(_section("Phase, coupling and curation field", body, sid="phase"))
        oq = v.state.inputs("overview", {"panel": q.panel})
        ov, other = v.result("overview", oq, what="the phase map")
        if ov is not None and ov.parts.get("running") is not None:
            data = ov.parts["data"]
            fig = F.phase_map(data, ov.parts["running"], ov.parts.get("nc"), colours=F.family_colours(data.families()))
            F.add_marker(fig, math.log10(ph.params), ph.score_b2, "your model",
                         hover=f"your model: {fmt_num(ph.params)} parameters, {ph.b2} {ph.score_b2:g}")
            v.parts.append(_section("Your model on the phase map",
                                    L.figure(fig, fig_id="phase-map", frames=[("models", data.frame)]), sid="map"))
        elif other:
            v.parts.append(other)
        aq = v.inputs("advise", {"panel": q.panel, "params": q.params, "hellaswag": q.hellaswag,
                                 "truthfulqa": q.truthfulqa} | ({"d_model": p["d_model"]} if "d_model" in p else {}))
        if aq is None:
            return
        adv, other = v.result("advise", aq, what="the suggestions")
        if adv is not None:
            body = (L.table(adv.table, caption=f"Levers for {adv.target} ({adv.panel})") + _pre(adv.summary())
                    + _api_link("advise", aq))
            v.parts.append(_section("Suggestions (cape advise) with their evidence", body, sid="advise"))
        else:
            v.parts.append(_section("Suggestions (cape advise)", other or "", sid="advise"))

    await _run(build)
    return v.render("Analyze a model", active="/analyze")


# ------------------------------------------------------------------------------ families
@router.get("/families", response_class=HTMLResponse)
@cached_page
async def families(request: Request) -> HTMLResponse:
    v = _view(request)
    p = v.params("panel", "family", "pair")
    panel = p.get("panel", "paper-base")
    fams = _families(panel)
    family = p.get("family") or (fams[0] if fams else "")
    v.parts.append(L.form(
        L.select("panel", "Panel", _panel_options(), panel)
        + L.select("family", "Family", [(f, f) for f in fams] or [("", "(no families)")], family)
        + L.field("pair", "Benchmark pair", p.get("pair"), help_="A:B, default hellaswag:truthfulqa"),
        action="/families", submit="Show", label="Choose a family"))

    def build() -> None:
        from ..report import figures as F

        try:
            frame = load_frame(panel, family=family or None)
        except CapeError as exc:
            v.fail(http_status(exc), str(exc))
            return
        v.parts.append(_section(f"{family}: scores against size",
                                L.figure(F.family_scores(frame, family), fig_id="family-scores",
                                         frames=[("models", frame.reset_index())]), sid="scores"))
        gq = v.inputs("gamma", {"panel": panel, "family": family} | ({"pair": p["pair"]} if "pair" in p else {}))
        if gq is None:
            return
        g, other = v.result("gamma", gq, what="the interval couplings")
        if g is not None:
            lc = g.parts["local"]
            body = L.figure(F.interval_gammas(lc, family), fig_id="interval-gammas",
                            frames=[("intervals", lc.intervals), ("dropped", lc.dropped)], text=lc.summary())
            v.parts.append(_section("Interval couplings gamma", body + _api_link("gamma", gq), sid="gamma"))
        else:
            v.parts.append(other or "")
        cq = v.inputs("coupling", {"panel": panel} | ({"pair": p["pair"]} if "pair" in p else {}))
        if cq is None:
            return
        c, other = v.result("coupling", cq, what="the within-family correlations")
        if c is not None:
            row = c.table[c.table["family"].astype(str) == family]
            body = (L.table(row, caption=f"r with its {int(round(100 * cq.level))}% CI for {family}")
                    + L.figure(F.coupling_forest(c), fig_id="couplings", frames=[("families", c.table)],
                               text=c.summary()) + _api_link("coupling", cq))
            v.parts.append(_section("Within-family correlation r with CI", body, sid="r"))
        else:
            v.parts.append(other or "")

    await _run(build)
    return v.render("Families", active="/families",
                    intro="One family's scores against size, its interval couplings and its correlation with an interval.")


# ------------------------------------------------------------------------------ frontier
@router.get("/frontier", response_class=HTMLResponse)
@cached_page
async def frontier(request: Request) -> HTMLResponse:
    v = _view(request)
    p = v.params("panel", "subset", "swe", "gpqa", "lab", "date")
    panel = p.get("panel", "paper-frontier")
    v.parts.append(L.form(
        L.select("panel", "Panel", _panel_options(), panel)
        + L.select("subset", "Fit on", [("published", "published"), ("core", "core"), ("all", "all")],
                   p.get("subset", "published"))
        + "<fieldset><legend>A hypothetical release (optional)</legend>"
        + L.field("swe", "SWE-bench Verified (%)", p.get("swe"), attrs="inputmode='decimal'")
        + L.field("gpqa", "GPQA Diamond (%)", p.get("gpqa"), attrs="inputmode='decimal'")
        + L.field("lab", "Lab", p.get("lab")) + L.field("date", "Release date", p.get("date"), help_="YYYY-MM-DD")
        + "</fieldset>", action="/frontier", submit="Show", label="Frontier fit and a release"))

    def build() -> None:
        from ..report import figures as F

        base = {"panel": panel, "subset": p.get("subset", "published")}
        fq, hq = v.inputs("frontier-fit", base), v.inputs("hfield", base)
        if fq is None or hq is None:
            return
        fit, other = v.result("frontier-fit", fq, what="the population line")
        hf, other2 = v.result("hfield", hq, what="the h-field")
        release = None
        if "swe" in p or "gpqa" in p:
            rq = v.inputs("release", base | {k: p[k] for k in ("swe", "gpqa", "lab", "date") if k in p})
            if rq is not None:
                release, rother = v.result("release", rq, what="the release")
                if release is not None:
                    body = (L.table(pd.DataFrame([{"predicted": release.predicted, "observed": release.y, "h": release.h,
                                                   "band": release.band, "pi_low": release.pi[0],
                                                   "pi_high": release.pi[1], "inside": release.inside,
                                                   "paper_pi_low": release.paper_pi[0],
                                                   "paper_pi_high": release.paper_pi[1],
                                                   "inside_paper": release.inside_paper}]),
                                    caption=f"The release against the line ({int(round(100 * release.level))}% "
                                            "prediction interval)")
                            + L.table(release.nearest_labs, caption="Labs nearest in mean h")
                            + _pre(release.explanation) + _api_link("release", rq))
                    v.parts.append(_section("Your release: h and its interval", body, sid="release"))
                else:
                    v.parts.append(rother or "")
        if fit is not None and hf is not None:
            fig = F.frontier_scatter(fit, hf)
            if release is not None:
                F.add_marker(fig, release.x, release.y, "your release",
                             hover=f"your release: h = {release.h:+.1f}")
            v.parts.append(_section("Population line with its prediction band",
                                    L.figure(fig, fig_id="frontier-fit",
                                             frames=[("coefficients", fit.coefficients), ("h-field", hf.table)],
                                             text=fit.summary()) + _api_link("frontier-fit", fq), sid="fit"))
        else:
            v.parts.append(other or other2 or "")
        lq = v.inputs("labs", base)
        labs, other = v.result("labs", lq, what="the labs") if lq is not None else (None, "")
        if labs is not None and hf is not None:
            v.parts.append(_section("h-field by lab", L.figure(F.hfield_by_lab(hf, labs), fig_id="hfield-labs",
                                                               frames=[("labs", labs.table), ("leave one lab out", labs.lolo)],
                                                               text=labs.summary()), sid="labs"))
        elif other:
            v.parts.append(other)
        dq = v.inputs("frontier-dynamics", base)
        dyn, other = v.result("frontier-dynamics", dq, what="the lab trajectories") if dq is not None else (None, "")
        if dyn is not None:
            v.parts.append(_section("Lab trajectories", L.figure(F.lab_trajectories(dyn), fig_id="lab-trajectories",
                                                                 frames=[("releases", dyn.table)], text=dyn.summary()),
                                    sid="trajectories"))
        elif other:
            v.parts.append(other)
        sq = v.inputs("saturation", {"panel": panel})
        sat, other = v.result("saturation", sq, what="the saturation") if sq is not None else (None, "")
        if sat is not None:
            v.parts.append(_section("Saturation: top-k spreads against noise floors",
                                    L.figure(F.saturation_spreads(sat), fig_id="saturation",
                                             frames=[("benchmarks", sat.table)], text=sat.summary())
                                    + _api_link("saturation", sq), sid="saturation"))
        elif other:
            v.parts.append(other)

    await _run(build)
    return v.render("Frontier", active="/frontier", intro=(
        "GPQA Diamond against SWE-bench Verified across frontier releases: the population line with its "
        "prediction band, each release's residual h by lab, and each lab's trajectory. Add a hypothetical "
        "release to see its h and interval."))


# ------------------------------------------------------------------------------ structure and dynamics
@router.get("/structure", response_class=HTMLResponse)
@cached_page
async def structure(request: Request) -> HTMLResponse:
    v = _view(request)
    p = v.params("panel", "matrix", "dynamics_panel", "family", "degree")
    panel = p.get("panel", "paper-base")
    dpanel = p.get("dynamics_panel", "paper-nc")
    v.parts.append(L.form(
        L.select("panel", "Panel (eigenstructure)", _panel_options(), panel)
        + L.select("matrix", "Matrix", [("correlation", "correlation"), ("covariance", "covariance")],
                   p.get("matrix", "correlation"))
        + L.select("dynamics_panel", "Panel (dynamics)", _panel_options(), dpanel)
        + L.select("family", "Predict family", [("", "(none)")] + [(f, f) for f in _families(dpanel)],
                   p.get("family", ""))
        + L.select("degree", "ODE degree", [("1", "1 (linear)"), ("2", "2"), ("3", "3")], p.get("degree", "1")),
        action="/structure", submit="Show", label="Structure and dynamics"))

    def build() -> None:
        from ..report import figures as F

        results = []
        for phase in (None, "tax", "bonus"):
            eq = v.inputs("eigen", {"panel": panel, "matrix": p.get("matrix", "correlation")}
                          | ({"phase": phase} if phase else {}))
            if eq is None:
                return
            r, other = v.result("eigen", eq, what=f"the eigenstructure ({phase or 'all models'})")
            if r is not None:
                results.append(r)
            elif phase is None:
                v.parts.append(other or "")
        if results:
            deff = _estimates([r.d_eff for r in results])
            deff.insert(0, "models", [r.scope for r in results])
            body = (L.figure(F.eigen_spectra(results), fig_id="eigen-spectra",
                             frames=[(f"loadings ({r.scope})", r.loadings.reset_index()) for r in results],
                             text="\n\n".join(r.summary() for r in results))
                    + L.table(deff, caption="Effective dimension d_eff with intervals"))
            v.parts.append(_section("Eigen spectra and d_eff", body, sid="eigen"))
        wq = v.inputs("width", {})
        wd, other = v.result("width", wq, what="the width normalization") if wq is not None else (None, "")
        if wd is not None:
            v.parts.append(_section("Width normalization against its null",
                                    L.figure(F.width_null(wd), fig_id="width-null", frames=F.result_tables(wd),
                                             text=wd.summary()) + _api_link("width", wq), sid="width"))
        elif other:
            v.parts.append(other)
        cq = v.inputs("crossval", {"panel": dpanel})
        if cq is None:
            return
        cv, other = v.result("crossval", cq, what="the cross-validation")
        if cv is not None:
            body = (L.figure(F.crossval_errors(cv), fig_id="dynamics-crossval",
                             frames=F.result_tables(cv), text=cv.summary())
                    + L.figure(F.paper_protocol_table(cv.paper_protocol), fig_id="dynamics-paper-protocol")
                    + _api_link("crossval", cq))
            v.parts.append(_section("Scaling dynamics: cross-validation", body, sid="crossval"))
        else:
            v.parts.append(_section("Scaling dynamics: cross-validation", other or "", sid="crossval"))
        if p.get("family"):
            pq = v.inputs("predict", {"panel": dpanel, "family": p["family"], "degree": p.get("degree", 1)})
            if pq is None:
                return
            pr, other = v.result("predict", pq, what="the prediction")
            if pr is not None:
                body = L.table(pr.table, caption=f"{pr.family} predicted from its smallest model") + _pre(pr.summary())
                v.parts.append(_section(f"Predictions for {p['family']}", body + _api_link("predict", pq), sid="predict"))
            else:
                v.parts.append(other or "")

    await _run(build)
    return v.render("Structure and dynamics", active="/structure", intro=(
        "How many independent axes the benchmarks span (eigen spectra, d_eff with intervals, below and above "
        "N_c), and a sparse-regression ODE of the scores over size, scored on held-out families."))


# ------------------------------------------------------------------------------ predictions and audit
def _filterable(frame: pd.DataFrame, tid: str, caption: str) -> str:
    html = L.table(frame, caption=caption).replace("<table>", f"<table id='{tid}'>", 1)
    return (f"<div class='filter'><label for='filter-{tid}'>Filter rows</label> "
            f"<input id='filter-{tid}' class='filter' data-table='{tid}' type='search'></div>{html}")


@router.get("/audit", response_class=HTMLResponse)
@cached_page
async def audit(request: Request) -> HTMLResponse:
    v = _view(request)
    p = v.params("panel", "as_of")
    v.parts.append(L.form(L.select("panel", "Predictions against", _panel_options(), p.get("panel", "paper-frontier"))
                          + L.field("as_of", "As of", p.get("as_of"), help_="YYYY-MM-DD (default today)"),
                          action="/audit", submit="Show", label="Predictions"))

    def build() -> None:
        pq = v.inputs("predictions", {"panel": p.get("panel", "paper-frontier")}
                      | ({"as_of": p["as_of"]} if "as_of" in p else {}))
        if pq is not None:
            pr, other = v.result("predictions", pq, what="the predictions")
            if pr is not None:
                rows = pd.DataFrame([{"id": s.id, "prediction": s.title, "status": s.status, "now": s.provisional,
                                      "deadline": s.deadline, "evidence": s.reason} for s in pr.predictions])
                v.parts.append(_section("Predictions", _filterable(rows, "predictions", f"Predictions against "
                                                                   f"{pr.panel}, as of {pr.as_of}")
                                        + _api_link("predictions", pq), sid="predictions"))
            else:
                v.parts.append(other or "")
        aq = v.state.inputs("audit", {})
        res, other = v.result("audit", aq, what="the claims audit")
        if res is not None:
            cols = [c for c in ("id", "claim", "published", "paper", "sound", "verdict", "reason") if c in res.table]
            body = (f"<p class='headline'>{L.esc(res.summary())}</p>"
                    + _filterable(res.table[cols], "audit", "Each claim: published figure, CAPE's recomputation by the "
                                  "preprint's protocol, the sound variant, verdict and reason")
                    + _api_link("audit", aq))
            v.parts.append(_section("Claims audit", body, sid="audit"))
        else:
            v.parts.append(_section("Claims audit", other or "", sid="audit"))

    await _run(build)
    return v.render("Predictions and audit", active="/audit", intro=(
        "Paper B's falsifiable predictions evaluated against the data, and every headline claim of the two "
        "preprints recomputed, each row with its evidence."))
