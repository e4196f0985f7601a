"""The plotting layer: one function per figure, each drawing result objects into a
:class:`plotly.graph_objects.Figure`. The report and the dashboard both use it.

A figure function never computes a statistic: the analyses (:mod:`cape.analysis`,
:mod:`cape.predictions`) do, and a figure only places their numbers (it may evaluate a
fitted object's own method, e.g. :meth:`cape.analysis.frontier.Line.prediction_interval`,
to draw a curve). Every figure's title and subtitle state the data, n and method;
``fig.layout.meta`` holds ``name`` (the file name of its static export) and ``caption``
(a longer text for the report).

>>> import cape
>>> from cape.analysis import width_normalization
>>> from cape.report import figures
>>> fig = figures.width_null(width_normalization(cape.load_panel("paper-pythia"), seed=0))
>>> fig.layout.meta["name"]
'width-null'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..analysis.coupling import FamilyCoupling
from ..analysis.data import PairData
from ..analysis.dynamics import CrossValidation, PaperProtocol
from ..analysis.eigen import Eigenstructure
from ..analysis.frontier import BAND, Dynamics, HField, Labs, PopulationFit
from ..analysis.gamma import BONUS_ABOVE, TAX_BELOW, LocalCoupling, RunningCoupling
from ..analysis.nc import CriticalScale
from ..analysis.results import Estimate, Result, fmt_num
from ..analysis.saturation import Saturation
from ..analysis.width import WIDTH_UNIT, WidthNormalization
from ..predictions import PredictionReport
from ..units import date_range

__all__ = ["family_colours", "VERDICT_COLOURS", "STATUS_COLOURS", "AUDIT_COLUMNS", "phase_map", "coupling_forest",
           "nc_bootstrap", "running_coupling_fit", "width_null", "eigen_spectra", "crossval_errors",
           "paper_protocol_table", "frontier_scatter", "hfield_by_lab", "lab_trajectories",
           "saturation_spreads", "predictions_table", "audit_table", "steering_table", "steering_sweep",
           "internal_coupling", "head_coupling", "result_tables"]

#: Columns of an audit table (``audit.table``), in display order.
AUDIT_COLUMNS = ("id", "claim", "published", "paper", "sound", "verdict", "reason")
#: Cell colours of the audit verdicts (green, amber, red, grey, light grey; "pending" for a
#: prediction whose deadline has not come).
VERDICT_COLOURS = {"reproduced": "#c8e6c9", "reproduced but fragile": "#ffe0b2", "not reproduced": "#ffcdd2",
                   "not computable": "#e0e0e0", "not computed yet": "#f5f5f5", "pending": "#eceff1"}
#: Cell colours of prediction statuses.
STATUS_COLOURS = {"PASS": "#c8e6c9", "FAIL": "#ffcdd2", "UNDECIDED": "#ffe0b2", "PENDING": "#eceff1"}
_PALETTE = qualitative.D3 + qualitative.Dark2 + qualitative.Set1 + qualitative.Pastel
_TEMPLATE = "plotly_white"
_BAND_FILL = {"tax": "rgba(214, 39, 40, 0.07)", "transition": "rgba(127, 127, 127, 0.18)",
              "bonus": "rgba(44, 160, 44, 0.07)"}
_FONT = "Helvetica, Arial, sans-serif"
#: Characters per subtitle line (at the static export width of 1100 px, font size 12).
_SUBTITLE_WIDTH = 160


# ------------------------------------------------------------------------------ helpers
def _wrap(text: str, width: int = _SUBTITLE_WIDTH) -> list[str]:
    """Lines of at most ``width`` characters, broken between words."""
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    return lines + ([cur] if cur else [])


def _figure(name: str, title: str, subtitle: str, caption: str, height: int = 520) -> go.Figure:
    """An empty figure with the report's look: title, a subtitle giving data, n and method
    (wrapped), and ``meta`` = {name, caption}. Title and subtitle are text, never markup:
    they are escaped (a model or family name with ``<`` or ``&`` shows as written)."""
    import html

    title = html.escape(str(title), quote=False)
    lines = [html.escape(line, quote=False) for line in _wrap(subtitle)]
    top = 62 + 17 * len(lines)
    fig = go.Figure()
    fig.update_layout(
        template=_TEMPLATE, height=height + 17 * max(len(lines) - 1, 0), font=dict(family=_FONT, size=13),
        title=dict(text=f"<b>{title}</b>", x=0.01, xanchor="left", y=1.0, yanchor="top", yref="container",
                   pad=dict(t=14), subtitle=dict(text="<br>".join(lines), font=dict(size=12, color="#555"))),
        margin=dict(l=70, r=30, t=top, b=60), meta={"name": name, "caption": caption},
        legend=dict(font=dict(size=11)))
    return fig


def family_colours(keys: Iterable) -> dict:
    """One colour per key (family, lab), in order of first appearance."""
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(dict.fromkeys(keys))}


_colours = family_colours


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)


def _ci_text(e: Estimate) -> str:
    if e.ci is None or not all(_finite(c) for c in e.ci):
        return ""
    return f"{int(round(100 * (e.level or 0.95)))}% CI [{fmt_num(e.ci[0])}, {fmt_num(e.ci[1])}]"


def _log10_ticks(lo: float, hi: float) -> dict:
    """Tick values at whole decades between lo and hi (log10 units), labelled as sizes."""
    vals = list(range(int(math.floor(lo)), int(math.ceil(hi)) + 1))
    return dict(tickvals=vals, ticktext=[fmt_num(10.0 ** v) for v in vals])


def _cell(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return fmt_num(float(v), digits)
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(x, digits) for x in v)
    return str(v)


#: Characters of 11-px table text across the static export width (for row-height estimates).
_TABLE_CHARS = 160


def _table_figure(name: str, title: str, subtitle: str, caption: str, frame: pd.DataFrame,
                  *, colour_column: str | None = None, colours: dict | None = None,
                  widths: Sequence[float] | None = None) -> go.Figure:
    """A table figure (the audit, predictions and protocol tables), one cell colour per row
    taken from ``colours[row[colour_column]]``; its height fits the wrapped text."""
    cols = list(frame.columns)
    values = [[_cell(v) for v in frame[c]] for c in cols]
    fill = "white"
    if colour_column is not None and colours:
        row_fill = [colours.get(str(v), "white") for v in frame[colour_column]]
        fill = [row_fill] * len(cols)
    w = list(widths) if widths else [1.0] * len(cols)
    chars = [max(6.0, _TABLE_CHARS * x / sum(w) - 2) for x in w]
    header_lines = max(math.ceil(len(str(c)) / n) for c, n in zip(cols, chars)) if cols else 1
    body = sum(8 + 15 * max(math.ceil(len(values[j][i]) / chars[j]) or 1 for j in range(len(cols)))
               for i in range(len(frame)))
    fig = _figure(name, title, subtitle, caption, height=min(int(130 + 16 * header_lines + body), 4000))
    fig.add_trace(go.Table(
        columnwidth=list(widths) if widths else None,
        header=dict(values=[f"<b>{c}</b>" for c in cols], fill_color="#37474f", font=dict(color="white", size=12),
                    align="left"),
        cells=dict(values=values, fill_color=fill, align="left", font=dict(size=11), height=24)))
    fig.update_layout(margin=dict(l=20, r=20, b=20))
    return fig


def _vband(fig: go.Figure, x0: float, x1: float, colour: str, label: str, **kw) -> None:
    fig.add_vrect(x0=x0, x1=x1, fillcolor=colour, line_width=0, layer="below",
                  annotation_text=label, annotation_position="top left",
                  annotation_font=dict(size=11, color="#444"), **kw)


# ------------------------------------------------------------------------------ paper A
def phase_map(data: PairData, running: RunningCoupling, nc: CriticalScale | None = None, *,
              colours: dict | None = None) -> go.Figure:
    """The second benchmark (TruthfulQA) against log10 N for every model of ``data``,
    families coloured, with phase bands from the running coupling's zero crossing: its
    interval is the transition band, the tax band lies on the side where the fitted
    coupling is negative. ``nc`` adds the paper-protocol N_c (its own panel) as a line.
    ``colours`` maps family -> colour (share one map between figures)."""
    f = data.frame
    cross = running.crossing
    fams = data.families()
    sub = (f"{data.panel}: {data.n} models in {len(fams)} families; bands from the running coupling "
           f"gamma(N) = A log10 N + B over {running.n_intervals} within-family intervals "
           f"({running.panel}), N_c = {fmt_num(cross.value)} {_ci_text(cross)} ({cross.interval})")
    cap = (f"Each point is one model of {data.panel} ({data.b2} against log10 of its parameter count). "
           f"The grey band is the {_ci_text(cross) or 'interval'} of N_c, the size where the fitted running "
           f"coupling of {running.b2} on {running.b1} changes sign; on one side of it the coupling is negative "
           f"(tax: {running.b2} falls as {running.b1} rises), on the other positive (bonus).")
    if data.excluded:
        cap += f" Left out: {len(data.excluded)} model(s) without a size or a score."
    fig = _figure("phase-map", f"Phase map: {data.b2} against model size", sub, cap, height=560)
    colours = {**_colours(fams), **(colours or {})}
    for fam in fams:
        g = f[f["family"] == fam]
        fig.add_trace(go.Scatter(
            x=g["x"], y=g["b2"], mode="markers+lines", name=fam, marker=dict(size=8, color=colours[fam]),
            line=dict(width=1, color=colours[fam]), customdata=np.column_stack([g["model"], g["b1"]]),
            hovertemplate=(f"%{{customdata[0]}}<br>log10 N = %{{x:.2f}}<br>{data.b2} = %{{y:.1f}}"
                           f"<br>{data.b1} = %{{customdata[1]:.1f}}<extra>{fam}</extra>")))
    lo_x, hi_x = float(f["x"].min()) - 0.2, float(f["x"].max()) + 0.2
    if cross.defined:
        xc = math.log10(cross.value)
        rising = running.A.value > 0
        left, right = ("tax", "bonus") if rising else ("bonus", "tax")
        if cross.ci is not None and all(_finite(c) and c > 0 for c in cross.ci):
            c0, c1 = (math.log10(c) for c in cross.ci)
            c0, c1 = max(c0, lo_x), min(c1, hi_x)
        else:
            c0 = c1 = xc
        if c0 > lo_x:
            _vband(fig, lo_x, c0, _BAND_FILL[left], left)
        if c1 > c0:
            _vband(fig, c0, c1, _BAND_FILL["transition"], "N_c interval")
        if hi_x > c1:
            _vband(fig, c1, hi_x, _BAND_FILL[right], right)
        if lo_x <= xc <= hi_x:
            fig.add_vline(x=xc, line=dict(color="#333", dash="dash", width=1.5))
    if nc is not None and nc.paper.defined and lo_x <= math.log10(nc.paper.value) <= hi_x:
        fig.add_vline(x=math.log10(nc.paper.value), line=dict(color="#8c564b", dash="dot", width=1.5),
                      annotation_text=f"N_c paper protocol ({nc.panel}) {fmt_num(nc.paper.value)}",
                      annotation_position="bottom right", annotation_font=dict(size=10, color="#8c564b"))
    fig.update_xaxes(title="model size N (parameters, log10 scale)", range=[lo_x, hi_x], **_log10_ticks(lo_x, hi_x))
    fig.update_yaxes(title=f"{data.b2} (%)")
    return fig


def coupling_forest(res: FamilyCoupling) -> go.Figure:
    """Within-family r with its bootstrap interval per family (forest plot), and the pooled
    raw and family fixed-effects r below them."""
    t = res.table
    ok = t[np.isfinite(t["r"].astype(float))]
    undefined = t[~np.isfinite(t["r"].astype(float))]
    level = int(round(100 * res.level))
    sub = (f"{res.panel}: Pearson r of {res.b1} and {res.b2} within {len(ok)} families (n = 3-"
           f"{int(ok['n'].max()) if len(ok) else 0} models each); {level}% {res.ci_method.upper()} bootstrap "
           f"intervals over models, {res.n_bootstrap:,} resamples; pooled rows resample families")
    cap = (f"One row per family with 3 or more models: r (point) and its {level}% interval (bar); hover for "
           f"the permutation p ({res.n_permutations:,} orderings or exact), BH-FDR q, Spearman and partial r. "
           "A family of 3 models gets no interval (too few distinct resamples); with 4 the interval is nearly "
           "[-1, 1]: such a family says little alone.")
    if len(undefined):
        cap += " Not shown (r undefined): " + ", ".join(f"{r['family']} (n = {r['n']})"
                                                          for r in undefined.to_dict("records")) + "."
    fig = _figure("couplings", f"Within-family coupling of {res.b1} and {res.b2}", sub, cap,
                  height=max(420, 140 + 32 * (len(ok) + 2)))
    labels = [f"{r['family']} (n={r['n']})" for r in ok.to_dict("records")]
    fig.add_trace(go.Scatter(
        x=ok["r"], y=labels, mode="markers", name="family r", marker=dict(size=10, color="#1f77b4"),
        error_x=dict(type="data", symmetric=False, array=ok["ci_high"] - ok["r"], arrayminus=ok["r"] - ok["ci_low"],
                     thickness=1.5, width=4),
        customdata=np.column_stack([ok["ci_low"], ok["ci_high"], ok["p_perm"], ok["p_method"], ok["q_fdr"],
                                    ok["spearman"], ok["partial_r"].astype(float)]),
        hovertemplate=("r = %{x:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<br>p_perm = %{customdata[2]:.3g}"
                       " (%{customdata[3]})<br>q (BH-FDR) = %{customdata[4]:.3g}<br>Spearman = %{customdata[5]:.3f}"
                       "<br>partial r given size = %{customdata[6]:.3f}<extra>%{y}</extra>")))
    pooled = [e for e in (res.pooled_raw, res.pooled_fixed_effects) if e.defined]
    if pooled:
        lo = [e.ci[0] if e.ci else e.value for e in pooled]
        hi = [e.ci[1] if e.ci else e.value for e in pooled]
        vals = [e.value for e in pooled]
        fig.add_trace(go.Scatter(
            x=vals, y=[f"{e.name} (n={e.n})" for e in pooled], mode="markers", name="pooled",
            marker=dict(size=12, symbol="diamond", color="#d62728"),
            error_x=dict(type="data", symmetric=False, array=np.subtract(hi, vals), arrayminus=np.subtract(vals, lo),
                         thickness=1.5, width=4),
            hovertext=[e.describe() for e in pooled], hoverinfo="text"))
    fig.add_vline(x=0, line=dict(color="#888", width=1))
    fig.update_xaxes(title="Pearson r", range=[-1.05, 1.05], zeroline=False)
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_layout(margin=dict(l=230))
    return fig


def nc_bootstrap(nc: CriticalScale) -> go.Figure:
    """The N_c estimators side by side on a log10 N axis: the bootstrap distributions of the
    paper protocol and of the family bootstrap (kept resamples), each estimator's point and
    interval, and the leave-one-family-out estimates."""
    rows = [(nc.paper, nc.paper_distribution), (nc.family_bootstrap, nc.family_distribution)]
    if nc.running is not None:
        rows.append((nc.running, None))
    kept = [f"{e.name.split(':')[0].replace('N_c ', '')} {len(d):,} of {e.n_resamples or 0:,} resamples kept"
            for e, d in rows if d is not None]
    n_res = nc.paper.n_resamples or 0
    sub = (f"{nc.panel}: {len(nc.models)} models; quadratic vertex of {nc.b2} on log10 N, "
           f"{n_res:,} bootstrap resamples (kept when a > 0 and the vertex lies in 10^7-10^12), "
           f"running-coupling zero crossing, leave one family out")
    cap = ("Violins: bootstrap distributions of N_c (" + ", ".join(kept) +
           "). Points and bars: each estimator's full-data value and interval. The running-coupling "
           "estimator keeps no distribution, only its interval. Leave-one-family-out rows refit the paper "
           "protocol without one family.")
    fig = _figure("nc-bootstrap", "Critical scale N_c by estimator", sub, cap, height=560)

    def label(e: Estimate) -> str:
        return e.name.split(":")[0].replace("N_c ", "") + (": " + e.name.split(":", 1)[1].strip()
                                                          if ":" in e.name else "")

    xs = []
    for e, dist in rows:
        name = label(e)
        if dist is not None and len(dist):
            fig.add_trace(go.Violin(x=np.asarray(dist, float), y=[name] * len(dist), orientation="h",
                                    name=name, side="positive", width=1.6, points=False, showlegend=False,
                                    line=dict(color="#1f77b4", width=1), fillcolor="rgba(31, 119, 180, 0.3)",
                                    hoverinfo="skip", spanmode="hard"))
            xs += [float(np.min(dist)), float(np.max(dist))]
    pts = [(label(e), e, e.describe()) for e, _ in rows if e.defined and e.value > 0]
    for _, r in nc.leave_one_family_out.iterrows():
        if _finite(r["nc"]) and r["nc"] > 0:
            ci = (r["ci_low"], r["ci_high"]) if _finite(r["ci_low"]) else None
            pts.append((f"(e) without {r['left_out']}",
                        Estimate(f"without {r['left_out']}", float(r["nc"]), int(r["n"]), "paper protocol", ci=ci),
                        f"without {r['left_out']}: N_c = {fmt_num(r['nc'])}, median {fmt_num(r['median'])}, "
                        f"CI [{fmt_num(r['ci_low'])}, {fmt_num(r['ci_high'])}], n = {int(r['n'])} models, "
                        f"{int(r['discarded']):,} resamples discarded"))
    lx = [math.log10(e.value) for _, e, _ in pts]
    lo = [math.log10(e.ci[0]) if e.ci and _finite(e.ci[0]) and e.ci[0] > 0 else math.log10(e.value) for _, e, _ in pts]
    hi = [math.log10(e.ci[1]) if e.ci and _finite(e.ci[1]) and e.ci[1] > 0 else math.log10(e.value) for _, e, _ in pts]
    fig.add_trace(go.Scatter(
        x=lx, y=[n for n, _, _ in pts], mode="markers", name="estimate and interval",
        marker=dict(size=10, color="#d62728", symbol="diamond"),
        error_x=dict(type="data", symmetric=False, array=np.subtract(hi, lx), arrayminus=np.subtract(lx, lo),
                     thickness=1.5, width=4),
        hovertext=[h for _, _, h in pts], hoverinfo="text"))
    xs += lx + lo + hi
    finite = [v for v in xs if math.isfinite(v)]
    x0, x1 = max(min(finite) - 0.3, 6.0), min(max(finite) + 0.3, 13.0)
    fig.update_xaxes(title="N_c (parameters, log10 scale)", range=[x0, x1], **_log10_ticks(x0, x1))
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_layout(margin=dict(l=330), showlegend=False)
    return fig


def running_coupling_fit(running: RunningCoupling, *, colours: dict | None = None) -> go.Figure:
    """Interval couplings gamma against log10 N (families coloured, ``colours`` maps family
    -> colour) with the fitted line gamma(N) = A log10 N + B, the phase thresholds and the
    zero crossing's interval."""
    iv = running.intervals
    A, B, cross = running.A, running.B, running.crossing
    sub = (f"{running.panel}: {running.n_intervals} intervals in {running.n_families} families; OLS "
           f"A = {A.value:.3f} {_ci_text(A)}, B = {B.value:.2f} {_ci_text(B)}, R^2 = {running.r_squared:.3f}; "
           f"{A.interval}, {A.n_resamples or 0:,} resamples")
    cap = (f"Each point is gamma = d{running.b2}/d{running.b1} between consecutive sizes of one family, "
           f"placed at their geometric-mean size. The line is the fitted running coupling; dotted lines mark "
           f"the phase thresholds ({TAX_BELOW} and {BONUS_ABOVE}); the grey band is the N_c interval "
           f"({cross.describe()}).")
    fig = _figure("running-coupling", f"Running coupling of {running.b2} on {running.b1}", sub, cap, height=540)
    colours = {**_colours(iv["family"]), **(colours or {})}
    for fam, g in iv.groupby("family", sort=False):
        fig.add_trace(go.Scatter(
            x=g["x_mid"], y=g["gamma"], mode="markers", name=str(fam), marker=dict(size=9, color=colours[fam]),
            customdata=np.column_stack([g["model_lo"], g["model_hi"], g["phase"]]),
            hovertemplate="%{customdata[0]} -> %{customdata[1]}<br>log10 N = %{x:.2f}<br>gamma = %{y:.3f} "
                          "(%{customdata[2]})<extra>" + str(fam) + "</extra>"))
    x0, x1 = running.x_range
    line_x = np.array([x0, x1])
    line_y = np.array([running.gamma_at(10.0 ** v)[0] for v in line_x])
    fig.add_trace(go.Scatter(x=line_x, y=line_y, mode="lines", name="gamma(N) = A log10 N + B",
                             line=dict(color="#222", width=2.5)))
    for yv in (TAX_BELOW, BONUS_ABOVE):
        fig.add_hline(y=yv, line=dict(color="#999", dash="dot", width=1))
    fig.add_hline(y=0, line=dict(color="#666", width=1))
    if cross.defined and cross.ci is not None and all(_finite(c) and c > 0 for c in cross.ci):
        c0, c1 = max(math.log10(cross.ci[0]), x0 - 0.3), min(math.log10(cross.ci[1]), x1 + 0.3)
        if c1 > c0:
            _vband(fig, c0, c1, _BAND_FILL["transition"], f"N_c {fmt_num(cross.value)}")
    fig.update_xaxes(title="interval midpoint size (parameters, log10 scale)", range=[x0 - 0.3, x1 + 0.3],
                     **_log10_ticks(x0 - 0.3, x1 + 0.3))
    fig.update_yaxes(title=f"gamma = d{running.b2} / d{running.b1}")
    return fig


