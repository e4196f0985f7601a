"""``cape panels | show | ingest | export | benchmarks | flags``: the panels, their scores and
the reference tables, and storing your own results.

These commands only present: every figure comes from :mod:`cape.api`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import catalog
from ..benchmarks import BENCHMARKS
from ..errors import CapeError
from ..flags import FLAGS
from ..units import UNITS
from ._app import (BenchOpt, CleanOpt, CorrOpt, FamilyOpt, JsonOpt, RunOpt, ShotsOpt, api, command_set, err,
                   lazy, out, parse_shots, _cell, _emit_json, _human_count, _records)

find_result_files = lazy("cape.io", "find_result_files")

commands = command_set()

from ._app import AllOpt, CsvOpt, _emit_csv, _esc, _formats, _print_table, _shown  # noqa: E402  (long tables)


# ----------------------------------------------------------------------------- panels
@commands.command()
def panels(as_json: JsonOpt = False) -> None:
    """List the panels: the built-in reference panels and those in your store."""
    rows = catalog.summaries()  # what api.list_panels() holds, without loading any panel
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="CAPE panels")
    for col in ("name", "kind", "models", "families", "scores", "benchmarks"):
        t.add_column(col, overflow="fold", justify="right" if col in ("models", "families", "scores") else "left")
    for r in rows:
        t.add_row(r["name"], "built-in" if r["builtin"] else "stored", str(r["models"]),
                  str(r["families"]), str(r["scores"]), ", ".join(r["benchmarks"]))
    out.print(t)


# ------------------------------------------------------------------------------- show
@commands.command()
def show(
    panel: Annotated[str, typer.Argument(help="Panel name (see `cape panels`).")],
    benchmarks: BenchOpt = None,
    family: FamilyOpt = None,
    clean: CleanOpt = False,
    corrected: CorrOpt = False,
    long: Annotated[bool, typer.Option("--long", help="One row per score (with variant, "
                                                       "shots, source and flags).")] = False,
    history: Annotated[bool, typer.Option("--history", help="One row per score of every run, "
                                          "with its run date and status: current (used), older "
                                          "run, not picked or conflict.")] = False,
    run: RunOpt = None,
    shots: ShotsOpt = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Show a panel: one row per model, one column per benchmark (percent). Where a model
    has several runs of a benchmark the newest is shown; --history lists them all.

    A panel longer than the screen shows its first rows (1,000 into a pipe or file) and says
    so: --all prints every row, --json or --csv gives them all as data."""
    _formats(as_json, as_csv)
    if long or history:
        frame = api.load_scores(panel, benchmarks=benchmarks, family=family, clean=clean,
                                corrected=corrected, history=history, run=run)
        log = frame.attrs["cape"]["log"]
        if as_json:
            _emit_json({"panel": panel, "clean": clean, "corrected": corrected, "log": log,
                        "scores": _records(frame)})
            return
        if as_csv:
            _emit_csv(frame)
            return
        t = Table(title=f"{panel}: {len(frame)} scores")
        shown = ("model", "benchmark", "variant", "value", "stderr", "n_shot", "source", "flags")
        shown += ("run_date", "status") if "status" in frame.columns else ()
        for col in shown:
            t.add_column(col, overflow="fold", justify="right" if col in ("value", "stderr", "n_shot") else "left")
        rows, note = _shown(frame, show_all, "scores")
        for r in rows.to_dict("records"):
            t.add_row(*[_esc(_cell(r[c])) for c in shown])
        _print_table(t, note)
        _print_log(log)
        return
    frame = api.load_panel(panel, benchmarks=benchmarks, family=family, clean=clean,
                           corrected=corrected, run=run, shots=parse_shots(shots))
    info = frame.attrs["cape"]
    if as_json:
        rows = _records(frame.reset_index())
        _emit_json({"panel": panel, "clean": clean, "corrected": corrected,
                    "benchmarks": info["benchmarks"], "variants": info["variants"],
                    "log": info["log"], "models": rows})
        return
    if as_csv:
        _emit_csv(frame.reset_index())
        return
    cols = info["benchmarks"]
    t = Table(title=f"{panel}: {len(frame)} models",
              caption="scores in percent; variants: " + "; ".join(
                  f"{b} {'/'.join(info['variants'][b])}" for b in cols))
    t.add_column("model", overflow="fold")
    t.add_column("family")
    t.add_column("params", justify="right")
    extra = [c for c in ("subset", "release_date") if c in frame.columns and frame[c].notna().any()]
    for c in extra:
        t.add_column(c)
    for b in cols:
        t.add_column(BENCHMARKS[b].title if b in BENCHMARKS else b, justify="right")
    t.add_column("flags", overflow="fold")
    rows, note = _shown(frame, show_all, "models")
    score_flags = _score_flags(panel, benchmarks, family, clean, corrected, info["variants"],
                               models=set(map(str, rows.index)))
    for mid, r in rows.iterrows():
        flags = "; ".join(x for x in (_cell(r["flags"]), score_flags.get(str(mid), "")) if x)
        t.add_row(_esc(mid), _esc(_cell(r["family"])), _human_count(r["params"]),
                  *[_esc(_cell(r[c])) for c in extra], *[_cell(r[b]) for b in cols], _esc(flags))
    _print_table(t, note)
    _print_log(info["log"])


