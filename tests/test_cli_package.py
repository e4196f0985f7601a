"""The ``cape.cli`` package: no import circle, one place that registers the command modules,
and the same commands (names and order) as the single-module CLI it replaced.

Adding a group (e.g. ``steer``) adds its name to ``ROOT`` below and, for a group with
subcommands, an entry to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

import cape.cli
from cape.cli import GROUPS, app
from cape.cli._app import command_set, register
from conftest import run_cli

PKG = Path(cape.cli.__file__).resolve().parent
COMMAND_MODULES = sorted(p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_"))

# `cape --help` and each group's --help before the CLI became a package, in their order.
ROOT = ["panels", "show", "ingest", "export", "benchmarks", "flags", "coupling", "gamma", "nc", "phase",
        "width", "eigen", "hfield", "predictions", "report", "audit", "advise", "rm", "serve",
        "frontier", "dynamics", "models", "steer"]
SUBCOMMANDS = {"frontier": ["fit", "hfield", "labs", "dynamics", "saturation", "compare"],
               "dynamics": ["fit", "predict", "crossval"],
               "models": ["list", "set"],
               "steer": ["layers", "extract", "generate", "export", "info", "eval", "internals"]}


def cli_imports(source: str) -> set[str]:
    """The modules of ``cape.cli`` that a module's source imports: ``_app``, a command module's
    name, or ``__init__`` for the package itself (``from cape.cli import x``)."""
    found: set[str] = set()

    def absolute(name: str) -> None:
        rest = name[len("cape.cli"):].lstrip(".")
        found.add(rest.split(".")[0] if rest else "__init__")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1:                                # from .x import y / from . import x
                found |= {mod.split(".")[0]} if mod else {a.name for a in node.names}
            elif node.level == 0 and (mod == "cape.cli" or mod.startswith("cape.cli.")):
                absolute(mod)
            elif node.level == 0 and mod == "cape" and any(a.name == "cli" for a in node.names):
                found.add("__init__")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "cape.cli" or a.name.startswith("cape.cli."):
                    absolute(a.name)
    return found


def test_cli_imports_sees_every_form_of_import():
    # constructed cases: each of these must be reported, library imports must not
    assert cli_imports("from .data import show") == {"data"}
    assert cli_imports("from . import analysis, frontier") == {"analysis", "frontier"}
    assert cli_imports("def f():\n    from .models import rm") == {"models"}
    assert cli_imports("from cape.cli import app") == {"__init__"}
    assert cli_imports("from cape import cli") == {"__init__"}
    assert cli_imports("import cape.cli.frontier") == {"frontier"}
    assert cli_imports("from cape.cli._app import out") == {"_app"}
    assert cli_imports("from ._app import out\nfrom .. import analysis\nfrom ..report import x") == {"_app"}


def test_no_import_circle():
    assert "_app" not in COMMAND_MODULES and "data" in COMMAND_MODULES
    assert cli_imports((PKG / "_app.py").read_text()) == set(), "_app must import no cape.cli module"
    for name in COMMAND_MODULES:
        used = cli_imports((PKG / f"{name}.py").read_text())
        assert used == {"_app"}, f"cape.cli.{name} imports {sorted(used - {'_app'})}: only _app is allowed"


def test_every_command_module_is_registered_once():
    names = [m.__name__.rsplit(".", 1)[1] for m in GROUPS]
    assert sorted(names) == COMMAND_MODULES and len(set(names)) == len(names)
    assert all(isinstance(m.commands, typer.Typer) for m in GROUPS)


@pytest.mark.slow  # one interpreter per module (about 2 s of imports each)
def test_each_module_imports_in_a_fresh_interpreter():
    modules = ["cape.cli", "cape.cli._app", "cape.cli.__main__"] + [f"cape.cli.{m}" for m in COMMAND_MODULES]
    t0 = time.perf_counter()
    procs = {m: subprocess.Popen([sys.executable, "-c", f"import {m}"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for m in modules}
    failed = {m: p.communicate(timeout=120)[1].strip().splitlines()[-1:] for m, p in procs.items()}
    assert {m: e for m, e in failed.items() if procs[m].returncode} == {}
    assert time.perf_counter() - t0 < 120


def test_same_commands_as_before():
    command = typer.main.get_command(app)
    assert list(command.commands) == ROOT
    for group, subs in SUBCOMMANDS.items():
        assert list(command.commands[group].commands) == subs, group
    # and a change is seen: a missing or extra command fails the comparison
    assert list(command.commands)[:-1] != ROOT and list(command.commands) + ["steer"] != ROOT


def test_python_m_cape_cli_lists_the_commands():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    commands = r.stdout.split("Commands", 1)[1]
    assert re.findall(r"^│ (\S+) ", commands, flags=re.M) == ROOT  # a wrapped line starts with spaces
    r = run_cli("frontier", "--help")
    assert r.returncode == 0 and all(f"│ {s} " in r.stdout for s in SUBCOMMANDS["frontier"])


def test_console_script_entry_point():
    eps = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "cape"]
    if not eps:
        pytest.skip("cape is not installed (no console_scripts entry point to check)")
    assert eps[0].value == "cape.cli:run"
    assert eps[0].load() is cape.cli.run


def test_register_adds_a_module_commands_then_groups_in_order():
    # what a new group module does (see cape.cli's docstring), on a fresh app
    commands = command_set()
    sub = typer.Typer()

    @commands.command("one")
    def one() -> None:
        """One."""

    @sub.command("inner")
    def inner() -> None:
        """Inner."""

    commands.add_typer(sub, name="grp")

    @commands.command("two")
    def two() -> None:
        """Two."""

    target = typer.Typer()

    @target.callback()
    def root() -> None:
        """Root."""

    register(target, commands)
    built = typer.main.get_command(target)
    assert list(built.commands) == ["one", "two", "grp"]
    assert list(built.commands["grp"].commands) == ["inner"]