def width_null(res: WidthNormalization) -> go.Figure:
    """Histogram of the null r (unrelated scores divided by the same widths) with the
    observed width-normalised r marked, and the raw r beside it."""
    lo, hi = res.null_interval
    sub = (f"{res.panel}: {res.n} models; r after dividing both scores by d_model/{WIDTH_UNIT} against "
           f"{res.n_null:,} null draws (scores shuffled independently); observed at percentile "
           f"{res.percentile:.1f}, P(null >= observed) = {res.p_at_least:.3f}")
    cap = (f"Dividing two series by the same increasing width makes them correlate positively whatever they "
           f"are. The histogram is r for unrelated score pairs divided by these {res.n} models' widths; the "
           f"red line is the observed r = {res.r_normalised:+.3f} (raw r = {res.r_raw:+.3f}, grey line). "
           f"Shaded: the middle {int(100 * res.level)}% of the null [{lo:+.3f}, {hi:+.3f}].")
    fig = _figure("width-null", f"Width normalization of {res.b1} and {res.b2}: observed r against its null",
                  sub, cap, height=480)
    if res.null is not None:
        fig.add_trace(go.Histogram(x=np.asarray(res.null, float), nbinsx=80, name="null r",
                                   marker=dict(color="rgba(31, 119, 180, 0.6)"),
                                   hovertemplate="r %{x}<br>%{y} draws<extra>null</extra>"))
    fig.add_vrect(x0=lo, x1=hi, fillcolor="rgba(31, 119, 180, 0.08)", line_width=0, layer="below")
    fig.add_vline(x=res.r_normalised, line=dict(color="#d62728", width=3),
                  annotation_text=f"observed r = {res.r_normalised:+.3f}", annotation_position="top left",
                  annotation_font=dict(color="#d62728"))
    fig.add_vline(x=res.r_raw, line=dict(color="#555", width=2, dash="dash"),
                  annotation_text=f"raw r = {res.r_raw:+.3f}", annotation_position="top right")
    fig.update_xaxes(title="Pearson r", range=[-1.05, 1.05])
    fig.update_yaxes(title="null draws")
    fig.update_layout(showlegend=False, bargap=0.02)
    return fig