def _score_flags(panel: str, benchmarks, family, clean: bool, corrected: bool,
                 variants: dict[str, list[str]], models: set[str] | None = None) -> dict[str, str]:
    """Model -> the flags of the scores shown in its benchmark columns, as
    ``gsm8k limited:8/2376`` (the wide table's flags column shows them after the model's);
    ``models``: only these (the rows a long table shows)."""
    from ..benchmarks import UNSPECIFIED

    scores = api.load_scores(panel, benchmarks=benchmarks, family=family, clean=clean,
                             corrected=corrected)
    scores = scores[scores["flags"].fillna("") != ""]
    if models is not None:
        scores = scores[scores["model"].astype(str).isin(models)]
    out: dict[str, list[str]] = {}
    for r in scores.to_dict("records"):
        variant = r["variant"] if isinstance(r["variant"], str) else UNSPECIFIED
        if variant in variants.get(r["benchmark"], ()):
            for f in str(r["flags"]).split(";"):
                item = f"{r['benchmark']} {f.strip()}"
                if f.strip() and item not in out.setdefault(str(r["model"]), []):
                    out[str(r["model"])].append(item)
    return {m: "; ".join(v) for m, v in out.items()}


def _print_log(log: list[str]) -> None:
    for line in log:
        out.print(f"  - {line}", highlight=False)


