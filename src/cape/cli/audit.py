"""``cape audit``: every claim of the two preprints recomputed from data, with a verdict.

This command only presents: every number comes from :mod:`cape.audit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..defaults import DEFAULT_BOOTSTRAP, REPLICATION_PANEL
from ..errors import CapeError
from ._app import JsonOpt, ResOpt, SeedOpt, _emit, _progress, command_set, lazy, out

load_claims = lazy("cape.audit", "load_claims")
run_audit = lazy("cape.audit", "run_audit")

commands = command_set()

_STYLE = {"reproduced": "green", "reproduced but fragile": "yellow", "not reproduced": "red",
          "not computable": "dim", "not computed yet": "dim"}


@commands.command("audit")
def audit_cmd(
    claims: Annotated[Optional[Path], typer.Option(
        "--claims", help="A claims file (cape-claims/1 YAML) instead of the built-in one.")] = None,
    only: Annotated[Optional[str], typer.Option("--only", help="Comma-separated claim ids (e.g. A1,B1).")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the audit as a Markdown table (every "
                                                              "column, the full evidence).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Below the table, the full evidence of each "
                                                                 "claim: CAPE's recomputation by the preprint's "
                                                                 "protocol, the sound variant and the whole "
                                                                 "reason.")] = False,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Also write the Markdown table to this file.")] = None,
    replication: Annotated[bool, typer.Option(
        "--replication/--no-replication", help="Add the independent replication on openllm-v1-base (within-family "
                                               "couplings with FDR, sign changes, N_c by estimator, h(D), the "
                                               "phase picture).")] = True,
    steering: Annotated[Optional[list[Path]], typer.Option(
        "--steering", help="Saved steering evaluations (files or folders; repeatable) for claim A17; default: "
                           "those `cape steer eval` recorded in $CAPE_HOME/steering.")] = None,
    resamples: ResOpt = DEFAULT_BOOTSTRAP,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Audit the preprints' claims: one row per claim (A1-A18, B1-B9 and paper B's seven
    predictions) with the published figure, CAPE's recomputation by the preprint's protocol,
    the sound variant (family resampling, exact tests, corrected data, null models,
    out-of-sample scores) and a verdict: reproduced, reproduced but fragile, not reproduced,
    not computable (or a prediction's status), with the reason in numbers. The table shows
    CAPE's figure and the reason in brief; --verbose, --markdown and --output give the full
    evidence."""
    rows = load_claims(claims) if claims is not None else None
    with _progress("claims", as_json or markdown) as tick:
        res = run_audit(rows, seed=seed, n_resamples=resamples,
                        only=[s for s in only.split(",") if s.strip()] if only else None,
                        replication=REPLICATION_PANEL if replication else None, steering=steering,
                        progress=tick)
    if output is not None:
        try:
            output.write_text(res.to_markdown() + "\n", encoding="utf-8")
        except OSError as exc:
            raise CapeError(f"cannot write {output}: {exc.strerror or exc}") from None
    if _emit(res, as_json, command="audit"):
        return
    if markdown:
        out.print(res.to_markdown(), highlight=False, markup=False, soft_wrap=True)
        return
    # Claims files are data: every cell is a Text, so "[red]" in a claim prints as written.
    t = Table(title=f"Claims audit ({res.n_resamples:,} resamples, seed {res.seed})", show_lines=True)
    for c, w in (("id", 6), ("claim", 30), ("published", 24), ("CAPE", 26), ("verdict", 12), ("reason", 44)):
        t.add_column(c, overflow="fold", max_width=w)
    records = res.table.to_dict("records")
    for r in records:
        t.add_row(Text(str(r["id"])), Text(str(r["claim"])), Text(str(r["published"])), Text(str(r["figure"])),
                  Text(str(r["verdict"]), style=_STYLE.get(r["verdict"], "cyan")), Text(str(r["brief"])))
    out.print(t)
    if verbose:
        for r in records:
            out.print(Text(f"\n{r['id']}: {r['claim']}", style="bold"))
            out.print(Text(f"  CAPE (paper protocol): {r['paper']}"))
            if r["sound"]:
                out.print(Text(f"  sound variant: {r['sound']}"))
            if r["reason"] != r["paper"]:
                out.print(Text(f"  reason: {r['reason']}"))
    else:
        out.print(Text("(--verbose: the full evidence of each claim)", style="dim"))
    if res.replication is not None:
        out.print(f"\nIndependent replication ({res.replication.panel})", style="bold")
        out.print(res.replication.summary(), highlight=False, markup=False)
    out.print(Text(res.summary()), highlight=False)