def eigen_spectra(results: Sequence[Eigenstructure]) -> go.Figure:
    """Scree plot: share of variance per component for each eigen-decomposition, with
    d_eff and its interval in the legend."""
    results = list(results)
    sub = "; ".join(f"{r.panel}, {r.scope.split(' (')[0]}: {r.n_models} models x {len(r.benchmarks)} benchmarks"
                    for r in results)
    method = results[0].d_eff.interval if results else ""
    cap = ("Eigenvalues of the benchmarks' " + ", ".join(sorted({r.matrix for r in results})) +
           " matrix as shares of their sum, largest first. d_eff = (sum lambda)^2 / sum lambda^2 runs from 1 "
           f"(one axis explains everything) to the number of benchmarks; its interval is a {method}. Models: "
           + "; ".join(f"{r.panel}, {r.scope}" for r in results) + ".")
    fig = _figure("eigen-spectra", "Eigen spectra of the benchmark matrix", sub, cap, height=480)
    colours = _colours(range(len(results)))
    for i, r in enumerate(results):
        comp = list(range(1, len(r.eigenvalues) + 1))
        fig.add_trace(go.Scatter(
            x=comp, y=[100 * v for v in r.explained], mode="lines+markers",
            name=f"{r.panel}, {r.scope.split(' (')[0]}: d_eff {fmt_num(r.d_eff.value)} {_ci_text(r.d_eff)}",
            marker=dict(size=9, color=colours[i]), line=dict(color=colours[i]),
            customdata=np.column_stack([r.eigenvalues, list(r.loadings.columns)]),
            hovertemplate="%{customdata[1]}: eigenvalue %{customdata[0]:.3g}, %{y:.1f}%<extra>" + r.panel + "</extra>"))
    fig.update_xaxes(title="component", dtick=1)
    fig.update_yaxes(title="share of the total (%)", rangemode="tozero")
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    return fig


