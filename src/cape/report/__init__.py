"""The shareable report: every analysis of the bundled panels drawn with Plotly into one
self-contained HTML page (works offline) plus PNG and SVG files of each figure.

``cape.report.figures`` is the plotting layer (one function per figure, result objects in,
a Plotly figure out); :func:`build_report` runs the analyses and writes the report;
:mod:`cape.report.export` writes the static files (kaleido, or Playwright as a fallback).

>>> from cape.report import build_report
>>> res = build_report("cape-report", seed=0)          # doctest: +SKIP
>>> res.html                                           # doctest: +SKIP
PosixPath('.../cape-report/report.html')
"""

from . import figures
from .build import FIGURES_DIR, REPORT_FILE, ReportFigure, ReportResult, build_report
from .export import StaticExport, export_static, find_browser

__all__ = ["figures", "build_report", "ReportResult", "ReportFigure", "REPORT_FILE", "FIGURES_DIR",
           "export_static", "StaticExport", "find_browser"]
