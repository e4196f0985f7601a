"""The list of panels, quickly: what ``cape panels`` and :func:`cape.list_panels` show.

Each panel's summary is exactly :meth:`cape.panels.Panel.summary` (name, title, builtin,
models, families, scores, benchmarks in :data:`cape.benchmarks.BENCHMARKS` order,
has_errata), but read without loading any panel and without pandas or SQLAlchemy:

- a built-in panel's from its package files (``cape/panels/data/<name>/``: ``panel.json``,
  ``models.csv``, ``scores.csv``, ``errata.csv``) with the :mod:`csv` module;
- the stored panels' from the SQLite file with a few aggregate queries (stdlib
  :mod:`sqlite3`, opened read-only), after checking that the file is a CAPE database of
  this code's schema version (:data:`cape.storeinfo.SCHEMA_VERSION`).

Anything else (a ``CAPE_DB_URL`` that is not an SQLite file, another schema version, a file
that is not a CAPE database) takes the full :class:`cape.store.Store` path, which migrates or
reports the problem exactly as loading a panel does. A missing store lists no stored panels
and creates nothing.

>>> from cape.catalog import builtin_summary
>>> builtin_summary("paper-pythia")["models"]
8
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from importlib import resources
from pathlib import Path

from .benchmarks import BENCHMARKS

__all__ = ["BUILTIN_PANELS", "SUMMARY_FIELDS", "builtin_summary", "folder_summary", "stored_summaries",
           "summaries"]

#: The reference panels shipped with the package, in the order `cape panels` lists them.
BUILTIN_PANELS = ("paper-base", "paper-pythia", "paper-nc", "paper-frontier", "openllm-v1-base")

#: The keys of a panel summary, in order (as :meth:`cape.panels.Panel.summary`).
SUMMARY_FIELDS = ("name", "title", "builtin", "models", "families", "scores", "benchmarks", "has_errata")

_SQLITE_URL = re.compile(r"^sqlite(?:\+pysqlite)?:///(?P<database>[^?#]*)$")


def _summary(name: str, title: str, builtin: bool, models: int, families: int, scores: int,
             benchmarks: set[str], has_errata: bool) -> dict:
    return {"name": name, "title": title, "builtin": builtin, "models": models, "families": families,
            "scores": scores, "benchmarks": [b for b in BENCHMARKS if b in benchmarks],
            "has_errata": has_errata}


def _rows(text: str) -> list[dict[str, str]]:
    """CSV rows as dicts, the blank lines skipped (as pandas.read_csv does)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    return [dict(zip(header, row)) for row in reader if row]


def builtin_summary(name: str) -> dict:
    """A built-in panel's summary, read from its package files."""
    if name not in BUILTIN_PANELS:
        from .errors import CapeError

        raise CapeError(f"'{name}' is not a built-in panel (built-in: {', '.join(BUILTIN_PANELS)})")
    return folder_summary(name, resources.files("cape").joinpath("panels").joinpath("data").joinpath(name))


def folder_summary(name: str, folder) -> dict:
    """The summary of a panel folder laid out as the built-in ones (``panel.json``,
    ``models.csv``, ``scores.csv``, optional ``errata.csv``); ``folder`` is a path or an
    :mod:`importlib.resources` traversable."""
    meta = json.loads(folder.joinpath("panel.json").read_text(encoding="utf-8"))
    models = _rows(folder.joinpath("models.csv").read_text(encoding="utf-8"))
    scores = _rows(folder.joinpath("scores.csv").read_text(encoding="utf-8"))
    errata_file = folder.joinpath("errata.csv")
    errata = _rows(errata_file.read_text(encoding="utf-8")) if errata_file.is_file() else None
    # An empty cell is missing (read_csv(keep_default_na=False, na_values=[""])).
    families = {r["family"] for r in models if r.get("family")}
    benchmarks = {r["benchmark"] for r in scores if r.get("benchmark")}
    has_errata = errata is not None and any(r.get("layer") == "errata" for r in errata)
    return _summary(name, meta.get("title", ""), True, len(models), len(families), len(scores),
                    benchmarks, has_errata)


def _sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL, or None for any other URL (or an in-memory one)."""
    match = _SQLITE_URL.match(url)
    if not match or match["database"] in ("", ":memory:") or "%" in match["database"]:
        return None
    return Path(match["database"])


def _read_stored(path: Path) -> list[dict] | None:
    """The stored panels' summaries by aggregate queries, or None when this file is not a
    CAPE database of this code's schema version (the caller then takes the Store path)."""
    from .storeinfo import APPLICATION, SCHEMA_VERSION

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"cape_meta", "panels", "models", "scores"} <= tables:
            return None
        meta = dict(conn.execute("SELECT key, value FROM cape_meta "
                                 "WHERE key IN ('application', 'schema_version')").fetchall())
        if meta.get("application") != APPLICATION or meta.get("schema_version") != str(SCHEMA_VERSION):
            return None
        panels = conn.execute("SELECT name, title FROM panels ORDER BY name").fetchall()
        models = {p: (n, f) for p, n, f in conn.execute(
            "SELECT panel, COUNT(*), COUNT(DISTINCT family) FROM models GROUP BY panel")}
        # Scores: a count per panel and the distinct benchmarks, as two queries (SQLite sorts
        # every row for a GROUP BY over (panel, benchmark); these two walk the indexes).
        scores = dict(conn.execute(
            "SELECT m.panel, SUM((SELECT COUNT(*) FROM scores AS s WHERE s.model_id = m.id)) "
            "FROM models AS m GROUP BY m.panel").fetchall())
        benchmarks: dict[str, set[str]] = {}
        for p, bench in conn.execute("SELECT DISTINCT m.panel, s.benchmark FROM models AS m "
                                     "JOIN scores AS s ON s.model_id = m.id"):
            benchmarks.setdefault(p, set()).add(bench)
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return [_summary(name, title, False, *models.get(name, (0, 0)), scores.get(name, 0),
                     benchmarks.get(name, set()), False) for name, title in panels]


def stored_summaries(db=None) -> list[dict]:
    """The summaries of the panels in the store, in name order; ``[]`` when there is no store.

    ``db`` is what :func:`cape.api.list_panels` takes: a :class:`cape.store.Store`, a database
    URL, or None for the default store (``CAPE_DB_URL`` or ``$CAPE_HOME/cape.db``)."""
    if db is None:
        from .storeinfo import default_url

        url = default_url()
    else:
        url = db if isinstance(db, str) else getattr(db, "url", "")
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return []
    if path is not None and path.is_file():
        rows = _read_stored(path)
        if rows is not None:
            return rows
    return _store_summaries(db)


def _store_summaries(db) -> list[dict]:
    """The full path: open the store (migrating it, or failing as loading a panel does) and
    summarise each panel from its loaded frames."""
    from .store import Store

    store = db if isinstance(db, Store) else Store.existing(db)
    if store is None:
        return []
    return [store.panel(n).summary() for n in store.panel_names()]


def summaries(db=None) -> list[dict]:
    """Every panel's summary: the built-in ones, then those in the store (if there is one)."""
    return [builtin_summary(n) for n in BUILTIN_PANELS] + stored_summaries(db)