# ----------------------------------------------------------------------------- ingest
@commands.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Files or folders: CSV/TSV/Parquet/JSON tables, "
                                                      "lm-eval results JSON, Open LLM Leaderboard JSON, "
                                                      "lighteval results JSON, Epoch AI Benchmarking Hub "
                                                      "CSVs (one per benchmark, e.g. gpqa_diamond.csv).")],
    panel: Annotated[str, typer.Option("--panel", "-p", help="Panel to store the results in (created if new); "
                                                             "other panels are never changed.")],
    units: Annotated[Optional[str], typer.Option(
        "--units", help=f"Score units when a table's cannot be told: {' or '.join(UNITS)}.")] = None,
    source: Annotated[Optional[str], typer.Option(
        "--source", help="Citation recorded on every score (default: the file name).")] = None,
    family: Annotated[Optional[str], typer.Option("--family", help="Family for models that do not say.")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="base, instruct or frontier, for models that do not say.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite values of this panel that differ "
                                                            "(other panels are never changed).")] = False,
    skip_unknown: Annotated[bool, typer.Option("--skip-unknown", help="Skip benchmarks CAPE does not know "
                                                                      "instead of refusing the file.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything and report, write nothing.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse scores that --clean would drop, such as "
                                                          "lm-eval runs made with --limit (flag limited).")] = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Model id for lm-eval results files (needed when the file names a local "
                        "path such as pretrained=/data/ckpt/7B, or no model).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check files completely, then store them in one transaction (all or nothing).

    A panel is what you imported into it: the same model in another panel is a separate
    copy that this command neither reads nor changes. Ingesting the same file twice changes
    nothing. A value that differs from one this panel holds for the same model, benchmark,
    variant and source is an error unless --replace.
    """
    total = sum(len(find_result_files(f)) if f.is_dir() else 1 for f in files)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True,
                  disable=as_json or total < 2 or not err.is_terminal) as bar:
        task = bar.add_task("reading", total=total)
        result = api.read_results(files, units=units, source=source, family=family, kind=kind,
                                  skip_unknown=skip_unknown, strict=strict, model=model,
                                  progress=lambda name: bar.update(task, advance=1, description=Path(name).name))
    from ..store import Store

    store = Store()
    report = store.ingest(result.dataset, panel, replace=replace, dry_run=dry_run)
    ds = result.dataset
    if as_json:
        _emit_json(report.to_dict() | {"files": result.files, "models": len(ds.models),
                                       "scores": len(ds.scores), "skipped": result.skipped,
                                       "unregistered": result.unregistered, "database": store.location})
        return
    verb = "would add" if dry_run else "added"
    out.print(f"{'[dry run] ' if dry_run else ''}panel [bold]{panel}[/bold]"
              f"{' (new)' if report.panel_created else ''}: read {len(ds.scores)} scores of "
              f"{len(ds.models)} models from {len(result.files)} file(s); {verb} "
              f"{report.scores_added} scores, {report.models_added} models; "
              f"{report.scores_replaced} replaced, {report.scores_unchanged} unchanged.",
              highlight=False)
    if not report.changed and not dry_run:
        out.print("Nothing changed: the store already holds these values.")
    for line in report.replaced[:20]:
        out.print(f"  replaced {line}", highlight=False)
    if result.unregistered:
        out.print(f"Kept {len(result.unregistered)} task(s) CAPE does not know under their own names "
                  "(flag unregistered; --strict refuses them):", highlight=False, markup=False)
        for name, where in list(result.unregistered.items())[:10]:
            out.print(f"  - {name} ({where})", highlight=False, markup=False)
    if result.skipped:
        out.print(f"Skipped {len(result.skipped)} item(s):", highlight=False)
        for line in result.skipped[:10]:
            out.print(f"  - {line}", highlight=False)
        if len(result.skipped) > 10:
            out.print(f"  ... and {len(result.skipped) - 10} more (see --json)")
    out.print(f"Database: {store.location}", highlight=False)


# ----------------------------------------------------------------------------- export
@commands.command()
def export(
    panel: Annotated[str, typer.Argument(help="Panel name.")],
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or json.")] = "csv",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write "
                                                   "(default: PANEL.FORMAT in the current folder).")] = None,
    benchmarks: BenchOpt = None,
    family: FamilyOpt = None,
    clean: CleanOpt = False,
    corrected: CorrOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a panel as one row per score with its model's metadata (re-ingestible)."""
    if fmt not in ("csv", "parquet", "json"):
        raise CapeError(f"--format must be csv, parquet or json, not '{fmt}'")
    path = output or Path(f"{panel}.{fmt}")
    n = api.export_panel(panel, path, fmt=fmt, clean=clean, corrected=corrected,
                         benchmarks=benchmarks, family=family)
    if as_json:
        _emit_json({"panel": panel, "path": str(path), "format": fmt, "rows": n})
    else:
        out.print(f"wrote {n} rows to {path}", highlight=False)


# ----------------------------------------------------------------------- reference info
@commands.command()
def benchmarks(as_json: JsonOpt = False) -> None:
    """List the benchmarks CAPE knows, their variants (preferred first) and aliases."""
    rows = [{"name": b.name, "title": b.title, "variants": list(b.variants),
             "aliases": list(b.aliases) + list(b.variant_aliases), "items": b.items}
            for b in BENCHMARKS.values()]
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="Benchmarks")
    for c in ("name", "title", "variants", "aliases", "items"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["title"], ", ".join(r["variants"]), ", ".join(r["aliases"]),
                  "" if r["items"] is None else str(r["items"]))
    out.print(t)


@commands.command()
def flags(as_json: JsonOpt = False) -> None:
    """List the quality flags, what each means, and what --clean does about it."""
    rows = [{"flag": f.name, "on": f.applies_to, "meaning": f.meaning, "clean": f.rule_text}
            for f in FLAGS.values()]
    if as_json:
        _emit_json(rows)
        return
    t = Table(title="Quality flags")
    for c in ("flag", "on", "meaning", "clean"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(r["flag"], r["on"], r["meaning"], r["clean"])
    out.print(t)
