"""CAPE: capability-coupling analysis of language models.

Reference panels, importers for your own results, a results store and a CLI (``cape``).

>>> import cape
>>> cape.load_panel("paper-pythia").shape[0]
8

The names below are imported when first used (``import cape`` itself loads neither pandas
nor the store's SQLAlchemy), so ``cape.Store``, ``from cape import ingest`` and
``dir(cape)`` work as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Each public name and the module it comes from (imported on first use).
_LAZY = {
    "BENCHMARKS": "cape.benchmarks",
    "BUILTIN_PANELS": "cape.panels",
    "CapeError": "cape.errors",
    "Dataset": "cape.schema",
    "InputError": "cape.errors",
    "Panel": "cape.panels",
    "Store": "cape.store",
    "StoreError": "cape.errors",
    "delete_models": "cape.api",
    "delete_panel": "cape.api",
    "delete_source": "cape.api",
    "export_panel": "cape.api",
    "get_panel": "cape.api",
    "ingest": "cape.api",
    "list_panels": "cape.api",
    "load_models": "cape.api",
    "load_panel": "cape.api",
    "load_scores": "cape.api",
    "read_results": "cape.io",
    "resolve_source": "cape.api",
    "runs": "cape.panels",
    "set_metadata": "cape.api",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .api import (delete_models, delete_panel, delete_source, export_panel, get_panel, ingest,
                      list_panels, load_models, load_panel, load_scores, resolve_source, set_metadata)
    from .benchmarks import BENCHMARKS
    from .errors import CapeError, InputError, StoreError
    from .io import read_results
    from .panels import BUILTIN_PANELS, Panel, runs
    from .schema import Dataset
    from .store import Store


def _lazy_attribute(package: str, table: dict[str, str], namespace: dict, name: str):
    """``name`` of a package whose names are imported on first use (this one and
    :mod:`cape.analysis`): the object from the module ``table`` names (absolute, or relative
    to ``package``), kept in ``namespace`` so later lookups skip this; else a submodule
    (``cape.api``, ``cape.analysis.coupling`` ...), as after the eager imports of old."""
    module = table.get(name)
    if module is None:
        if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module '{package}' has no attribute '{name}'")
    value = getattr(importlib.import_module(module, package), name)
    namespace[name] = value
    return value


def __getattr__(name: str):
    return _lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
