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
import importlib
import json
import math
import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from .. import __version__
from ..errors import CapeError


class lazy:
    """A module, or one name in it, imported when first used: ``api = lazy("cape.api")``,
    ``to_python = lazy("cape.schema", "to_python")``. Attribute access and calls go to the
    real object, so ``cape --help`` imports no pandas, numpy, SciPy or SQLAlchemy (issue 18).

    ``defaults`` names a light module to try first for an attribute: ``lazy("cape.analysis.gamma",
    defaults="cape.defaults")`` gives ``DEFAULT_GUARD`` (an option's default, needed by
    ``--help``) without importing the analysis."""

    def __init__(self, module: str, name: str | None = None, *, defaults: str | None = None):
        self._module, self._name, self._defaults, self._target = module, name, defaults, None

    def _load(self):
        if self._target is None:
            target = importlib.import_module(self._module)
            self._target = getattr(target, self._name) if self._name else target
        return self._target

    def __getattr__(self, attr: str):
        if attr.startswith("__") or attr in ("_module", "_name", "_defaults", "_target"):
            raise AttributeError(attr)
        if self._target is None and self._defaults and self._name is None:
            light = importlib.import_module(self._defaults)
            if hasattr(light, attr):
                return getattr(light, attr)
        return getattr(self._load(), attr)

    def __call__(self, *args, **kwargs):
        return self._load()(*args, **kwargs)

    def __repr__(self) -> str:
        what = f"{self._module}.{self._name}" if self._name else self._module
        return f"<lazy {what}{'' if self._target is None else ' (imported)'}>"


pd = lazy("pandas")
api = lazy("cape.api")
to_python = lazy("cape.schema", "to_python")

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
    """``--json``: ``json.dumps(payload, indent=2, default=to_python, ensure_ascii=False)`` on
    stdout, long lists written column-wise (see :func:`_json_text`)."""
    sys.stdout.write(_json_text(payload) + "\n")


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or not err.is_terminal) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _records(frame: pd.DataFrame) -> list[dict]:
    """A frame's rows for --json: each cell through :func:`~cape.schema.to_python` (NA and NaN
    as None), converted a column at a time."""
    from ..analysis.results import frame_records

    return frame_records(frame, finite=False)


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


# ------------------------------------------------------------------ long tables, --all, --csv
AllOpt = Annotated[bool, typer.Option(
    "--all", help="Print every row of the table. Without it a long table shows its first rows and "
    "says how many it left out: as many as fit the terminal, or 1,000 when the output goes to a "
    "pipe or file (CAPE_TABLE_ROWS=N sets the number).")]
CsvOpt = Annotated[bool, typer.Option(
    "--csv", help="Print the table's rows as CSV on stdout (header first; the columns of the "
    "--json records), every row, no formatting.")]

#: Rows a table shows when stdout is not a terminal (a pipe, `| less`, a file): enough for
#: any reading by eye, few enough that a 100k-row table does not take a minute to draw.
PIPE_TABLE_ROWS = 1000
#: Lines a terminal keeps for what is not a row: title, header, borders, caption, the note
#: and the lines a command prints after its table.
TERMINAL_MARGIN = 12
#: Rows shown on a terminal however small.
MIN_TABLE_ROWS = 10


