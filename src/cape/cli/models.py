"""``cape models`` (list a panel's models, apply a metadata table) and ``cape rm`` (remove a
panel, models of a panel, or one run's scores).

This module only presents; the work is done by :mod:`cape.api` and :mod:`cape.store`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.table import Table

from ..errors import CapeError
from ._app import JsonOpt, _cell, _emit_json, _human_count, _records, api, command_set, err, out

commands = command_set()

from ._app import AllOpt, CsvOpt, _emit_csv, _esc, _formats, _print_table, _shown  # noqa: E402  (long tables)

models_app = typer.Typer(
    help=("A panel's models and their metadata (parameter counts, width, depth, tokens, release "
          "date, family, organisation): list them, or set them from a metadata table."),
    no_args_is_help=True,
)
commands.add_typer(models_app, name="models")

_SHOWN = ("model", "family", "organisation", "kind", "params", "active_params", "d_model", "n_layers",
          "tokens", "release_date")
_COUNTS = ("params", "active_params", "tokens")


@models_app.command("list")
def models_list(
    panel: Annotated[str, typer.Argument(help="Panel name (see `cape panels`).")],
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """List the models of a panel with their metadata (a long list shows its first rows and
    says so: --all, --json or --csv for every model)."""
    _formats(as_json, as_csv)
    frame = api.load_models(panel)
    if as_json:
        _emit_json({"panel": panel, "models": _records(frame)})
        return
    if as_csv:
        _emit_csv(frame)
        return
    t = Table(title=f"{panel}: {len(frame)} models")
    cols = [c for c in _SHOWN if c in frame.columns]
    for c in cols:
        t.add_column(c, overflow="fold", justify="right" if c in _COUNTS + ("d_model", "n_layers") else "left")
    rows, note = _shown(frame, show_all, "models")
    for r in rows.to_dict("records"):
        t.add_row(*[_human_count(r[c]) if c in _COUNTS else _esc(_cell(r[c])) for c in cols])
    _print_table(t, note)


@models_app.command("set")
def models_set(
    panel: Annotated[str, typer.Argument(help="A panel of your store.")],
    file: Annotated[Path, typer.Argument(help="Metadata table (CSV, TSV, Parquet, JSON, JSONL): a model "
                                              "column and any of params, active_params, d_model, n_layers, "
                                              "n_heads, tokens, flops, release_date, family, organisation, "
                                              "display_name, kind.")],
    add: Annotated[bool, typer.Option("--add", help="Add models the panel does not hold (without scores) "
                                                    "instead of refusing the file.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything and show what would "
                                                            "change; write nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set the metadata of a panel's models from a table, in one transaction (all or nothing).

    Counts may be written 7B, 6.7e9 or 15.7B(2.4B-active); dates YYYY, YYYY-MM or
    YYYY-MM-DD. An empty cell leaves the stored value as it is. A model the panel does not
    hold is an error (every one is listed) unless --add. Other panels are never changed.
    """
    report = api.set_metadata(panel, file, add=add, dry_run=dry_run)
    if as_json:
        _emit_json(report.to_dict() | {"file": str(file)})
        return
    tag = "[dry run] " if dry_run else ""
    verb = "would update" if dry_run else "updated"
    out.print(f"{tag}panel {panel}: {verb} {report.models_updated} model(s), "
              f"{'would add' if dry_run else 'added'} {len(report.models_added)}, "
              f"{report.models_unchanged} unchanged.", highlight=False, markup=False)
    for c in report.changes[:50]:
        old = "(none)" if c["old"] is None else c["old"]
        out.print(f"  {c['model']} {c['field']}: {old} -> {c['new']}", highlight=False, markup=False)
    if len(report.changes) > 50:
        out.print(f"  ... and {len(report.changes) - 50} more (see --json)", markup=False)
    for mid in report.models_added[:20]:
        out.print(f"  + {mid}", highlight=False, markup=False)


# ------------------------------------------------------------------------------------ rm
def _confirm(question: str, yes: bool) -> bool:
    """--yes, or a y/yes answer on standard input. No standard input (EOF, closed, none):
    refuse, so that a script never deletes without saying --yes."""
    if yes:
        return True
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        raise CapeError("refusing to remove anything without confirmation: there is no standard input",
                        hint="pass --yes to remove without a prompt")
    err.print(f"{question} [y/N] ", end="", highlight=False, markup=False)
    answer = stdin.readline()
    if answer == "":
        err.print("")
        raise CapeError("refusing to remove anything without confirmation: no answer on standard input",
                        hint="pass --yes to remove without a prompt")
    return answer.strip().lower() in ("y", "yes")


@commands.command("rm")
def rm(
    panel: Annotated[str, typer.Argument(help="A panel of your store.")],
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m", help="Remove this model (with its scores) from the panel; repeatable.")] = None,
    source: Annotated[Optional[str], typer.Option(
        "--source", "-s", help="Remove one run: the panel's scores from this source (as `cape show PANEL "
                               "--long` lists it; a file name matches its lm-eval:/file: source), and "
                               "models left without scores.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove a stored panel, models of a panel (--model), or one run's scores (--source).

    Asks for confirmation (y/N on standard input); with no standard input it refuses unless
    --yes. Only the panel named is touched: other panels, even with the same models, stay
    exactly as they were. Built-in panels are read-only.
    """
    if model and source:
        raise CapeError("give --model or --source, not both")
    if model:
        what = api.delete_models(panel, model, dry_run=True)
        question = (f"Remove {what['models']} model(s) ({', '.join(model)}) and their {what['scores']} "
                    f"score(s) from panel '{panel}'?")
        action = lambda: api.delete_models(panel, model)  # noqa: E731
        kind = "models"
    elif source:
        resolved = api.resolve_source(panel, source)
        what = api.delete_source(panel, resolved, dry_run=True)
        question = (f"Remove the {what['scores']} score(s) from source '{resolved}' of panel '{panel}'"
                    f"{' and ' + str(what['models']) + ' model(s) left without scores' if what['models'] else ''}?")
        action = lambda: api.delete_source(panel, resolved)  # noqa: E731
        kind = "source"
    else:
        p = api.get_panel(panel)
        if p.builtin:
            raise CapeError(f"'{panel}' is a built-in panel and read-only")
        what = {"models": len(p.models), "scores": len(p.scores)}
        question = f"Remove panel '{panel}' with its {what['models']} model(s) and {what['scores']} score(s)?"
        action = lambda: {"models": what["models"], "scores": api.delete_panel(panel)}  # noqa: E731
        kind = "panel"
    if not _confirm(question, yes):
        out.print("Nothing removed.")
        raise click.exceptions.Exit(1)
    done = action()
    if as_json:
        _emit_json({"panel": panel, "removed": kind, **done})
        return
    out.print(f"Removed from panel {panel}: {done['models']} model(s), {done['scores']} score(s)"
              f"{' (the panel is gone)' if kind == 'panel' else ''}.", highlight=False, markup=False)