# ------------------------------------------------------------------------------ dynamics
_SCHEME_TITLES = {"family": "leave one family out", "largest": "leave the largest size out"}


def crossval_errors(cv: CrossValidation) -> go.Figure:
    """MAE with its bootstrap interval per method, one panel per cross-validation scheme."""
    t = cv.table
    schemes = [s for s in cv.schemes if s in set(t["scheme"])]
    methods = list(dict.fromkeys(t["method"]))
    sub = (f"{cv.panel}: state {', '.join(cv.benchmarks)}, {len(cv.families)} families; sparse ODE (degree "
           f"{cv.degree}, threshold {cv.threshold:g}, {cv.scale} units) against baselines; MAE in points with a "
           "95% bootstrap interval over held-out families")
    cap = ("Held-out prediction error of each method. Every fold refits everything on its training rows only. "
           "Hover for n (scored points), MAPE, refused and diverged folds, and the MAE on the points the sparse "
           "ODE predicted. " + " ".join(cv.notes))
    fig = make_subplots(rows=1, cols=len(schemes), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[_SCHEME_TITLES.get(s, s) for s in schemes])
    base = _figure("dynamics-crossval", "Scaling dynamics: cross-validated prediction error", sub, cap,
                   height=max(460, 150 + 30 * len(methods)))
    fig.update_layout(base.layout)
    for j, s in enumerate(schemes, start=1):
        g = t[t["scheme"] == s].set_index("method").reindex(methods).dropna(subset=["mae"])
        fig.add_trace(go.Scatter(
            x=g["mae"], y=list(g.index), mode="markers", name=_SCHEME_TITLES.get(s, s), showlegend=False,
            marker=dict(size=10, color=["#d62728" if m.startswith("sparse ODE") else "#1f77b4" for m in g.index]),
            error_x=dict(type="data", symmetric=False, array=g["mae_high"] - g["mae"],
                         arrayminus=g["mae"] - g["mae_low"], thickness=1.5, width=4, color="#333"),
            customdata=np.column_stack([g["n"], g["mape"], g["refused"], g["diverged"], g["mae_shared"],
                                        g["mae_low"], g["mae_high"]]),
            hovertemplate=("MAE %{x:.2f} [%{customdata[5]:.2f}, %{customdata[6]:.2f}] points, n = %{customdata[0]}"
                           "<br>MAPE %{customdata[1]:.2f}%<br>refused %{customdata[2]}, diverged %{customdata[3]}"
                           "<br>MAE on the ODE's points %{customdata[4]:.2f}<extra>%{y}</extra>")), row=1, col=j)
        fig.update_xaxes(title_text="MAE (points)", rangemode="tozero", row=1, col=j)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(margin=dict(l=280))
    return fig


def paper_protocol_table(pp: PaperProtocol) -> go.Figure:
    """The preprint's held-out protocol beside the sparse regression, as a table."""
    t = pp.table.copy()
    t.columns = [c.replace("error_%_", "error % ") for c in t.columns]
    sub = (f"{pp.panel}: degree-{pp.degree} polynomial of {pp.benchmark} on log10 N fitted to "
           f"{' + '.join(pp.train)} ({pp.n_train} models), predicting {pp.test} ({len(pp.models)} models); "
           f"paper MAPE {pp.paper_mape:.2f}%")
    cap = (pp.summary() + " Signed errors are (predicted - observed) / observed. " + " ".join(pp.notes))
    return _table_figure("dynamics-paper-protocol", "Scaling dynamics: the preprint's hold-out protocol", sub,
                         cap, t, widths=[3.2] + [1] * (len(t.columns) - 1))


