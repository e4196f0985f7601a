"""``cape report``: the shareable report (one offline HTML page plus PNG and SVG figures).

This command only presents: :func:`cape.report.build_report` runs the analyses and writes
the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import JsonOpt, _emit, _progress, command_set, err, out

commands = command_set()


@commands.command("report")
def report_cmd(
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write report.html and figures/ into (created; an earlier CAPE report "
                            "there is replaced).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed for every resampling (the same seed gives the "
                                      "same report).")] = 0,
    static: Annotated[bool, typer.Option("--static/--no-static", help="Also write figures/NAME.png and "
                                         ".svg (needs a Chromium browser).")] = True,
    audit: Annotated[bool, typer.Option("--audit/--no-audit", help="Run the claims audit and the independent "
                                        "replication (as `cape audit`) and add them to the report.")] = True,
    advise_families: Annotated[Optional[str], typer.Option(
        "--advise", help="Comma-separated families of openllm-v1-base to add intervention suggestions for "
                         "(as `cape advise --family F`), e.g. Pythia,OPT.")] = None,
    steering: Annotated[Optional[list[Path]], typer.Option(
        "--steering", help="Saved steering evaluations (files or folders; repeatable) for the steering section "
                           "and claim A17; default: those `cape steer eval` recorded in $CAPE_HOME/steering.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the claims audit and every analysis on the bundled panels and write the report:
    one self-contained report.html that works offline (plotly.js inline, no network
    request), and a PNG and an SVG of each figure. The steering section shows the steering
    evaluations `cape steer eval` recorded (or --steering); a section not computed yet says
    which command computes it."""
    from ..audit import run_audit
    from ..report import build_report
    from ..report.build import check_out_dir

    from ..steer.evaluate import saved_evaluations
    from ..steer.internals import saved_internals

    check_out_dir(out_dir)                 # a folder that cannot be written is refused before any work
    evaluations = saved_evaluations(steering)  # reading them needs no torch
    result = None
    if audit:
        with _progress("audit", as_json) as tick:
            result = run_audit(seed=seed, progress=tick, steering=steering)
    advice = []
    if advise_families:
        from ..analysis.advise import advise
        from ..api import load_panel
        from ..audit import REPLICATION_PANEL

        frame = load_panel(REPLICATION_PANEL, clean=True)
        rep = None if result is None else result.replication
        with _progress("advice", as_json) as tick:
            fams = [f.strip() for f in advise_families.split(",") if f.strip()]
            for i, fam in enumerate(fams):
                advice.append(advise(frame, family=fam, replication_result=rep, seed=seed))
                tick(i + 1, len(fams))
    with _progress("report", as_json) as tick:
        res = build_report(out_dir, seed=seed, static=static, audit=result,
                           replication=None if result is None else result.replication, advice=advice,
                           steering=evaluations or None, internals=saved_internals(),
                           progress=tick)
    if _emit(res, as_json, command="report"):
        return
    if result is not None:
        out.print(result.summary(), highlight=False)
    out.print(f"Report: {res.html}", highlight=False)
    out.print(f"  {len(res.figures)} figures; {res.static_note}", highlight=False)
    if res.static_method:
        out.print(f"  PNG and SVG files: {res.out_dir / 'figures'}", highlight=False)
    if res.missing:
        out.print(f"  not computed yet: {', '.join(res.missing)}", highlight=False)
    out.print(f"  built in {res.timings['total']:.1f} s", highlight=False)
    if static and not res.static_method:
        err.print(f"warning: {res.static_note}", highlight=False, markup=False)
