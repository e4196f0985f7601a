"""CAPE: capability-coupling analysis of language models.

Reference panels, importers for your own results, a results store and a CLI (``cape``).

>>> import cape
>>> cape.load_panel("paper-pythia").shape[0]
8
"""

from __future__ import annotations

from .api import (delete_models, delete_panel, delete_source, export_panel, get_panel, ingest, list_panels,
                  load_models, load_panel, load_scores, resolve_source, set_metadata)
from .benchmarks import BENCHMARKS
from .errors import CapeError, InputError, StoreError
from .io import read_results
from .panels import BUILTIN_PANELS, Panel, runs
from .schema import Dataset
from .store import Store

__version__ = "0.1.0"

__all__ = [
    "BENCHMARKS",
    "BUILTIN_PANELS",
    "CapeError",
    "Dataset",
    "InputError",
    "Panel",
    "Store",
    "StoreError",
    "__version__",
    "delete_models",
    "delete_panel",
    "delete_source",
    "export_panel",
    "get_panel",
    "ingest",
    "list_panels",
    "load_models",
    "load_panel",
    "load_scores",
    "read_results",
    "resolve_source",
    "runs",
    "set_metadata",
]
