"""The ``cape`` app and what every command module shares: the root Typer ``app`` (with
``--debug`` and ``--version``), the ``out``/``err`` consoles, the option types (``JsonOpt``,
``CleanOpt``, ``RunOpt``, ``ShotsOpt``...), the helpers that print results (``_emit``,
``_emit_json``, ``_frame``, ``_progress``, ``_f``, ``_cell``, ``_records``) and the entry point
:func:`main` (errors are one line on stderr and exit code 2; ``--debug`` shows the traceback).

This module imports no command module: a command module imports from here, defines its
commands on its own :func:`command_set`, and :mod:`cape.cli` adds them to ``app`` with
:func:`register`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import __version__, api
from ..errors import CapeError
from ..schema import to_python

app = typer.Typer(
    name="cape",
    help=("CAPE: capability-coupling analysis of language models. Reference panels from the "
          "preprints arXiv:2605.18838 and arXiv:2605.18840 and the Open LLM Leaderboard, "
          "importers for your own results, and a results store."),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# A pipe or file gets wide lines rather than a table squeezed into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
BenchOpt = Annotated[Optional[str], typer.Option(
    "--benchmarks", "-b", help="Comma-separated benchmarks (any alias: hellaswag, HellaSwag, tqa...).")]
FamilyOpt = Annotated[Optional[str], typer.Option("--family", "-f", help="Comma-separated families.")]
CleanOpt = Annotated[bool, typer.Option(
    "--clean", help="Resolve flagged data problems by the stated rules (see `cape flags`).")]
CorrOpt = Annotated[bool, typer.Option(
    "--corrected", help="Apply the panel's errata layer (paper-frontier: DeepSeek GPQA corrections).")]

#: What --run/--shots chose for this invocation (set by the options' callbacks; read by _frame).
_SELECTION: dict[str, object] = {"run": None, "shots": None}


def parse_shots(text: str | None) -> int | dict[str, int] | None:
    """``--shots``: ``8`` (every benchmark) or ``gsm8k=8,mmlu=5`` (per benchmark)."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    try:
        if "=" not in text:
            n = int(text)
            if n < 0:
                raise ValueError
            return n
        out: dict[str, int] = {}
        for part in text.split(","):
            bench, _, n = part.partition("=")
            if not bench.strip() or int(n) < 0:
                raise ValueError
            out[bench.strip()] = int(n)
        return out
    except ValueError:
        raise CapeError(f"--shots '{text}' is not a shot count: use 8, or gsm8k=8,mmlu=5") from None


def _set_run(value: str | None) -> str | None:
    _SELECTION["run"] = value
    return value


def _set_shots(value: str | None) -> str | None:
    _SELECTION["shots"] = parse_shots(value)
    return value


RunOpt = Annotated[Optional[str], typer.Option(
    "--run", callback=_set_run, help="Where a model has several runs of a score: use the run "
    "whose source contains this (a date such as 2024-05-01, a file name); default: the newest.")]
ShotsOpt = Annotated[Optional[str], typer.Option(
    "--shots", callback=_set_shots, help="Where a model has a benchmark at several shot counts: "
    "use these (8 for every benchmark, or gsm8k=8,mmlu=5); default: the count most models have.")]

SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed for resampling (repeatable results).")]
ResOpt = Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")]
CiOpt = Annotated[str, typer.Option("--ci", help="Bootstrap interval: bca or percentile.")]
LevelOpt = Annotated[float, typer.Option("--level", help="Confidence level of intervals.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"cape {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """CAPE: capability-coupling analysis of language models."""




def _emit_json(payload) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=to_python, ensure_ascii=False) + "\n")


def _frame(panel: str, clean: bool, corrected: bool, family: str | None = None) -> pd.DataFrame:
    """The wide frame an analysis command works on, with the command's --run and --shots; a
    benchmark left out because its runs conflict (see :func:`cape.panels.runs`) is named on
    stderr, the others work."""
    frame = api.load_panel(panel, clean=clean, corrected=corrected, family=family,
                           run=_SELECTION["run"], shots=_SELECTION["shots"])
    for bench, why in frame.attrs["cape"].get("left_out", {}).items():
        err.print(f"note: left out {bench}: {why}", highlight=False)
    return frame


def _f(v, digits: int = 3) -> str:
    """A number in a table cell (see :func:`cape.analysis.results.fmt_num`)."""
    from ..analysis.results import fmt_num

    return fmt_num(v, digits)


def _emit(result, as_json: bool, **meta) -> bool:
    """Print a result object as JSON (with ``meta`` first) when --json; True if it did."""
    if as_json:
        _emit_json(meta | result.to_dict())
    return as_json


@contextlib.contextmanager
def _progress(label: str, quiet: bool):
    """A progress bar on stderr for long resampling, only on a terminal and never with --json."""
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or not err.is_terminal) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: to_python(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def _human_count(n) -> str:
    if n is None or n is pd.NA:
        return ""
    n = float(n)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _cell(v, digits: int = 2) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# ------------------------------------------------------------------------- registration
def command_set() -> typer.Typer:
    """An empty Typer on which a command module defines its commands (``@commands.command()``)
    and adds its groups (``commands.add_typer(sub, name=...)``); :func:`register` moves them
    onto ``app``."""
    return typer.Typer()


def register(target: typer.Typer, commands: typer.Typer) -> None:
    """Add a command module's commands and groups to ``target`` in the order the module defines
    them. Typer lists an app's commands before its groups, so ``cape --help`` shows every
    module's commands, then every module's groups, each in the order the modules are
    registered."""
    target.registered_commands.extend(commands.registered_commands)
    target.registered_groups.extend(commands.registered_groups)


# ------------------------------------------------------------------------------- main
def _reflow_help(command) -> None:
    """Join the hard-wrapped lines of every help text into paragraphs, so that the command
    lists and --help pages wrap to the terminal instead of breaking mid-sentence."""
    import inspect

    if command.help:
        paras = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split()) for p in paras)
    for sub in getattr(command, "commands", {}).values():
        _reflow_help(sub)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning every error into one line on stderr and exit 2."""
    import click

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CAPE_DEBUG") == "1"
    command = typer.main.get_command(app)
    _reflow_help(command)
    try:
        command.main(args=args, prog_name="cape", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    except click.exceptions.ClickException as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {' '.join(exc.format_message().split())}\n")
        return 2
    except CapeError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if debug:
            raise
        sys.stderr.write(f"error: {type(exc).__name__}: {' '.join(str(exc).split())} "
                         "(run with --debug for the traceback)\n")
        return 2
    return 0


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