def _table_limit() -> int:
    """How many rows a long table shows: ``CAPE_TABLE_ROWS`` if set, else the terminal's
    height less :data:`TERMINAL_MARGIN` (at least :data:`MIN_TABLE_ROWS`) on a terminal, else
    :data:`PIPE_TABLE_ROWS`."""
    env = os.environ.get("CAPE_TABLE_ROWS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise CapeError(f"CAPE_TABLE_ROWS='{env}' is not a number of rows (unset it, or give e.g. 50)") from None
        if n < 1:
            raise CapeError(f"CAPE_TABLE_ROWS={n}: give at least 1 row")
        return n
    if out.is_terminal:
        return max(MIN_TABLE_ROWS, out.size.height - TERMINAL_MARGIN)
    return PIPE_TABLE_ROWS


def _shown(rows, show_all: bool = False, noun: str = "rows", csv: bool = True):
    """The rows of a long table to draw, and the note to print after it (None when every row
    is drawn): every row with --all or when they fit (:func:`_table_limit`), else the first
    ones. ``rows`` is a DataFrame, a list or anything sliceable with ``len``; slice BEFORE
    building the rich rows, so that a 100k-row table costs what the rows shown cost.
    ``csv``: whether the command's --csv gives these rows (the note says so)."""
    n = len(rows)
    limit = _table_limit()
    if show_all or n <= limit:
        return rows, None
    head = rows.iloc[:limit] if isinstance(rows, (pd.DataFrame, pd.Series)) else rows[:limit]
    return head, (f"showing the first {limit:,} of {n:,} {noun}; --all prints every row, "
                  f"{'--json or --csv' if csv else '--json'} gives them all as data")


def _note(note: str | None) -> None:
    """Print a :func:`_shown` note (if any) after its table, on stdout where the table is."""
    if note:
        out.print(note, style="dim", highlight=False, markup=False)


def _print_table(table, note: str | None = None) -> None:
    """Print a rich table, then its :func:`_shown` note."""
    out.print(table)
    _note(note)


def _formats(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise CapeError("give --json or --csv, not both")


def _emit_csv(rows) -> None:
    """``--csv``: a table's rows on stdout, header first, every row, no markup. ``rows`` is the
    DataFrame (or the list of records) that ``--json`` prints, so the columns are the same; an
    empty cell is a missing value."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    sys.stdout.write(frame.to_csv(index=False, lineterminator="\n"))


def _esc(value) -> str:
    """A cell from the data (a model id, a family) drawn as written: ``[bold]`` in a model id
    is text, not markup. None is an empty cell."""
    from rich.markup import escape

    return "" if value is None else escape(str(value))


# ---------------------------------------------------------------------- fast --json output
#: A list at least this long is written by :func:`_json_text`'s column-wise path.
_FAST_JSON_MIN = 32


def _json_scalar_tokens(values: list, pad: str) -> list[str]:
    """JSON text of each value, as ``json.dumps(..., indent=2, default=to_python,
    ensure_ascii=False)`` writes it at a place indented by ``pad`` (a nested list or dict
    keeps json's own layout). Whole columns of str, int or float go through C-level
    functions; other values one at a time by json's own rules."""
    from json.encoder import encode_basestring

    from ..schema import to_python as _to_python

    types = set(map(type, values))
    plain = types - {type(None)}
    if len(plain) <= 1:  # one type, maybe with None: a whole column at C speed
        typ = next(iter(plain), type(None))
        rep = {float: float.__repr__, int: int.__repr__, str: encode_basestring,
               bool: lambda b: "true" if b else "false"}.get(typ)
        if typ is type(None):
            return ["null"] * len(values)
        if rep is not None:
            tokens = (list(map(rep, values)) if len(types) == 1 else
                      ["null" if v is None else rep(v) for v in values])
            if typ is float:
                special = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
                if not special.keys().isdisjoint(tokens):
                    tokens = [special.get(t, t) for t in tokens]
            return tokens

    def one(v) -> str:  # json.encoder._make_iterencode's order of tests
        if isinstance(v, str):
            return encode_basestring(v)
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, int):
            return int.__repr__(v)
        if isinstance(v, float):
            if v != v:
                return "NaN"
            if v in (math.inf, -math.inf):
                return "Infinity" if v > 0 else "-Infinity"
            return float.__repr__(v)
        return json.dumps(v, indent=2, default=_to_python, ensure_ascii=False).replace("\n", "\n" + pad)

    return [one(v) for v in values]


_FLAT = frozenset({str, int, float, bool, type(None)})


def _json_flat_records(rows: list[dict], level: int) -> str | None:
    """Records whose keys are all str and whose values are all plain (str, int, float, bool,
    None) written by json's C encoder: without indent but with the item separator
    ``",\n" + the keys' indentation``, then the braces of each record moved onto their own
    lines. A raw newline occurs in JSON text only where a separator put it (a newline inside a
    string is written ``\n``), so ``}`` SEP ``{`` marks exactly the boundaries between
    records. None when the records are not flat or a record is empty."""
    import itertools

    if not all(rows):  # an empty record is written {} by both: left to the general path
        return None
    if not set(map(type, itertools.chain.from_iterable(map(dict.values, rows)))) <= _FLAT:
        return None
    if not all(type(k) is str for k in set(itertools.chain.from_iterable(rows))):
        return None
    pad0, pad_item, pad_key = "  " * level, "  " * (level + 1), "  " * (level + 2)
    sep = ",\n" + pad_key
    text = json.dumps(rows, separators=(sep, ": "), ensure_ascii=False)  # C encoder: no indent, no default
    body = text[2:-2].replace("}" + sep + "{", "\n" + pad_item + "},\n" + pad_item + "{\n" + pad_key)
    return "[\n" + pad_item + "{\n" + pad_key + body + "\n" + pad_item + "}\n" + pad0 + "]"


def _json_records_block(rows: list[dict], level: int) -> str:
    """A list of dicts as json.dumps(indent=2) writes it at nesting ``level``: flat records by
    :func:`_json_flat_records`, others a column at a time (one C-level %-format per row
    instead of json's Python encoder per cell)."""
    from json.encoder import encode_basestring

    flat = _json_flat_records(rows, level)
    if flat is not None:
        return flat
    pad_item, pad_key = "  " * (level + 1), "  " * (level + 2)
    keys = tuple(rows[0])
    if all(type(k) is str for k in keys) and all(tuple(r) == keys for r in rows):
        groups = [(keys, rows, list(range(len(rows))))]
    else:  # rows with different keys: group them, keep the order
        by: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            by.setdefault(tuple(r), []).append(i)
        if not all(type(k) is str for ks in by for k in ks):
            return None
        groups = [(ks, [rows[i] for i in idx], idx) for ks, idx in by.items()]
    text: list[str] = [""] * len(rows)
    for ks, group, idx in groups:
        if not ks:
            for i in idx:
                text[i] = pad_item + "{}"
            continue
        template = (pad_item + "{\n" + ",\n".join(pad_key + encode_basestring(k).replace("%", "%%") + ": %s"
                                                  for k in ks) + "\n" + pad_item + "}")
        columns = [_json_scalar_tokens(list(col), pad_key) for col in zip(*(r.values() for r in group))]
        if len(groups) == 1:
            text = [template % cells for cells in zip(*columns)]
        else:
            for i, cells in zip(idx, zip(*columns)):
                text[i] = template % cells
    return "[\n" + ",\n".join(text) + "\n" + "  " * level + "]"


def _json_list_block(values: list, level: int) -> str:
    """A list of plain values as json.dumps(indent=2) writes it at nesting ``level`` (by the C
    encoder with the item separator ``",\n" + indentation``: a raw newline is only ever a
    separator)."""
    pad_item = "  " * (level + 1)
    text = json.dumps(values, separators=(",\n" + pad_item, ": "), ensure_ascii=False)
    return "[\n" + pad_item + text[1:-1] + "\n" + "  " * level + "]"


def _json_text(payload) -> str:
    """Exactly ``json.dumps(payload, indent=2, default=to_python, ensure_ascii=False)``, fast
    for long tables: each list of at least :data:`_FAST_JSON_MIN` dicts (or plain values) is
    swapped for a marker, the rest goes through json, and each marker is replaced by the list
    written column-wise at the marker's indentation (100k records of 20 fields in about a
    second, where json's indented encoder, pure Python, takes half a minute)."""
    import uuid
    from json.encoder import encode_basestring

    from ..schema import to_python as _to_python

    tag = f"\x00cape-json-{uuid.uuid4().hex}-"
    lists: list[list] = []

    def swap(obj):
        if type(obj) is dict:
            return {k: swap(v) for k, v in obj.items()}
        if type(obj) is list:
            if len(obj) >= _FAST_JSON_MIN and (all(type(v) is dict for v in obj)
                                               or all(type(v) in (str, int, float, bool, type(None)) for v in obj)):
                lists.append(obj)
                return f"{tag}{len(lists) - 1}"
            return [swap(v) for v in obj]
        return obj

    skeleton = json.dumps(swap(payload), indent=2, default=_to_python, ensure_ascii=False)
    if not lists:
        return skeleton
    parts, pos = [], 0
    for i, values in enumerate(lists):
        marker = encode_basestring(f"{tag}{i}")
        at = skeleton.index(marker, pos)
        line = skeleton.rfind("\n", 0, at) + 1
        level = (len(skeleton[line:at]) - len(skeleton[line:at].lstrip(" "))) // 2
        block = (_json_records_block(values, level) if type(values[0]) is dict
                 else _json_list_block(values, level))
        if block is None:  # keys json would convert (ints, floats): let json write this list
            block = json.dumps(values, indent=2, default=_to_python, ensure_ascii=False).replace("\n", "\n" + "  " * level)
        parts += [skeleton[pos:at], block]
        pos = at + len(marker)
    parts.append(skeleton[pos:])
    return "".join(parts)
