"""The report's single HTML page: plotly.js inline (no CDN, nothing fetched), one
section per part of the analysis, each figure with its caption, the numbers behind it and
links to its static files.

Everything here formats; the numbers come from the result objects.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ..analysis.results import fmt_num
from .export import plotly_js_path

__all__ = ["PLOTLY_CONFIG", "FigureBlock", "TextBlock", "Section", "render_page", "frame_html"]

#: Plotly's in-page options: no logo link, nothing that sends a figure off the machine, a PNG
#: button at the export size.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False,
                 "toImageButtonOptions": {"format": "png", "width": 1100, "scale": 2}}


@dataclass
class FigureBlock:
    """A figure in the page: the figure, the text of the result behind it, its static files
    (relative paths) and extra HTML shown under it."""

    fig: go.Figure
    numbers: str = ""
    files: dict[str, str] = field(default_factory=dict)
    extra_html: str = ""

    @property
    def name(self) -> str:
        return self.fig.layout.meta["name"]


@dataclass
class TextBlock:
    """A panel of text: a result's summary and tables, or a 'not computed' notice."""

    title: str
    html: str
    kind: str = "panel"           # "panel" or "missing"


@dataclass
class Section:
    id: str
    title: str
    intro: str
    blocks: list[FigureBlock | TextBlock]


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return fmt_num(float(v))
    return str(v)


def frame_html(frame: pd.DataFrame, *, max_rows: int = 500) -> str:
    """A DataFrame as an HTML table, numbers formatted for people, text escaped."""
    shown = frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for rec in shown.itertuples(index=False):
        rows.append("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in rec) + "</tr>")
    more = (f"<p class='note'>{len(frame) - max_rows:,} more rows not shown.</p>" if len(frame) > max_rows else "")
    return (f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
            f"</tbody></table></div>{more}")


def _figure_html(block: FigureBlock) -> str:
    fig = block.fig
    meta = fig.layout.meta
    from .figures import inert_text

    div = pio.to_html(inert_text(fig), include_plotlyjs=False, full_html=False, div_id=f"fig-{block.name}",
                      config=PLOTLY_CONFIG, default_height=f"{int(fig.layout.height or 520)}px")
    links = " ".join(f"<a href='{html.escape(path)}'>{fmt.upper()}</a>" for fmt, path in block.files.items())
    numbers = (f"<details><summary>Numbers</summary><pre>{html.escape(block.numbers)}</pre></details>"
               if block.numbers else "")
    return (f"<figure class='cape-figure' id='{html.escape(block.name)}' data-figure='{html.escape(block.name)}'>"
            f"{div}<figcaption>{html.escape(meta['caption'])}"
            f"{' <span class=files>Static: ' + links + '</span>' if links else ''}</figcaption>"
            f"{numbers}{block.extra_html}</figure>")


def _text_html(block: TextBlock) -> str:
    return (f"<div class='cape-{block.kind}'><h3>{html.escape(block.title)}</h3>{block.html}</div>")


_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa;line-height:1.45}
header{background:#263238;color:#fff;padding:18px 32px}header h1{margin:0 0 6px;font-size:26px}
header p{margin:2px 0;color:#cfd8dc;font-size:14px}main{max-width:1250px;margin:0 auto;padding:10px 28px 60px}
nav{background:#fff;border:1px solid #ddd;padding:10px 18px;margin:18px 0}nav a{margin-right:14px}
section{margin-top:34px}h2{border-bottom:2px solid #263238;padding-bottom:4px}
.cape-figure{background:#fff;border:1px solid #ddd;margin:18px 0;padding:10px 14px}
figcaption{font-size:14px;color:#333;margin:6px 4px}.files{color:#666;margin-left:8px}
details{margin:6px 4px;font-size:13px}pre{white-space:pre-wrap;background:#f3f3f3;padding:8px;font-size:12px}
.cape-panel{background:#fff;border:1px solid #ddd;padding:10px 16px;margin:18px 0}
.cape-missing{background:#fff8e1;border:1px dashed #c9a227;padding:10px 16px;margin:18px 0}
.cape-missing code,.intro code{background:#f1f1f1;padding:1px 4px}
.table-wrap{overflow:auto;max-height:520px;margin:8px 0}table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}th{background:#eceff1;position:sticky;top:0}
.note{color:#666;font-size:13px}
"""


def render_page(title: str, header_lines: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page as one string: plotly.js inline in the head, then the sections."""
    js = plotly_js_path().read_text(encoding="utf-8")
    nav = " ".join(f"<a href='#section-{s.id}'>{html.escape(s.title)}</a>" for s in sections)
    body = []
    for s in sections:
        parts = [_figure_html(b) if isinstance(b, FigureBlock) else _text_html(b) for b in s.blocks]
        body.append(f"<section id='section-{s.id}'><h2>{html.escape(s.title)}</h2><p class='intro'>{s.intro}</p>"
                    + "".join(parts) + "</section>")
    head_lines = "".join(f"<p>{html.escape(line)}</p>" for line in header_lines)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<link rel='icon' href='data:,'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{js}</script></head><body>"
            f"<header><h1>{html.escape(title)}</h1>{head_lines}</header><main><nav>{nav}</nav>"
            + "".join(body) + "</main></body></html>\n")
