"""The ``cape`` command. It only presents: every figure comes from :mod:`cape.api`.

Errors are one line on stderr and exit code 2; ``--debug`` shows the traceback.

Layout:

- :mod:`cape.cli._app`: the root Typer ``app``, the consoles, the shared option types and
  helpers, and :func:`main`/:func:`run`. It imports no command module.
- one module per command group, each importing only from ``_app`` (and CAPE's library
  modules), never from another command module or from this package: :mod:`.data`
  (panels, show, ingest, export, benchmarks, flags), :mod:`.analysis` (coupling, gamma,
  nc, phase, width, eigen), :mod:`.frontier` (frontier ..., hfield, predictions),
  :mod:`.dynamics`, :mod:`.report`, :mod:`.audit`, :mod:`.advise` and :mod:`.models`
  (models list/set, rm), :mod:`.steer` (steer layers/extract/generate/export/info), :mod:`.serve` (the dashboard). Each defines its commands on its own ``commands =
  command_set()`` (``@commands.command()``; a group is ``commands.add_typer(sub,
  name=...)``).
- this module assembles them, in one place: :data:`GROUPS` is the order of ``cape
  --help`` (every module's commands, then every module's groups).

Adding a group, e.g. ``steer``: write ``steer.py`` as above, then add ``steer`` to the
``from . import ...`` line below and to :data:`GROUPS` (a two-line change).
"""

from __future__ import annotations

from . import advise, analysis, audit, data, dynamics, frontier, models, report, serve, steer
from ._app import app, main, register, run

#: The command modules, in the order ``cape --help`` lists their commands.
GROUPS = (data, analysis, frontier, dynamics, report, audit, advise, models, steer, serve)

for _module in GROUPS:
    register(app, _module.commands)

__all__ = ["app", "main", "run", "GROUPS"]