# ------------------------------------------------------------------------------ paper B
def frontier_scatter(fit: PopulationFit, hfield: HField) -> go.Figure:
    """Every frontier model (labs coloured; releases outside the fit marked), the population
    line, its proper prediction band and the preprint's band."""
    t = hfield.table
    line = fit.line
    level = int(round(100 * fit.level))
    sub = (f"{fit.panel} ({fit.subset} fit): {fit.n} models, {fit.n_labs} labs; OLS {fit.by} = "
           f"{line.slope:.3f} x {fit.bx} {line.intercept:+.1f}, r = {fit.r.value:+.3f} {_ci_text(fit.r)}; "
           f"{level}% prediction band t(n-2) s sqrt(1 + leverage)")
    inside = int(fit.new_releases["inside"].sum()) if len(fit.new_releases) else 0
    cap = (f"Filled points are the models the line is fitted on; open stars are releases outside the fit "
           f"({inside} of {len(fit.new_releases)} inside the {level}% prediction interval). The shaded band is the "
           f"proper prediction interval for a new model; the dashed lines are the preprint's band "
           f"(+-{fit.paper_halfwidth:.1f} points: z x the residual SD with an n denominator, no leverage).")
    fig = _figure("frontier-fit", f"Frontier population line: {fit.by} on {fit.bx}", sub, cap, height=580)
    grid = np.linspace(float(t["x"].min()) - 2, float(t["x"].max()) + 2, 120)
    lo, hi = line.prediction_interval(grid, fit.level)
    plo, phi = line.paper_interval(grid, fit.level)
    fig.add_trace(go.Scatter(x=np.r_[grid, grid[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", hoverinfo="skip",
                             fillcolor="rgba(31, 119, 180, 0.12)", line=dict(width=0),
                             name=f"{level}% prediction band"))
    for yv, show in ((plo, True), (phi, False)):
        fig.add_trace(go.Scatter(x=grid, y=yv, mode="lines", line=dict(color="#7f7f7f", dash="dash", width=1),
                                 name="preprint's band", showlegend=show, legendgroup="paper", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=grid, y=line.predict(grid), mode="lines", line=dict(color="#1f77b4", width=2.5),
                             name="population line", hoverinfo="skip"))
    colours = _colours(sorted(t["lab"].astype(str)))
    for lab in colours:
        g = t[t["lab"].astype(str) == lab]
        for in_fit, sym in ((True, "circle"), (False, "star-open")):
            gg = g[g["in_fit"] == in_fit]
            if gg.empty:
                continue
            fig.add_trace(go.Scatter(
                x=gg["x"], y=gg["y"], mode="markers", name=lab if in_fit else f"{lab} (outside the fit)",
                legendgroup=lab, showlegend=bool(in_fit or g["in_fit"].sum() == 0),
                marker=dict(size=11 if in_fit else 14, color=colours[lab], symbol=sym,
                            line=dict(width=1.5 if not in_fit else 0.5, color=colours[lab] if not in_fit else "white")),
                customdata=np.column_stack([gg["model"], gg["h"], gg["release_date"].astype(str)]),
                hovertemplate=(f"%{{customdata[0]}} ({lab}, %{{customdata[2]}})<br>{fit.bx} %{{x:.1f}}, {fit.by} "
                               "%{y:.1f}<br>h = %{customdata[1]:+.1f}<extra></extra>")))
    fig.update_xaxes(title=f"{fit.bx} (%)", range=[grid[0], grid[-1]])
    fig.update_yaxes(title=f"{fit.by} (%)")
    return fig


def hfield_by_lab(hfield: HField, labs: Labs) -> go.Figure:
    """Each model's residual h from the population line, by lab, with the lab mean and its
    t interval, and the band edges."""
    t = hfield.table
    lt = labs.table.sort_values("mean_h", ascending=False, kind="stable")
    order = list(lt["lab"]) + [lab for lab in dict.fromkeys(t["lab"]) if lab not in set(lt["lab"])]
    counts = ", ".join(f"{k} {v}" for k, v in hfield.band_counts.items())
    sub = (f"{hfield.panel}: h = {hfield.by} - line({hfield.bx}) for {len(t)} models "
           f"({int(t['in_fit'].sum())} in the {hfield.subset} fit), {len(order)} labs; bands at "
           f"+-{fmt_num(hfield.band)} ({counts}); lab mean with a {int(100 * labs.level)}% t interval")
    cap = ("Points are models (open: outside the fit, still measured against its line); diamonds are the lab's "
           "mean h over its fitted models with a t interval (labs with two or more models). Dotted lines are the "
           "band edges: above is reasoning-specialist, below coding excursion.")
    fig = _figure("hfield-labs", "h-field by lab", sub, cap, height=520)
    colours = _colours(sorted(t["lab"].astype(str)))
    for lab in order:
        g = t[t["lab"] == lab]
        fig.add_trace(go.Scatter(
            x=[lab] * len(g), y=g["h"], mode="markers", name=lab, showlegend=False,
            marker=dict(size=10, color=colours.get(lab, "#1f77b4"), opacity=0.85,
                        symbol=["circle" if f else "circle-open" for f in g["in_fit"]]),
            customdata=np.column_stack([g["model"], g["band"]]),
            hovertemplate="%{customdata[0]}<br>h = %{y:+.1f} (%{customdata[1]})<extra>" + str(lab) + "</extra>"))
    lt = lt[lt["n"] >= 2]
    ci_lo = (lt["mean_h"] - lt["mean_h_low"]).where(lt["mean_h_low"].notna(), 0)
    ci_hi = (lt["mean_h_high"] - lt["mean_h"]).where(lt["mean_h_high"].notna(), 0)
    fig.add_trace(go.Scatter(
        x=lt["lab"], y=lt["mean_h"], mode="markers", name="lab mean h",
        marker=dict(size=11, symbol="diamond-open", color="#222", line=dict(width=2)),
        error_y=dict(type="data", symmetric=False, array=ci_hi, arrayminus=ci_lo, thickness=1.5, width=6),
        customdata=np.column_stack([lt["n"], lt["mean_h_core"]]),
        hovertemplate="mean h %{y:+.1f} over %{customdata[0]} models (core: %{customdata[1]:+.1f})<extra>%{x}</extra>"))
    for yv in (-hfield.band, hfield.band):
        fig.add_hline(y=yv, line=dict(color="#999", dash="dot", width=1))
    fig.add_hline(y=0, line=dict(color="#666", width=1))
    fig.update_xaxes(title=None, categoryorder="array", categoryarray=order)
    fig.update_yaxes(title="h (points)")
    return fig


def lab_trajectories(dyn: Dynamics) -> go.Figure:
    """Each lab's releases in the analysis's date order: h against release date. A date
    given only to the month or year is placed at the middle of that period."""
    t = dyn.table
    dated = t.assign(_range=t["release_date"].map(date_range))
    mid = dated["_range"].map(lambda r: r[0] + (r[1] - r[0]) / 2)
    span = dated["_range"].map(lambda r: (r[1] - r[0]).days)
    n_labs = t["lab"].nunique()
    sub = (f"{dyn.panel}: {len(t)} dated releases of {n_labs} labs; h from the {dyn.subset} fit "
           f"({dyn.line.describe(dyn.bx, dyn.by)}); |dh| > {fmt_num(dyn.jump)} marked as a jump")
    cap = ("Releases of one lab joined in date order (the middle of the period a date can mean: a date given "
           "only as a year sits at mid-year and is drawn open). Large open circles mark jumps between consecutive "
           "releases; overlapping dates make the order uncertain (see hover). " +
           (f"Left out (no date): {', '.join(e['model'] for e in dyn.excluded)}." if dyn.excluded else ""))
    fig = _figure("lab-trajectories", "Lab trajectories: h by release date", sub, cap, height=540)
    colours = _colours(sorted(t["lab"].astype(str)))
    for lab, g in t.groupby("lab", sort=True):
        idx = g.index
        fig.add_trace(go.Scatter(
            x=list(mid[idx]), y=g["h"], mode="lines+markers", name=str(lab),
            line=dict(color=colours[str(lab)], width=1.5),
            marker=dict(size=9, color=colours[str(lab)],
                        symbol=["circle-open" if span[i] > 31 else "circle" for i in idx]),
            customdata=np.column_stack([g["model"], g["release_date"].astype(str), g["dh"], g["gamma"],
                                        g["order_note"].fillna("")]),
            hovertemplate=("%{customdata[0]} (%{customdata[1]})<br>h = %{y:+.1f}, dh = %{customdata[2]:+.1f}"
                           "<br>gamma = %{customdata[3]:.2f}<br>%{customdata[4]}<extra>" + str(lab) + "</extra>")))
    jumps = t[t["jump"].astype(bool)]
    if len(jumps):
        fig.add_trace(go.Scatter(x=list(mid[jumps.index]), y=jumps["h"], mode="markers", name="jump",
                                 marker=dict(size=20, symbol="circle-open", color="#d62728", line=dict(width=2)),
                                 hoverinfo="skip"))
    for yv in (-BAND, BAND):
        fig.add_hline(y=yv, line=dict(color="#999", dash="dot", width=1))
    fig.add_hline(y=0, line=dict(color="#666", width=1))
    fig.update_xaxes(title="release date")
    fig.update_yaxes(title="h (points)")
    return fig


def saturation_spreads(sat: Saturation) -> go.Figure:
    """Top-k spread per benchmark with its parametric-bootstrap interval, next to the
    binomial noise floor (the spread k equally good models would show by chance)."""
    t = sat.table
    sub = (f"{sat.panel} ({sat.subset}): top {sat.top_k} models per benchmark; spread = max - min with a "
           f"{int(100 * sat.level)}% parametric binomial bootstrap interval; floor = E[range of {sat.top_k} "
           f"normals] x SE on the item count; sigma = {fmt_num(sat.sigma.value)} {_ci_text(sat.sigma)}")
    cap = (f"Bars: the spread of the top {sat.top_k} scores. Red lines: the noise floor; a spread at or below it "
           f"cannot separate the top models. {sat.recommendation}." + "".join(f" Note: {n}." for n in sat.notes))
    fig = _figure("saturation", "Saturation: top-k spreads against noise floors", sub, cap, height=480)
    has = t["spread"].notna()
    g = t[has]
    fig.add_trace(go.Bar(
        x=g["benchmark"], y=g["spread"], name=f"top-{sat.top_k} spread", marker_color="#1f77b4",
        error_y=dict(type="data", symmetric=False, array=(g["spread_high"] - g["spread"]).fillna(0),
                     arrayminus=(g["spread"] - g["spread_low"]).fillna(0), thickness=1.5, width=8),
        customdata=np.column_stack([g["top_models"], g["items"].astype(object), g["n"]]),
        hovertemplate="spread %{y:.2f} points<br>top: %{customdata[0]}<br>%{customdata[1]} items, "
                      "%{customdata[2]} models<extra>%{x}</extra>"))
    fl = g[g["noise_spread"].notna()]
    fig.add_trace(go.Scatter(x=fl["benchmark"], y=fl["noise_spread"], mode="markers", name="binomial noise floor",
                             marker=dict(size=70, symbol="line-ew-open", color="#d62728", line=dict(width=4)),
                             customdata=np.column_stack([fl["se"], fl["top_mean"]]),
                             hovertemplate="floor %{y:.2f} (SE %{customdata[0]:.2f} at %{customdata[1]:.1f}%)"
                                           "<extra>%{x}</extra>"))
    fig.update_yaxes(title="points", rangemode="tozero")
    fig.update_layout(bargap=0.5)
    return fig


def predictions_table(report: PredictionReport) -> go.Figure:
    """The status of every prediction as a table, rows coloured by status."""
    t = report.table
    counts = t["status"].value_counts()
    sub = (f"{report.panel}, as of {report.as_of}: {len(t)} predictions; "
           + ", ".join(f"{s} {int(counts.get(s, 0))}" for s in STATUS_COLOURS))
    cap = ("PASS or FAIL once the deadline is reached and a rule holds (FAIL checked first); UNDECIDED between "
           "the bands; PENDING before the deadline (with the provisional verdict) or when too few models qualify.")
    return _table_figure("predictions", "Paper B's falsifiable predictions", sub, cap,
                         t[["id", "title", "status", "provisional", "deadline", "reason"]],
                         colour_column="status", colours=STATUS_COLOURS, widths=[0.6, 2.2, 1, 1, 1, 5])


# ------------------------------------------------------------------------------ audit, steering
def audit_table(audit) -> go.Figure:
    """The claims audit: one row per claim, coloured by verdict. ``audit.table`` has the
    columns of :data:`AUDIT_COLUMNS`."""
    t = audit.table
    missing = [c for c in AUDIT_COLUMNS if c not in t.columns]
    if missing:
        from ..errors import CapeError
        raise CapeError(f"the audit table lacks the column(s) {', '.join(missing)} "
                        f"(expected {', '.join(AUDIT_COLUMNS)})")
    counts = t["verdict"].value_counts()
    order = [v for v in VERDICT_COLOURS if v in counts] + [v for v in counts.index if v not in VERDICT_COLOURS]
    sub = f"{len(t)} claims: " + ", ".join(f"{v} {int(counts[v])}" for v in order)
    cap = ("Each claim of the preprints recomputed from data: 'paper' is the value by the preprint's protocol, "
           "'sound' by the sound variant; the verdict compares them with the published figure.")
    return _table_figure("audit", "Claims audit", sub, cap, t[list(AUDIT_COLUMNS)], colour_column="verdict",
                         colours=VERDICT_COLOURS, widths=[0.5, 2.4, 1.6, 1.4, 1.4, 1.2, 3.2])


def breakpoint_profile(flip) -> go.Figure:
    """The flip test's breakpoint profile (:class:`cape.analysis.flip.FlipTest`): the
    within-family step model's penalised log-likelihood at every split, its beta, the
    tested N_c, the estimated breakpoint with its interval and the claimed interval."""
    prof = flip.profile
    ok = prof[prof["n_families_spanning"] >= 2]
    bp = flip.breakpoint
    where = (f"breakpoint {fmt_num(bp.value)}, {_ci_text(bp)} (family bootstrap, {bp.n_resamples or 0:,} resamples)"
             if bp.defined else f"no breakpoint ({bp.note})")
    sub = (f"{flip.n_families} families, {flip.n_intervals} interval couplings; conditional logit of P(tax-signed) on "
           f"'above the split', families weighted equally; {where}")
    cap = ("Line: penalised log-likelihood of a within-family step at each split that separates the intervals "
           "differently (splits with 2+ families spanning them). A flat profile means no split is special. "
           "Shaded: the claimed interval of N_c. Dashed: the N_c tested. Bar: the breakpoint's bootstrap interval. "
           f"Verdict: {flip.verdict}.")
    fig = _figure("breakpoint-profile", "Where does the coupling flip within families?", sub, cap, height=480)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06,
                        figure=fig)
    fig.add_trace(go.Scatter(x=ok["log10_split"], y=ok["loglik"], mode="lines+markers", name="log-likelihood",
                             hovertext=[f"split {fmt_num(r.split)}: loglik {r.loglik:.2f}, beta {r.beta:+.2f}, "
                                        f"{r.n_families_spanning} families" for r in ok.itertuples()],
                             hoverinfo="text", line=dict(color="#1f77b4")), row=1, col=1)
    fig.add_trace(go.Scatter(x=ok["log10_split"], y=ok["beta"], mode="lines+markers", name="beta",
                             line=dict(color="#d62728")), row=2, col=1)
    if flip.claimed is not None:
        _vband(fig, math.log10(flip.claimed[0]), math.log10(flip.claimed[1]), "rgba(255, 165, 0, 0.18)",
               "claimed N_c interval", row="all", col=1)
    fig.add_vline(x=math.log10(flip.n_c), line_dash="dash", line_color="#555")
    if bp.defined and bp.ci is not None and all(_finite(c) and c > 0 for c in bp.ci):
        top = float(ok["loglik"].max()) if len(ok) else 0.0
        x = math.log10(bp.value)
        fig.add_trace(go.Scatter(x=[x], y=[top], mode="markers", name="breakpoint",
                                 marker=dict(size=11, symbol="diamond", color="#2ca02c"),
                                 error_x=dict(type="data", symmetric=False, array=[math.log10(bp.ci[1]) - x],
                                              arrayminus=[x - math.log10(bp.ci[0])], thickness=1.5, width=5)),
                      row=1, col=1)
    if len(ok):
        x0, x1 = float(ok["log10_split"].min()) - 0.2, float(ok["log10_split"].max()) + 0.2
        fig.update_xaxes(range=[x0, x1], **_log10_ticks(x0, x1))
    fig.update_xaxes(title="split (parameters, log10 scale)", row=2, col=1)
    fig.update_yaxes(title="log-likelihood", row=1, col=1)
    fig.update_yaxes(title="beta", row=2, col=1)
    fig.add_hline(y=0, line_color="#999", row=2, col=1)
    return fig


def result_tables(result) -> list[tuple[str, pd.DataFrame]]:
    """The DataFrames a result carries: its ``tables`` mapping when it has one, else its
    dataclass fields that are frames; then a ``table`` attribute (e.g. a property) if it is
    not one of them."""
    import dataclasses

    out: list[tuple[str, pd.DataFrame]] = []
    named = getattr(result, "tables", None)
    if isinstance(named, dict) and all(isinstance(v, pd.DataFrame) for v in named.values()):
        return list(named.items())
    if dataclasses.is_dataclass(result):
        for f in dataclasses.fields(result):
            v = getattr(result, f.name, None)
            if isinstance(v, pd.DataFrame):
                out.append((f.name, v))
    t = getattr(result, "table", None)
    if isinstance(t, pd.DataFrame) and not any(v is t for _, v in out):
        out.insert(0, ("table", t))
    return out


def steering_table(steering: Result) -> go.Figure:
    """Steering results: the first table the result carries, under its summary."""
    tables = result_tables(steering)
    summary = steering.summary() if hasattr(steering, "summary") else repr(steering)
    first = summary.splitlines()[0] if summary else "steering"
    name, t = tables[0] if tables else ("summary", pd.DataFrame({"summary": summary.splitlines()}))
    return _table_figure("steering", "Steering", first, summary, t)


_SWEEP_PANELS = (("mc1", "MC1"), ("mc2", "MC2"), ("corrected", "corrected rate (open-ended)"),
                 ("ce_increase", "cross-entropy increase (nats/token)"), ("kl", "KL from unsteered"))


def _err(frame: pd.DataFrame, col: str) -> dict | None:
    """Asymmetric error bars from a ``<col>_ci`` column of [low, high] lists (None if absent)."""
    ci = frame.get(f"{col}_ci")
    if ci is None:
        return None
    lo = np.array([c[0] if isinstance(c, (list, tuple)) and len(c) == 2 else np.nan for c in ci], float)
    hi = np.array([c[1] if isinstance(c, (list, tuple)) and len(c) == 2 else np.nan for c in ci], float)
    v = frame[col].to_numpy(float)
    return dict(type="data", symmetric=False, array=hi - v, arrayminus=v - lo, thickness=1, width=3)


def steering_sweep(ev) -> go.Figure:
    """A steering evaluation (:class:`cape.steer.evaluate.SteeringEvaluation`) against alpha:
    MC1, MC2, the open-ended corrected rate (when answers were judged), the cross-entropy
    increase on neutral text and the KL from the unsteered model; per layer the steered vector
    (with its intervals), its negation and the random directions of equal norm (their mean,
    and their range as a band), with the unsteered model and the truthful-instruction prompt
    as horizontal lines."""
    c = ev.conditions
    m = ev.meta
    panels = [(col, label) for col, label in _SWEEP_PANELS
              if col in c and pd.to_numeric(c[col], errors="coerce").notna().any()]
    rand = ev.random_summary()
    sub = (f"{ev.model_id}: {m.get('n_questions')} held-out TruthfulQA questions ({m.get('targets')}); alpha in "
           f"{m.get('unit')}; {m.get('n_random')} random directions of equal norm per setting; 95% intervals "
           f"(MC2, CE, KL: t over questions or windows; MC1, corrected: Wilson)")
    cap = ("Steered: the vector at alpha; negated: minus the vector; random: directions of the same norm "
           "(line: their mean, band: their range). Horizontal lines: the unsteered model and the "
           "truthful-instruction prompt (no steering). A vector helps only as far as it beats the random "
           "directions and the prompt.")
    fig = _figure("steering-sweep", f"Steering sweep: {ev.model_id}", sub, cap, height=300 + 220 * len(panels))
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[label for _, label in panels], figure=fig)
    layers = sorted({int(x) for x in c.loc[c["condition"] == "steered", "layer"].dropna()})
    colours = {layer: _PALETTE[i % len(_PALETTE)] for i, layer in enumerate(layers)}
    flat = {name: c[c["condition"] == name] for name in ("unsteered", "prompt")}
    for row, (col, label) in enumerate(panels, start=1):
        for layer in layers:
            colour = colours[layer]
            for name, dash in (("steered", "solid"), ("negated", "dash")):
                part = c[(c["condition"] == name) & (c["layer"] == layer)].sort_values("alpha")
                if part.empty or part[col].isna().all():
                    continue
                fig.add_trace(go.Scatter(
                    x=part["alpha"], y=part[col], mode="lines+markers", name=f"{name}, layer {layer}",
                    legendgroup=f"{name}{layer}", showlegend=row == 1, line=dict(color=colour, dash=dash),
                    error_y=_err(part, col) if name == "steered" else None,
                    hovertemplate=f"{name}, layer {layer}<br>alpha %{{x}}<br>{label} %{{y:.4f}}<extra></extra>"),
                    row=row, col=1)
            part = rand[rand["layer"] == layer].sort_values("alpha") if len(rand) else rand
            if len(part) and col in part and part[col].notna().any():
                fig.add_trace(go.Scatter(
                    x=list(part["alpha"]) + list(part["alpha"])[::-1],
                    y=list(part[f"{col}_max"]) + list(part[f"{col}_min"])[::-1], mode="lines", fill="toself",
                    fillcolor="rgba(127,127,127,0.15)", line=dict(width=0), hoverinfo="skip",
                    legendgroup=f"random{layer}", showlegend=False), row=row, col=1)
                fig.add_trace(go.Scatter(
                    x=part["alpha"], y=part[col], mode="lines+markers", name=f"random (mean), layer {layer}",
                    legendgroup=f"random{layer}", showlegend=row == 1,
                    line=dict(color="#7f7f7f", dash="dot"), marker=dict(symbol="x"),
                    hovertemplate=f"random mean, layer {layer}<br>alpha %{{x}}<br>{label} %{{y:.4f}}<extra></extra>"),
                    row=row, col=1)
        for name, dash in (("unsteered", "solid"), ("prompt", "dashdot")):
            f = flat[name]
            if f.empty or col not in f or pd.isna(f[col].iloc[0]):
                continue
            fig.add_hline(y=float(f[col].iloc[0]), line=dict(color="#333" if name == "unsteered" else "#9467bd",
                                                             dash=dash, width=1),
                          annotation_text=name, annotation_position="top left", row=row, col=1)
    fig.update_xaxes(title=f"alpha ({m.get('unit')})", row=len(panels), col=1)
    return fig


