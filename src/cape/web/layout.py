"""The pages' building blocks: the shell (navigation, skip link, landmarks), forms with
labelled inputs, figures with their numbers as a table, error notices and job progress.

Everything a user typed is data: it is HTML-escaped here, and figures travel as JSON in a
``<script type="application/json">`` block (``<`` escaped), drawn by ``/static/cape.js``
with the Plotly bundled in the installed package.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from .. import __version__
from ..report.page import frame_html

__all__ = ["NAV", "page", "figure", "table", "form", "field", "select", "checkbox", "notice", "job_block",
           "esc", "fig_json", "url", "numbers"]

esc = html.escape

#: (path, label) of every page, in the navigation's order.
NAV = [("/", "Overview"), ("/analyze", "Analyze a model"), ("/families", "Families"), ("/frontier", "Frontier"),
       ("/structure", "Structure and dynamics"), ("/audit", "Predictions and audit"), ("/steering", "Steering"),
       ("/data", "Data")]


def url(path: str, params: dict | None = None) -> str:
    """A link that keeps the state: ``path?k=v`` for the non-empty values."""
    q = {k: v for k, v in (params or {}).items() if v not in (None, "", False)}
    return path + ("?" + urlencode(q, doseq=True) if q else "")


def page(title: str, body: str, *, active: str = "/", intro: str = "", needs_plotly: bool = True) -> str:
    """A whole page: header with navigation, the main content, and the scripts (deferred,
    so the page paints before Plotly is parsed)."""
    current = " aria-current='page'"
    nav = "".join(f"<li><a href='{p}'{current if p == active else ''}>{esc(label)}</a></li>" for p, label in NAV)
    scripts = ("<script defer src='/static/plotly.min.js'></script>" if needs_plotly else "") + \
        "<script defer src='/static/cape.js'></script>"
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)} · CAPE</title><link rel='icon' href='data:,'>"
            f"<link rel='stylesheet' href='/static/cape.css'>{scripts}</head><body>"
            "<a class='skip' href='#main'>Skip to content</a>"
            "<header class='top'><div class='brand'><a href='/'>CAPE</a>"
            "<span>capability-coupling analysis</span></div>"
            f"<nav aria-label='Pages'><ul>{nav}</ul></nav></header>"
            f"<main id='main' tabindex='-1'><h1>{esc(title)}</h1>"
            + (f"<p class='intro'>{intro}</p>" if intro else "") + body +
            f"</main><footer>CAPE {esc(__version__)} · every number computed by the Python engine; "
            "the same results at <a href='/api/analyses'>/api</a> (schema: <a href='/openapi.json'>/openapi.json</a>)"
            "</footer></body></html>\n")


def fig_json(fig) -> str:
    """A Plotly figure as JSON safe inside a script element: user text made inert
    (:func:`cape.report.figures.inert_text`), long numeric arrays (bootstrap draws) sent as
    typed float32 arrays (Plotly's base64 encoding, a third of the text), ``<``, ``>`` and
    ``&`` escaped for the script element."""
    import numpy as np

    from ..report.figures import inert_text

    fig = inert_text(fig)
    for trace in fig.data:
        for axis in ("x", "y"):
            values = getattr(trace, axis, None)
            if values is not None and not isinstance(values, np.ndarray) and len(values) > 500:
                arr = np.asarray(values)
                if arr.dtype.kind in "fiu":
                    trace[axis] = arr.astype(np.float32)
                elif trace.type in ("violin", "box") and len(set(values)) == 1:
                    trace[axis] = None                      # one category repeated per draw:
                    trace[axis + "0"] = values[0]           # the same position, said once
    return fig.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def table(frame: pd.DataFrame, *, caption: str = "", max_rows: int = 500) -> str:
    """A DataFrame as an accessible table (escaped cells, header row, caption)."""
    body = frame_html(frame, max_rows=max_rows)
    if caption:
        body = body.replace("<table>", f"<table><caption>{esc(caption)}</caption>", 1)
    # a table that scrolls must be reachable by keyboard: a focusable, labelled region
    label = esc(caption or "table")
    return body.replace("<div class='table-wrap'>", f"<div class='table-wrap' tabindex='0' role='region' "
                                                     f"aria-label='{label}'>", 1)


def numbers(frames: Sequence[tuple[str, pd.DataFrame]], *, open_: bool = False) -> str:
    """The numbers behind a figure, as tables in a disclosure."""
    if not frames:
        return ""
    inner = "".join(table(f, caption=name) for name, f in frames if f is not None and len(f.columns))
    return f"<details class='numbers'{' open' if open_ else ''}><summary>Numbers behind the figure</summary>{inner}</details>"


def figure(fig, *, fig_id: str, frames: Sequence[tuple[str, pd.DataFrame]] = (), text: str = "") -> str:
    """A figure: the chart (drawn by cape.js), its caption, its numbers as tables and the
    result's summary text."""
    meta = fig.layout.meta or {}
    title = meta.get("title") if isinstance(meta, dict) else None
    caption = meta.get("caption", "") if isinstance(meta, dict) else ""
    label = title or (fig.layout.title.text if fig.layout.title and fig.layout.title.text else fig_id)
    summary = f"<details class='numbers'><summary>Summary</summary><pre>{esc(text)}</pre></details>" if text else ""
    # the figure element carries the label: the plot itself holds Plotly's toolbar buttons, so
    # it cannot be role=img (no interactive content inside an image)
    return (f"<figure class='cape-figure' id='fig-{esc(fig_id)}' aria-label='{esc(_plain(label))}'>"
            f"<div class='plot' data-figure='{esc(fig_id)}'></div>"
            f"<script type='application/json' class='figure-data' data-for='{esc(fig_id)}'>{fig_json(fig)}</script>"
            f"<figcaption>{esc(caption)}</figcaption>{numbers(frames)}{summary}</figure>")


def _plain(text: Any) -> str:
    import re

    return re.sub(r"<[^>]+>", " ", str(text or "")).strip()


def field(name: str, label: str, value: Any = None, *, type_: str = "text", help_: str = "", required: bool = False,
          attrs: str = "") -> str:
    """A labelled input; ``help_`` is tied to it with aria-describedby."""
    fid = f"f-{name}"
    val = "" if value is None else str(value)
    desc = f" aria-describedby='{fid}-help'" if help_ else ""
    helptext = f"<small id='{fid}-help'>{esc(help_)}</small>" if help_ else ""
    return (f"<div class='field'><label for='{fid}'>{esc(label)}</label>"
            f"<input id='{fid}' name='{esc(name)}' type='{type_}' value='{esc(val)}'"
            f"{' required' if required else ''}{desc} {attrs}>{helptext}</div>")


def select(name: str, label: str, options: Iterable[tuple[str, str]], value: Any = None, *, help_: str = "") -> str:
    fid = f"f-{name}"
    opts = "".join(f"<option value='{esc(v)}'{' selected' if str(value) == v else ''}>{esc(t)}</option>"
                   for v, t in options)
    desc = f" aria-describedby='{fid}-help'" if help_ else ""
    helptext = f"<small id='{fid}-help'>{esc(help_)}</small>" if help_ else ""
    return (f"<div class='field'><label for='{fid}'>{esc(label)}</label>"
            f"<select id='{fid}' name='{esc(name)}'{desc}>{opts}</select>{helptext}</div>")


def checkbox(name: str, label: str, checked: bool = False) -> str:
    fid = f"f-{name}"
    return (f"<div class='field check'><input id='{fid}' name='{esc(name)}' type='checkbox' value='true'"
            f"{' checked' if checked else ''}><label for='{fid}'>{esc(label)}</label></div>")


def form(fields: str, *, action: str, submit: str, method: str = "get", label: str = "", extra: str = "") -> str:
    """A form; GET forms put their state in the URL, so a view can be shared."""
    enc = " enctype='multipart/form-data'" if method == "post" else ""
    aria = f" aria-label='{esc(label)}'" if label else ""
    return (f"<form class='controls' method='{method}' action='{esc(action)}'{enc}{aria}>{fields}"
            f"<div class='actions'><button type='submit'>{esc(submit)}</button>{extra}</div></form>")


def notice(messages: str | Sequence[str], *, kind: str = "error", title: str | None = None) -> str:
    """An error (role=alert) or an information notice, every line escaped."""
    if isinstance(messages, str):
        messages = [messages]
    head = title or {"error": "Could not compute this", "info": "Note", "disabled": "Not available here"}.get(kind, "")
    items = "".join(f"<li>{esc(m)}</li>" for m in messages)
    role = " role='alert'" if kind == "error" else ""
    return f"<div class='notice {kind}'{role}><strong>{esc(head)}</strong><ul>{items}</ul></div>"


def job_block(job, *, what: str) -> str:
    """A running computation: a progress bar the script updates; the page reloads when the
    job is done. Cancel stops it."""
    return (f"<div class='job' data-job='{esc(job.id)}' aria-live='polite'>"
            f"<p>Computing {esc(what)}… <span class='job-status'>{esc(job.status)}</span></p>"
            f"<progress max='1' value='0' aria-label='Progress of {esc(what)}'></progress>"
            f"<button type='button' class='cancel' data-job='{esc(job.id)}'>Cancel</button>"
            f"<noscript>Reload the page to see the result when it is done.</noscript></div>")