def internal_coupling(res) -> go.Figure:
    """Internal coupling per layer (:class:`cape.steer.internals.InternalCoupling`): the raw
    cosine (uncentred, the preprints' measure) beside the centred one with its null band."""
    t = res.table
    m = res.meta
    sub = (f"{res.model_id}: {m.get('n_truth')} truth statements ({m.get('truth_source')}), {m.get('n_reason')} "
           f"reasoning statements; pooling {m.get('pooling')}; null band: 2.5-97.5% of the centred cosine over "
           f"{m.get('n_null')} random label splits")
    cap = ("Raw: cosine of the mean states of true and of correct statements, uncentred (the preprints' measure, "
           "dominated by the residual stream's shared mean). Centred: cosine of the truth direction (true minus "
           "false) and the reasoning direction (correct minus incorrect). Inside the band, the centred cosine is "
           "what arbitrary splits of the same statements give.")
    fig = _figure("internal-coupling", f"Internal coupling by layer: {res.model_id}", sub, cap, height=480)
    x = t["layer"].to_numpy(int)
    fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(t["null_high"]) + list(t["null_low"])[::-1],
                             mode="lines", fill="toself", fillcolor="rgba(127,127,127,0.2)", line=dict(width=0),
                             name="null band (centred)", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=t["centred_cos"], mode="lines+markers", name="centred cosine",
                             line=dict(color="#1f77b4"),
                             hovertemplate="layer %{x}<br>centred %{y:+.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=t["raw_cos"], mode="lines+markers", name="raw cosine (preprints)",
                             line=dict(color="#d62728", dash="dash"),
                             hovertemplate="layer %{x}<br>raw %{y:.4f}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.update_xaxes(title="block (0-based; its output)")
    fig.update_yaxes(title="cosine", range=[-1.05, 1.05])
    return fig


def head_coupling(res) -> go.Figure:
    """Per attention head (layer x head): the cosine between the head's contributions to the
    truth and the reasoning contrasts, competing heads marked under both definitions."""
    h = res.heads
    m = res.meta
    hc = m.get("heads") or {}
    grid = h.pivot(index="head", columns="layer", values="cos")
    sub = (f"{res.model_id}: {hc.get('n_heads')} heads; cosine of each head's contribution to true-minus-false and "
           f"to correct-minus-incorrect; o: competing by the preprint's rule (per-pair cosine below -0.5 on more "
           f"than half of {m.get('n_pairs')} pairs), x: below the 2.5% tail of {m.get('n_null')} random label splits")
    cap = (f"Competing heads: {hc.get('paper', {}).get('k')} by the preprint's definition, "
           f"{hc.get('sound', {}).get('k')} against the null ({hc.get('sound', {}).get('expected_by_chance', 0):.1f} "
           f"expected by chance).")
    fig = _figure("head-coupling", f"Heads: truth against reasoning, {res.model_id}", sub, cap, height=460)
    fig.add_trace(go.Heatmap(z=grid.to_numpy(), x=list(grid.columns), y=list(grid.index), zmin=-1, zmax=1,
                             colorscale="RdBu", colorbar=dict(title="cosine"),
                             hovertemplate="layer %{x}, head %{y}<br>cosine %{z:+.3f}<extra></extra>"))
    for col, symbol, name in (("competing_paper", "circle-open", "competing (preprint)"),
                              ("competing_sound", "x", "competing (vs null)")):
        sel = h[h[col].astype(bool)]
        fig.add_trace(go.Scatter(x=sel["layer"], y=sel["head"], mode="markers", name=name,
                                 marker=dict(symbol=symbol, size=10, color="black")))
    fig.update_xaxes(title="layer")
    fig.update_yaxes(title="head")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig


def probe_accuracy(layers: pd.DataFrame, *, chosen: int, model_id: str, method: str, source: str,
                   n_eval: int, quarter: int | None = None) -> go.Figure:
    """Held-out probe accuracy per layer with its Wilson interval (``cape steer layers``): the
    chosen layer and the preprint's n_layers // 4 marked, chance at 0.5."""
    x = layers["layer"].to_numpy(int)
    acc = layers["probe_acc"].to_numpy(float)
    lo, hi = layers["ci_low"].to_numpy(float), layers["ci_high"].to_numpy(float)
    sub = (f"{model_id}: {len(x)} layers; {method} direction from {source}; accuracy of the direction "
           f"as a probe on {n_eval} held-out statements (questions never used to extract), "
           f"95% Wilson intervals")
    cap = (f"Each point is the share of held-out statements that the layer's direction classifies right "
           f"(threshold midway between the classes' mean projections on the extraction split). "
           f"Chosen layer {chosen}: {acc[x == chosen][0]:.3f}. The dashed line is chance (0.5).")
    fig = _figure("probe-accuracy", f"Truth-probe accuracy per layer: {model_id}", sub, cap, height=460)
    fig.add_trace(go.Scatter(x=x, y=acc, mode="lines+markers", name="held-out accuracy",
                             error_y=dict(type="data", symmetric=False, array=hi - acc, arrayminus=acc - lo,
                                          thickness=1, width=3),
                             hovertemplate="layer %{x}<br>accuracy %{y:.3f}<extra></extra>"))
    fig.add_hline(y=0.5, line=dict(color="#888", dash="dash"), annotation_text="chance",
                  annotation_position="bottom right")
    fig.add_vline(x=chosen, line=dict(color="#d62728", width=2),
                  annotation_text=f"chosen {chosen}", annotation_position="top left",
                  annotation_font=dict(color="#d62728"))
    if quarter is not None and quarter != chosen:
        fig.add_vline(x=quarter, line=dict(color="#555", width=1, dash="dot"),
                      annotation_text=f"preprint n_layers // 4 = {quarter}", annotation_position="top right")
    fig.update_xaxes(title="block (0-based; its output)", dtick=max(1, len(x) // 15))
    fig.update_yaxes(title="held-out accuracy", range=[min(0.3, float(np.nanmin(lo)) - 0.02),
                                                       max(1.0, float(np.nanmax(hi)) + 0.02)])
    fig.update_layout(showlegend=False)
    return fig


# ------------------------------------------------------------------------------ dashboard
def family_scores(frame: pd.DataFrame, family: str, benchmarks: Sequence[str] | None = None) -> go.Figure:
    """One family's scores against model size, one line per benchmark (the panel's own
    values; nothing is fitted)."""
    f = frame.reset_index() if "model" not in frame.columns else frame
    g = f[f["family"].astype(str) == str(family)].dropna(subset=["params"]).sort_values("params")
    benches = list(benchmarks or frame.attrs.get("cape", {}).get("benchmarks", []))
    benches = [b for b in benches if b in g.columns and g[b].notna().any()]
    panel = frame.attrs.get("cape", {}).get("panel", "")
    sub = f"{panel}: family {family}, {len(g)} models with a size; {len(benches)} benchmarks (percent)"
    cap = (f"Each line is one benchmark of family {family} against log10 of the parameter count; points are the "
           f"panel's scores as stored (newest run), nothing fitted.")
    fig = _figure("family-scores", f"{family}: scores against model size", sub, cap, height=460)
    colours = _colours(benches)
    x = np.log10(g["params"].to_numpy(float)) if len(g) else np.array([])
    for b in benches:
        fig.add_trace(go.Scatter(x=x, y=g[b], mode="lines+markers", name=b, marker=dict(color=colours[b], size=8),
                                 line=dict(color=colours[b]), customdata=g["model"],
                                 hovertemplate="%{customdata}<br>log10 N = %{x:.2f}<br>" + b
                                 + " = %{y:.1f}<extra></extra>"))
    if len(x):
        lo, hi = float(x.min()) - 0.2, float(x.max()) + 0.2
        fig.update_xaxes(range=[lo, hi], **_log10_ticks(lo, hi))
    fig.update_xaxes(title="model size N (parameters, log10 scale)")
    fig.update_yaxes(title="score (%)")
    return fig


def interval_gammas(lc: LocalCoupling, family: str | None = None) -> go.Figure:
    """Interval couplings gamma = dB/dA against the interval's size (geometric mean), phase
    coloured; one family or all."""
    t = lc.intervals if family is None else lc.intervals[lc.intervals["family"].astype(str) == str(family)]
    scope = f"family {family}" if family else "all families"
    sub = (f"{lc.panel}, {scope}: {len(t)} intervals between consecutive sizes (|d{lc.b1}| >= {lc.guard} pp), "
           f"{len(lc.dropped)} dropped in the panel")
    cap = (f"gamma = d{lc.b2} / d{lc.b1} between consecutive sizes of a family, placed at the geometric mean of the "
           f"two sizes; negative is a tax ({lc.b2} falls as {lc.b1} rises), positive a bonus.")
    fig = _figure("interval-gammas", f"Interval couplings d{lc.b2}/d{lc.b1}", sub, cap, height=420)
    colour = {"tax": "#d62728", "bonus": "#2ca02c"}
    for ph, g in t.groupby("phase", sort=True):
        fig.add_trace(go.Scatter(x=np.log10(g["params_mid"].to_numpy(float)), y=g["gamma"], mode="markers",
                                 name=str(ph), marker=dict(size=10, color=colour.get(str(ph), "#7f7f7f")),
                                 customdata=np.column_stack([g["family"], g["model_lo"], g["model_hi"]]),
                                 hovertemplate="%{customdata[0]}: %{customdata[1]} -> %{customdata[2]}<br>gamma = "
                                               "%{y:+.3f}<extra></extra>"))
    if len(t):
        xs = np.log10(t["params_mid"].to_numpy(float))
        lo, hi = float(xs.min()) - 0.3, float(xs.max()) + 0.3
        fig.update_xaxes(range=[lo, hi], **_log10_ticks(lo, hi))
    fig.add_hline(y=0, line_color="#999")
    fig.update_xaxes(title="interval size (parameters, log10 scale)")
    fig.update_yaxes(title="gamma")
    return fig


def add_marker(fig: go.Figure, x: float, y: float, name: str, *, hover: str = "") -> go.Figure:
    """Draw one given point (a user's model, a hypothetical release) on a figure as a star."""
    fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name=html_escape(name),
                             marker=dict(symbol="star", size=18, color="#111", line=dict(color="#ffb36b", width=2)),
                             hovertemplate=html_escape(hover or name) + "<extra></extra>"))
    return fig


def html_escape(text: str) -> str:
    """Text for a Plotly label: escaped, so a name with < or & shows as written."""
    import html

    return html.escape(str(text), quote=False)


_DATA_TEXT = ("name", "text", "hovertext", "customdata", "x", "y", "labels", "ids", "legendgrouptitle")


def _inert(value):
    if isinstance(value, str):
        return value.replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, (list, tuple)):
        return type(value)(_inert(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
        return np.vectorize(_inert, otypes=[object])(value) if value.size else value
    return value


def inert_text(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` in which text that may come from users (trace names, category
    values, hover texts, custom data) cannot become markup: Plotly renders a subset of HTML
    in labels (``<a href>`` makes a link), so ``<`` and ``>`` are escaped. Titles and
    templates are CAPE's own and already escaped where they quote data. ``fig`` is left as
    it is; the copy is made from its properties as they are (no second validation)."""
    def prune(d: dict) -> dict:
        # what validating the copy dropped: objects left empty (e.g. an axis title only read)
        for k, v in list(d.items()):
            if isinstance(v, dict) and not prune(v):
                del d[k]
        return d

    spec = prune(fig.to_dict())
    for trace in spec.get("data", ()):
        prune(trace)
        for key in _DATA_TEXT:
            value = trace.get(key)
            if value is not None:
                trace[key] = _inert(value)
    # built without validating again (its properties are fig's, already validated, and the
    # escaped text is text), then validating as usual for whatever the caller sets later
    out = go.Figure(spec, _validate=False)
    for obj in (out, out.layout, *out.data):
        obj._validate = True
    return out
