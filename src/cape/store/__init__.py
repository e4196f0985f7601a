"""The results store: panels a user ingests, kept in a database.

SQLite at ``$CAPE_HOME/cape.db`` by default (``CAPE_HOME`` defaults to the per-user data
folder); any SQLAlchemy URL through ``CAPE_DB_URL``. Built-in panels never live here.

A panel is what the user imported into it. Each panel has its own model rows (metadata as
imported into that panel) and scores (see :mod:`cape.store.schema`): the same model id in
two panels is two independent rows, so ingesting into, replacing in or deleting one panel
never changes what another returns.

Example
-------
>>> from cape.io import read_results                                # doctest: +SKIP
>>> store = Store()                                                  # doctest: +SKIP
>>> report = store.ingest(read_results(["results/"]), panel="mine")   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, delete, event, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError, OperationalError

from ..errors import CapeError, InputError, StoreError
from ..panels import BUILTIN_PANELS, Panel
from ..schema import MODEL_COLUMNS, SCORE_COLUMNS, Dataset, to_python
from ..storeinfo import cape_home, default_url
from . import migrations, schema

__all__ = ["Store", "IngestReport", "MetadataReport", "Conflict", "default_url", "cape_home"]

_PANEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: What a stored panel's name may be (public: the dashboard's upload form checks it too).
PANEL_NAME = _PANEL_NAME
#: Largest number of bound values per IN (...) query; SQLite's default limit is 32766.
_CHUNK = 500
_META = [c for c in MODEL_COLUMNS if c != "model"]
_SCORE_FIELDS = ("value", "stderr", "n_shot", "harness", "flags", "run_date")


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cape-write-test-"):
            pass
    except OSError as exc:
        raise StoreError(
            f"cannot write to the CAPE data folder {folder}: {exc.strerror or exc}",
            hint="set CAPE_HOME to a folder you can write, or CAPE_DB_URL to a database URL",
        ) from None


@dataclass
class Conflict:
    """A stored value that an ingest would change."""

    model: str
    what: str  # "hellaswag/acc_norm from 'source'" or "params"
    stored: object
    incoming: object
    file: str | None = None  # the input file the new value came from

    def __str__(self) -> str:
        where = f" (in {self.file})" if self.file else ""
        return f"{self.model} {self.what}: stored {self.stored!r}, file {self.incoming!r}{where}"


@dataclass
class IngestReport:
    """What an ingest did (or, with ``dry_run``, would do) to its one panel.

    Every count is about ``panel`` only: ``models_added`` are models new to this panel
    (even if another panel holds the same model id), ``models_updated`` this panel's model
    rows whose metadata changed. ``members_added`` equals ``models_added`` (kept from
    schema version 1, where a model could join a panel without a new model row).
    """

    panel: str
    panel_created: bool = False
    models_added: int = 0
    models_updated: int = 0
    members_added: int = 0
    scores_added: int = 0
    scores_replaced: int = 0
    scores_unchanged: int = 0
    dry_run: bool = False
    replaced: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.panel_created or self.models_added or self.models_updated
                    or self.members_added or self.scores_added or self.scores_replaced)

    def to_dict(self) -> dict:
        return asdict(self) | {"changed": self.changed}


@dataclass
class MetadataReport:
    """What :meth:`Store.set_metadata` did (or, with ``dry_run``, would do) to one panel.

    ``changes`` has one entry per changed field: ``{"model", "field", "old", "new"}``.
    """

    panel: str
    dry_run: bool = False
    models_added: list[str] = field(default_factory=list)
    models_updated: int = 0
    models_unchanged: int = 0
    changes: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.models_added or self.changes)

    def to_dict(self) -> dict:
        return asdict(self) | {"changed": self.changed}


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return a == b


class Store:
    """A CAPE database. Opening it checks that it is one and applies pending migrations.

    ``create=False`` opens an existing database only (no file is made); use
    :meth:`Store.existing` to get ``None`` instead of an error when there is none.
    """

    def __init__(self, url: str | None = None, *, create: bool = True):
        self.url = url or default_url()
        try:
            parsed = make_url(self.url)
        except Exception:  # sqlalchemy raises ArgumentError for nonsense URLs
            raise StoreError(f"'{self.url}' is not a database URL") from None
        self._sqlite_path: Path | None = None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self._sqlite_path = Path(parsed.database)
            if not self._sqlite_path.exists():
                if not create:
                    raise StoreError(f"no CAPE database at {self._sqlite_path}",
                                     hint="ingest a file first: cape ingest FILE --panel NAME")
                _ensure_writable(self._sqlite_path.parent)
            elif self._sqlite_path.is_dir():
                raise StoreError(f"{self._sqlite_path} is a folder, not a database file")
        self.engine: Engine = create_engine(self.url, future=True)
        if parsed.get_backend_name() == "sqlite":
            _transactional_ddl(self.engine)
        self._open()

    @classmethod
    def existing(cls, url: str | None = None) -> "Store | None":
        """The default store if it exists already, else ``None`` (nothing is created)."""
        url = url or default_url()
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            if not Path(parsed.database).exists():
                return None
        return cls(url, create=False)

    @property
    def location(self) -> str:
        """The database file, or the URL without its password: for messages."""
        return str(self._sqlite_path) if self._sqlite_path else self.engine.url.render_as_string(hide_password=True)

    def _open(self) -> None:
        try:
            with self.engine.begin() as conn:
                names = set(inspect(conn).get_table_names())
                if names and "cape_meta" not in names:
                    raise StoreError(
                        f"{self.location} is not a CAPE database (it has tables "
                        f"{', '.join(sorted(names)[:5])} and no cape_meta)",
                        hint="point CAPE_HOME or CAPE_DB_URL elsewhere",
                    )
                if names:
                    app = conn.execute(select(schema.cape_meta.c.value)
                                       .where(schema.cape_meta.c.key == "application")).scalar()
                    if app != schema.APPLICATION:
                        raise StoreError(f"{self.location} is not a CAPE database")
                    have = migrations.current_version(conn)
                    if have > schema.SCHEMA_VERSION:
                        raise StoreError(
                            f"{self.location} has schema version {have}, newer than this CAPE "
                            f"understands ({schema.SCHEMA_VERSION})", hint="upgrade cape")
                migrations.upgrade(conn)
        except StoreError:
            self.engine.dispose()
            raise
        except (DatabaseError, OperationalError) as exc:
            self.engine.dispose()
            reason = str(exc.orig) if getattr(exc, "orig", None) else str(exc)
            if "not a database" in reason or "file is encrypted" in reason:
                raise StoreError(f"{self.location} is not a CAPE database (not an SQLite file)",
                                 hint="point CAPE_HOME or CAPE_DB_URL elsewhere") from None
            raise StoreError(f"cannot open the database {self.location}: {reason}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------- reading
    def panel_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(schema.panels.c.name).order_by(schema.panels.c.name)).scalars())

    def has_panel(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(schema.panels.c.name).where(schema.panels.c.name == name)).first() is not None

    def panel(self, name: str) -> Panel:
        """Read a stored panel: its models (with ``subset``) and their scores, as imported
        into this panel (nothing from other panels)."""
        from sqlalchemy import func, literal_column

        m, s, p = schema.models, schema.scores, schema.panels
        score_fields = [c for c in SCORE_COLUMNS if c != "model"]
        with self.engine.connect() as conn:
            prow = conn.execute(select(p).where(p.c.name == name)).mappings().first()
            if prow is None:
                raise CapeError(f"no panel '{name}' in {self.location}")
            # one query per table; rows arrive as the driver's tuples and are turned into
            # typed columns a batch at a time (see _read_columns)
            mq = (select(m.c.id, *[m.c[c] for c in MODEL_COLUMNS], m.c.subset)
                  .where(m.c.panel == name).order_by(m.c.id))
            mcols = _read_columns(conn, mq, ["id", *MODEL_COLUMNS, "subset"], MODEL_COLUMNS)
            n_models = len(mcols["id"])
            stored = conn.execute(select(func.count()).select_from(m)).scalar_one() if n_models else 1
            sq = select(s.c.model_id, *[s.c[c] for c in score_fields]).order_by(s.c.id)
            if n_models < stored:
                key = s.c.model_id
                if conn.dialect.name == "sqlite" and 2 * n_models >= stored:
                    # most of the store is this panel: read scores in table order (``+`` keeps
                    # SQLite off the model_id index), which is id order, so no sort is needed
                    key = literal_column(f"+{s.name}.{s.c.model_id.name}")
                sq = sq.where(key.in_(select(m.c.id).where(m.c.panel == name)))
            # (a panel that is the whole store needs no filter: every score is one of its models')
            scols = _read_columns(conn, sq, ["model_id", *score_fields], SCORE_COLUMNS)
        models = _typed_frame(mcols, MODEL_COLUMNS)
        # the extra per-panel column is assigned as a list, as Dataset.from_frames does
        models["subset"] = mcols["subset"].tolist()
        # each score's model row id -> that row's model id string
        at = pd.Index(mcols["id"]).get_indexer(scols["model_id"])
        scols["model"] = models["model"].array.take(at, allow_fill=True)
        scores = _typed_frame(scols, SCORE_COLUMNS)
        if (at < 0).any():              # a score whose model row is gone is no panel's score
            scores = scores[at >= 0].reset_index(drop=True)
        models["flags"] = models["flags"].fillna("")
        scores["flags"] = scores["flags"].fillna("")
        return Panel(name=name, models=models, scores=scores, title=prow["title"],
                     description=prow["description"], builtin=False,
                     meta={"created_at": prow["created_at"], "database": self.location})

    def row_counts(self) -> dict[str, int]:
        """Rows per table (used to show that a failed ingest changed nothing)."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in schema.TABLES}

    # ------------------------------------------------------------------------- writing
    def delete_panel(self, name: str) -> int:
        """Remove a stored panel with its models and scores, in one transaction; other
        panels are untouched. Returns the number of scores removed."""
        if name in BUILTIN_PANELS:
            raise CapeError(f"'{name}' is a built-in panel and read-only")
        m, s, p = schema.models, schema.scores, schema.panels
        with self.engine.begin() as conn:
            if conn.execute(select(p.c.name).where(p.c.name == name)).first() is None:
                raise CapeError(f"no panel '{name}' in {self.location}")
            ids = select(m.c.id).where(m.c.panel == name)
            removed = conn.execute(delete(s).where(s.c.model_id.in_(ids))).rowcount
            conn.execute(delete(m).where(m.c.panel == name))
            conn.execute(delete(p).where(p.c.name == name))
        return removed

    # ----------------------------------------------- model metadata and deletions (issue 13)
    def _writable_panel(self, conn, name: str) -> None:
        if name in BUILTIN_PANELS:
            raise CapeError(f"'{name}' is a built-in panel and read-only")
        p = schema.panels
        if conn.execute(select(p.c.name).where(p.c.name == name)).first() is None:
            raise CapeError(f"no panel '{name}' in {self.location}")

    def _model_rows(self, conn, panel: str, ids: list[str]) -> dict[str, dict]:
        m = schema.models
        stored: dict[str, dict] = {}
        for i in range(0, len(ids), _CHUNK):
            rows = conn.execute(select(m).where((m.c.panel == panel)
                                                & m.c.model.in_(ids[i:i + _CHUNK]))).mappings().all()
            stored.update({r["model"]: dict(r) for r in rows})
        return stored

    def set_metadata(self, panel: str, models: pd.DataFrame, *, add: bool = False,
                     dry_run: bool = False) -> MetadataReport:
        """Set the metadata of ``panel``'s models from a checked metadata table (see
        :func:`cape.io.metadata.read_metadata`), in one transaction: all or nothing.

        A missing cell (NA) leaves the stored value as it is; a given one replaces it. Models
        the panel does not hold are an error listing them, unless ``add`` (then they join the
        panel without scores). Only ``panel`` is read and written.
        """
        m = schema.models
        fields = [c for c in _META if c not in ("flags", "source") and c in models.columns]
        report = MetadataReport(panel=panel, dry_run=dry_run)
        recs = models.to_dict("records")
        try:
            with self.engine.begin() as conn:
                self._writable_panel(conn, panel)
                stored = self._model_rows(conn, panel, [r["model"] for r in recs])
                missing = [r for r in recs if r["model"] not in stored]
                if missing and not add:
                    where = "; ".join(f"{r['model']} ({r.get('_file')} row {r.get('_row')})"
                                      for r in missing[:10])
                    more = f"; and {len(missing) - 10} more" if len(missing) > 10 else ""
                    raise StoreError(f"{len(missing)} model(s) are not in panel '{panel}', nothing was "
                                     f"written: {where}{more}",
                                     hint="check the ids with `cape models list PANEL`, or pass --add "
                                          "to add them to the panel without scores")
                for rec in recs:
                    new = {c: to_python(rec.get(c)) for c in fields}
                    new = {c: v for c, v in new.items() if v is not None}
                    old = stored.get(rec["model"])
                    if old is None:
                        conn.execute(m.insert().values(panel=panel, model=rec["model"], flags="", **new))
                        report.models_added.append(rec["model"])
                        continue
                    update = {c: v for c, v in new.items() if not _same(v, old.get(c))}
                    params = update.get("params", old.get("params"))
                    active = update.get("active_params", old.get("active_params"))
                    if params is not None and active is not None and active > params:
                        what = "active_params" if "active_params" in update else "params"
                        raise InputError(f"active_params {active} would exceed params {params} of "
                                         f"'{rec['model']}' in panel '{panel}'; nothing was written",
                                         file=rec.get("_file"), row=rec.get("_row"), field=what)
                    if not update:
                        report.models_unchanged += 1
                        continue
                    conn.execute(m.update().where(m.c.id == old["id"]).values(**update))
                    report.models_updated += 1
                    report.changes += [{"model": rec["model"], "field": c, "old": old.get(c), "new": v}
                                       for c, v in update.items() if c != "release_date_precision"]
                if dry_run:
                    raise _Rollback
        except _Rollback:
            pass
        return report

    def panel_sources(self, panel: str) -> dict[str, int]:
        """Source -> number of scores, for ``panel`` (a source is a run: one file's scores)."""
        from sqlalchemy import func

        m, s = schema.models, schema.scores
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.c.source, func.count()).join(m, m.c.id == s.c.model_id)
                                .where(m.c.panel == panel).group_by(s.c.source)
                                .order_by(s.c.source)).all()
        return {r[0]: r[1] for r in rows}

    def delete_models(self, panel: str, models: list[str], *, dry_run: bool = False) -> dict[str, int]:
        """Remove models (with their scores) from ``panel`` in one transaction; other panels,
        even with the same model ids, are untouched. Every id must be in the panel (else
        nothing is removed). Returns ``{"models": n, "scores": k}``."""
        m, s = schema.models, schema.scores
        ids = list(dict.fromkeys(models))
        counts = {"models": 0, "scores": 0}
        try:
            with self.engine.begin() as conn:
                self._writable_panel(conn, panel)
                stored = self._model_rows(conn, panel, ids)
                unknown = [i for i in ids if i not in stored]
                if unknown:
                    raise CapeError(f"panel '{panel}' has no model {', '.join(repr(u) for u in unknown[:10])}"
                                    f"{' ...' if len(unknown) > 10 else ''}; nothing was removed",
                                    hint="see `cape models list PANEL`")
                rows = [stored[i]["id"] for i in ids]
                for i in range(0, len(rows), _CHUNK):
                    chunk = rows[i:i + _CHUNK]
                    counts["scores"] += conn.execute(delete(s).where(s.c.model_id.in_(chunk))).rowcount
                    counts["models"] += conn.execute(delete(m).where(m.c.id.in_(chunk))).rowcount
                if dry_run:
                    raise _Rollback
        except _Rollback:
            pass
        return counts

    def delete_source(self, panel: str, source: str, *, dry_run: bool = False) -> dict[str, int]:
        """Remove the scores of one run (one ``source``) from ``panel`` in one transaction,
        and the models of the panel that this leaves without any score. Other panels are
        untouched. Returns ``{"scores": k, "models": n}``."""
        m, s = schema.models, schema.scores
        counts = {"models": 0, "scores": 0}
        try:
            with self.engine.begin() as conn:
                self._writable_panel(conn, panel)
                hit = (select(s.c.model_id).join(m, m.c.id == s.c.model_id)
                       .where((m.c.panel == panel) & (s.c.source == source)).distinct())
                touched = list(conn.execute(hit).scalars())
                if not touched:
                    raise CapeError(f"panel '{panel}' has no scores from source '{source}'; nothing was removed",
                                    hint="`cape show PANEL --long` lists the sources")
                for i in range(0, len(touched), _CHUNK):
                    chunk = touched[i:i + _CHUNK]
                    counts["scores"] += conn.execute(
                        delete(s).where(s.c.model_id.in_(chunk) & (s.c.source == source))).rowcount
                    left = set(conn.execute(select(s.c.model_id).where(s.c.model_id.in_(chunk))).scalars())
                    empty = [t for t in chunk if t not in left]
                    if empty:
                        counts["models"] += conn.execute(delete(m).where(m.c.id.in_(empty))).rowcount
                if dry_run:
                    raise _Rollback
        except _Rollback:
            pass
        return counts

    def ingest(self, data: Dataset, panel: str, *, replace: bool = False, dry_run: bool = False,
               title: str | None = None) -> IngestReport:
        """Write validated data into ``panel`` in one transaction: all or nothing.

        Only ``panel`` is read and written: its models and scores are its own, so the same
        model id stored in another panel is neither consulted nor changed. Re-ingesting
        identical data changes nothing. A different value for a (model, benchmark, variant,
        source) this panel holds, or different model metadata in this panel, is a conflict:
        every conflict is listed in the error and nothing is written, unless ``replace``
        (which overwrites this panel's values only).

        Bulk writes: new models with one multi-row insert and one query for their keys, new
        scores in batches of multi-row inserts, the panel's stored rows read with one query
        each when the input is large; only rows that differ from what is stored are looked
        at one by one.
        """
        if panel in BUILTIN_PANELS:
            raise CapeError(f"'{panel}' is a built-in panel and read-only; ingest into a panel of your own")
        if not _PANEL_NAME.fullmatch(panel):   # fullmatch: "$" alone accepts "abc\n"
            raise CapeError(f"panel name '{panel}' is not allowed: use letters, digits, '.', '_' "
                            "and '-', starting with a letter or digit")
        origins = _origins(data)  # the input files, looked up for conflicts only
        report = IngestReport(panel=panel, dry_run=dry_run)
        try:
            with self.engine.begin() as conn:
                self._ingest(conn, data, panel, report, origins, replace=replace, title=title)
                if dry_run:
                    raise _Rollback
        except _Rollback:
            pass
        return report

    def _ingest(self, conn, data: Dataset, panel: str, report: IngestReport,
                origins: "_Origins", *, replace: bool, title: str | None) -> None:
        import numpy as np

        m, s, p = schema.models, schema.scores, schema.panels
        # panel
        if conn.execute(select(p.c.name).where(p.c.name == panel)).first() is None:
            report.panel_created = True
            conn.execute(p.insert().values(name=panel, title=title or panel, description="",
                                           created_at=datetime.now(timezone.utc).isoformat(timespec="seconds")))
        # this panel's models (the same model id in another panel is another row); only the
        # named columns of ``data`` are used (origin columns are ignored)
        incoming = data.models
        ids = _py(incoming["model"])
        new_cols = {c: _py(incoming[c]) for c in _META}
        if report.panel_created:
            stored = _typed_rows([], [*schema.models.c.keys()])
        elif len(ids) > _BULK:
            stored = _read_typed(conn, select(m).where(m.c.panel == panel))
        else:
            stored = pd.concat([_read_typed(conn, select(m).where((m.c.panel == panel)
                                                                  & m.c.model.in_(ids[i:i + _CHUNK].tolist())))
                                for i in range(0, max(len(ids), 1), _CHUNK)], ignore_index=True)
        at = pd.Index(_py(stored["model"])).get_indexer(ids) if len(stored) else np.full(len(ids), -1)
        new = at < 0
        conflicts: list[tuple[Conflict, tuple]] = []
        # new models: one multi-row insert, then their keys with one query
        if new.any():
            rows = {"panel": np.full(int(new.sum()), panel, dtype=object), "model": ids[new],
                    "subset": _py(incoming["subset"])[new] if "subset" in incoming.columns else None}
            for c in _META:
                rows[c] = new_cols[c][new]
            rows["flags"] = _or_blank(rows["flags"])
            _insert_many(conn, m, rows)
            report.models_added += int(new.sum())
            report.members_added += int(new.sum())
        model_id = np.zeros(len(ids), dtype=np.int64)
        if len(stored):
            model_id[~new] = stored["id"].to_numpy(dtype=np.int64)[at[~new]]
        if new.any():
            added = ids[new]
            if len(added) > _BULK:
                keys = _read_typed(conn, select(m.c.id, m.c.model).where(m.c.panel == panel))
            else:
                keys = pd.concat([_read_typed(conn, select(m.c.id, m.c.model).where(
                    (m.c.panel == panel) & m.c.model.in_(added[i:i + _CHUNK].tolist())))
                    for i in range(0, len(added), _CHUNK)], ignore_index=True)
            where = pd.Index(_py(keys["model"])).get_indexer(added)
            model_id[new] = keys["id"].to_numpy(dtype=np.int64)[where]
        # stored models: compare in bulk; the rows that may differ are checked one by one
        old_at = np.flatnonzero(~new)
        if len(old_at):
            maybe = np.zeros(len(old_at), dtype=bool)
            for c in _META:
                have = _py(stored[c])[at[old_at]]
                now = new_cols[c][old_at]
                if c == "flags":
                    now, have = _or_blank(now), _or_blank(have)
                    maybe |= (now != "") & _ne(now, have)
                else:
                    maybe |= _isnt_none(now) & _ne(now, have)
            stored_py = {c: _py(stored[c]) for c in stored.columns}
            updates: dict[tuple, list[dict]] = {}  # the fields set -> rows, one statement each
            for i in old_at[maybe]:
                rec = {"model": ids[i], **{c: new_cols[c][i] for c in _META}}
                old = {c: v[at[i]] for c, v in stored_py.items()}
                update = {}
                for c in _META:
                    new_v, have = rec.get(c), old.get(c)
                    if c == "flags":
                        new_v, have = new_v or "", have or ""
                        if new_v and new_v != have:
                            if have and not replace:
                                conflicts.append((Conflict(rec["model"], c, have, new_v), (rec["model"],)))
                            else:
                                update[c] = new_v
                        continue
                    if new_v is None or _same(new_v, have):
                        continue
                    if have is None or replace:
                        update[c] = new_v
                    else:
                        conflicts.append((Conflict(rec["model"], c, have, new_v), (rec["model"],)))
                if update:
                    updates.setdefault(tuple(update), []).append({"_id": old["id"], **update})
                    report.models_updated += 1
            for rows_ in updates.values():
                _update_many(conn, m, rows_)
        # scores (of this panel's model rows only), compared as typed columns; Python values
        # only for the rows that may differ and, batch by batch, for the rows inserted
        sc = data.scores
        n = len(sc)
        row_of = pd.Index(ids).get_indexer(_py(sc["model"]))
        if (row_of < 0).any():  # a score whose model is not among the models: as before, a KeyError
            raise KeyError(_py(sc["model"])[np.argmax(row_of < 0)])
        sid = model_id[row_of]
        cols = {"benchmark": sc["benchmark"].array, "variant": sc["variant"].array,
                "source": _text_or_blank(sc["source"]), **{c: sc[c].array for c in _SCORE_FIELDS}}
        cols["flags"] = _text_or_blank(sc["flags"])
        match = np.full(n, -1, dtype=np.int64)
        old_rows = ~new[row_of]  # scores of models this panel held already
        existing = None
        if old_rows.any():
            held = np.unique(model_id[old_at])
            if len(held) > _BULK:
                existing = _read_typed(conn, select(s).where(s.c.model_id.in_(
                    select(m.c.id).where(m.c.panel == panel))))
            else:
                existing = pd.concat([_read_typed(conn, select(s).where(s.c.model_id.in_(held[i:i + _CHUNK].tolist())))
                                      for i in range(0, len(held), _CHUNK)], ignore_index=True)
            if len(existing):
                key = pd.MultiIndex.from_arrays([existing["model_id"].to_numpy(dtype=np.int64),
                                                 *(_py(existing[c]) for c in ("benchmark", "variant", "source"))])
                look = np.flatnonzero(old_rows)
                match[look] = key.get_indexer(pd.MultiIndex.from_arrays(
                    [sid[look], *(_py(cols[c][look]) for c in ("benchmark", "variant", "source"))]))
        hit = np.flatnonzero(match >= 0)
        fills: list[dict] = []
        replaces: list[dict] = []
        if len(hit):
            maybe = np.zeros(len(hit), dtype=bool)
            for c in _SCORE_FIELDS:
                have = existing[c].array[match[hit]]
                if c == "flags":
                    have = _text_or_blank(pd.Series(have)) if len(have) else have
                maybe |= _differs(cols[c][hit], have)
            report.scores_unchanged += int((~maybe).sum())
            at_rows = hit[maybe]
            now_py = {c: _py(cols[c][at_rows]) for c in ("benchmark", "variant", "source", *_SCORE_FIELDS)}
            old_py = {c: _py(existing[c].array[match[at_rows]]) for c in ("id", *_SCORE_FIELDS)}
            for k, i in enumerate(at_rows):
                old = {c: v[k] for c, v in old_py.items()}
                rec_fields = {c: now_py[c][k] for c in _SCORE_FIELDS}
                key3 = (sid[i], now_py["benchmark"][k], now_py["variant"][k], now_py["source"][k])
                if old["run_date"] is None and rec_fields["run_date"] is not None:
                    # a score stored before run dates were kept (schema 2): the date only fills in
                    fills.append({"_id": old["id"], "run_date": rec_fields["run_date"]})
                    old = {**old, "run_date": rec_fields["run_date"]}
                diff = [c for c in _SCORE_FIELDS
                        if not _same(rec_fields[c], old[c] if c != "flags" else old[c] or "")]
                if not diff:
                    report.scores_unchanged += 1
                elif replace:
                    replaces.append({"_id": old["id"], **rec_fields})
                    report.scores_replaced += 1
                    report.replaced.append(f"{ids[row_of[i]]} {key3[1]}/{key3[2]}: "
                                           f"{old['value']:g} -> {rec_fields['value']:g}")
                else:
                    what = f"{key3[1]}/{key3[2]} from '{key3[3]}'"
                    c0 = diff[0]
                    model_name = ids[row_of[i]]
                    conflicts.append((Conflict(model_name, what if c0 == "value" else f"{what} {c0}",
                                               old[c0], rec_fields[c0]),
                                      (model_name, key3[1], key3[2], key3[3])))
        _update_many(conn, s, fills)
        _update_many(conn, s, replaces)
        if conflicts:
            files = origins.files([k for _, k in conflicts])
            found = [Conflict(c.model, c.what, c.stored, c.incoming, f) for (c, _), f in zip(conflicts, files)]
            shown = "; ".join(str(c) for c in found[:10])
            more = f"; and {len(found) - 10} more" if len(found) > 10 else ""
            raise StoreError(
                f"{len(found)} value(s) differ from what panel '{panel}' in {self.location} "
                f"already holds, nothing was written: {shown}{more}",
                hint="pass --replace to overwrite them",
            )
        add = np.flatnonzero(match < 0)
        if len(add):
            _insert_many(conn, s, {"model_id": sid, **cols}, take=add, pause=True)
            report.scores_added += len(add)


#: Above this many models, an ingest reads the panel's stored rows with one query each
#: instead of ``IN (...)`` chunks.
_BULK = 2000
#: Rows per multi-row insert or update (bounds the memory of one batch of parameters).
_WRITE_BATCH = 50_000


def _py(values) -> "np.ndarray":
    """A column (Series or array) as plain Python values (``None`` where missing) in an
    object array, as SQL parameters and for comparing with stored rows: what
    :func:`to_python` gives per cell. Text is converted once per distinct value; an object
    array is taken to hold Python values already."""
    import numpy as np

    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    kind = values.dtype
    if isinstance(kind, (pd.StringDtype, pd.CategoricalDtype)):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        out = np.empty(len(uniques) + 1, dtype=object)
        out[:-1] = [to_python(v) for v in uniques.tolist()] if len(uniques) else []
        out[-1] = None
        return out[codes]
    if isinstance(values, pd.api.extensions.ExtensionArray) and not isinstance(values, pd.arrays.NumpyExtensionArray):
        return values.to_numpy(dtype=object, na_value=None)
    arr = np.asarray(values)
    out = np.empty(len(arr), dtype=object)
    out[:] = arr.tolist()
    if arr.dtype == object:
        out[:] = [to_python(v) for v in out]
    elif arr.dtype.kind == "f":
        out[np.isnan(arr)] = None
    return out


def _text_or_blank(series: pd.Series):
    """``value or ""`` per cell of a text column, as an array."""
    if isinstance(series.dtype, pd.StringDtype):
        return series.fillna("").array
    return _or_blank(_py(series))


def _differs(a, b) -> "np.ndarray":
    """Cells of two columns that are not exactly equal (missing equals only missing): a
    superset of the cells that :func:`_same` calls different."""
    import numpy as np

    a_na, b_na = np.asarray(pd.isna(a), dtype=bool), np.asarray(pd.isna(b), dtype=bool)
    out = a_na != b_na
    both = np.flatnonzero(~a_na & ~b_na)
    if len(both):
        try:
            same = np.asarray(a[both] == b[both], dtype=bool)
        except Exception:  # columns of kinds that do not compare in bulk
            same = ~_ne(_py(a[both]), _py(b[both]))
        out[both] = ~same
    return out


def _or_blank(values: "np.ndarray") -> "np.ndarray":
    """``value or ""`` per cell of a text column (text or ``None``)."""
    import numpy as np

    out = values.copy()
    blank = np.equal(values, None).astype(bool) | np.equal(values, "").astype(bool)
    out[blank] = ""
    return out


def _isnt_none(values: "np.ndarray") -> "np.ndarray":
    import numpy as np

    return np.not_equal(values, None).astype(bool)


def _ne(a: "np.ndarray", b: "np.ndarray") -> "np.ndarray":
    """Cells that are not exactly equal (``None`` equals only ``None``): a superset of the
    cells that :func:`_same` calls different."""
    import numpy as np

    if not len(a):
        return np.zeros(0, dtype=bool)
    a_none, b_none = ~_isnt_none(a), ~_isnt_none(b)
    return np.where(a_none | b_none, a_none != b_none, np.not_equal(a, b).astype(bool))


def _read_typed(conn, query) -> pd.DataFrame:
    """A query's rows as a DataFrame of typed columns, read in batches (text as ``string``,
    whole numbers as ``Int64``, other numbers as ``Float64``), so that no Python object per
    cell outlives its batch."""
    result = conn.execute(query)
    names = list(result.keys())
    parts = []
    while True:
        rows = result.fetchmany(_WRITE_BATCH)
        if not rows:
            break
        parts.append(_typed_rows(rows, names))
    if not parts:
        return _typed_rows([], names)
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _typed_rows(rows, names: list[str]) -> pd.DataFrame:
    columns = list(zip(*rows)) if rows else [()] * len(names)
    data = {}
    for name, values in zip(names, columns):
        kinds = {type(v) for v in values} - {type(None)}
        if not kinds:
            data[name] = pd.Series(list(values), dtype=object).array
        elif kinds <= {str}:
            data[name] = pd.array(list(values), dtype="string")
        elif kinds <= {int}:
            data[name] = pd.array(list(values), dtype="Int64")
        elif kinds <= {int, float}:
            data[name] = pd.array(list(values), dtype="Float64") if kinds == {float} else pd.Series(
                list(values), dtype=object).array
        else:
            data[name] = pd.Series(list(values), dtype=object).array
    return pd.DataFrame(data, index=range(len(rows)))


def _insert_many(conn, table, rows: dict, *, take=None, pause: bool = False) -> None:
    """Insert rows given as columns (Python values in object arrays, typed arrays, or
    ``None`` for a NULL column), the rows at ``take`` (default all), in batches of
    :data:`_WRITE_BATCH` rows: Python values are made batch by batch."""
    import numpy as np

    names = [c for c in rows]
    n = len(next(v for v in rows.values() if v is not None))
    take = np.arange(n) if take is None else take
    # text: Python strings made once per distinct value, the column an array of references
    rows = {c: _py(v) if v is not None and isinstance(v.dtype, (pd.StringDtype, pd.CategoricalDtype)) else v
            for c, v in rows.items()}
    # the statement compiled once; each batch goes to the driver's executemany as plain
    # tuples where the driver takes them (SQLite), else through SQLAlchemy as dicts
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    sql = str(compiled)
    order = list(compiled.positiontup or []) if compiled.positional else []
    direct = sorted(order) == sorted(names) and "RETURNING" not in sql.upper()
    for start in range(0, len(take), _WRITE_BATCH):
        at = take[start:start + _WRITE_BATCH]
        cols = {c: _py(rows[c][at]).tolist() if rows[c] is not None else [None] * len(at) for c in names}
        if direct:
            conn.exec_driver_sql(sql, list(zip(*(cols[c] for c in order))))
        else:
            conn.execute(table.insert(), [dict(zip(names, r)) for r in zip(*cols.values())])
        if pause and start == 0:
            _test_pause()


def _update_many(conn, table, rows: list[dict]) -> None:
    """``UPDATE table SET ... WHERE id = :_id`` for each row (rows that set the same fields)."""
    from sqlalchemy import bindparam

    if not rows:
        return
    fields = [c for c in rows[0] if c != "_id"]
    stmt = table.update().where(table.c.id == bindparam("_id")).values(
        **{c: bindparam(f"_new_{c}") for c in fields})
    for start in range(0, len(rows), _WRITE_BATCH):
        conn.execute(stmt, [{"_id": r["_id"], **{f"_new_{c}": r[c] for c in fields}}
                            for r in rows[start:start + _WRITE_BATCH]])


def _test_pause() -> None:
    """Test hook: with ``CAPE_TEST_INGEST_PAUSE=SECONDS`` set, an ingest stops this long
    inside its transaction, after its first batch of scores is written, and says so on
    stderr; tests kill it there to check that an interrupted ingest leaves the store as it
    was. Unset (always, outside tests), it does nothing."""
    wait = os.environ.get("CAPE_TEST_INGEST_PAUSE")
    if not wait:
        return
    import sys
    import time

    print("CAPE_TEST_INGEST_PAUSE: paused inside the ingest transaction", file=sys.stderr, flush=True)
    time.sleep(float(wait))


class _Origins:
    """Input file per model and per score key, for naming files in conflict messages:
    looked up for the conflicts only (the first row of a key that names a file)."""

    def __init__(self, data: Dataset):
        self.models = data.models
        self.scores = data.scores

    def files(self, keys: list[tuple]) -> list[str | None]:
        out: list[str | None] = [None] * len(keys)
        for size, frame, cols in ((1, self.models, ["model"]),
                                  (4, self.scores, ["model", "benchmark", "variant", "source"])):
            want = [i for i, k in enumerate(keys) if len(k) == size]
            if not want or "_file" not in frame.columns or not len(frame):
                continue
            file = frame["_file"]
            named = ~pd.Series([f is None or f is pd.NA for f in file], dtype=bool).to_numpy()
            parts = [frame[c].astype(object).where(frame[c].notna(), "" if c in ("variant", "source") else None)
                     .to_numpy(dtype=object)[named] for c in cols]
            index = pd.MultiIndex.from_arrays(parts) if size > 1 else pd.Index(parts[0])
            first = ~index.duplicated(keep="first")
            index, names = index[first], pd.Series(file.to_numpy(dtype=object)[named][first], dtype=object)
            look = [keys[i] for i in want]
            pos = (index.get_indexer(pd.MultiIndex.from_tuples(look)) if size > 1
                   else index.get_indexer([k[0] for k in look]))
            for i, p_ in zip(want, pos):
                out[i] = None if p_ < 0 else str(names.iat[p_])
        return out


def _origins(data: Dataset) -> _Origins:
    """Input file per model and per score key, for naming files in conflict messages."""
    return _Origins(data)


def _transactional_ddl(engine: Engine) -> None:
    """Let SQLAlchemy, not Python's sqlite3 module, begin SQLite transactions.

    The module's legacy mode runs DDL (CREATE/DROP TABLE) outside any transaction, which
    would make a failed migration half-applied; with this, ``engine.begin()`` covers DDL too.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")


class _Rollback(Exception):
    """Raised inside the ingest transaction to undo a dry run."""


# ----------------------------------------------------------------- reading, columnar
#: Rows per batch when reading a panel (bounds the memory held as Python tuples).
_BATCH = 20_000


def _batches(conn, query):
    """The rows of ``query`` as lists of the driver's plain tuples (no per-row Row objects)."""
    result = conn.execute(query)
    try:
        cursor = getattr(result, "cursor", None)
        if cursor is None or conn.dialect.name != "sqlite":
            # other drivers may buffer rows ahead of the cursor: go through SQLAlchemy
            for part in result.partitions(_BATCH):
                yield [tuple(r) for r in part]
            return
        while rows := cursor.fetchmany(_BATCH):
            yield rows
    finally:
        result.close()


def _read_columns(conn, query, names: list[str], dtypes: dict[str, str]) -> dict:
    """The rows of ``query`` as one array per column. A column of ``dtypes`` comes typed as
    ``Dataset.from_frames`` types it (:data:`cape.schema.MODEL_COLUMNS`,
    :data:`~cape.schema.SCORE_COLUMNS`); ``id``/``*_id`` as int64, the others as objects.
    Arrow converts each batch of rows column-wise in C; a value it will not take (text in a
    number column, say) makes the whole read go through :func:`pandas.to_numeric` cell by
    cell, as ``Dataset.from_frames`` does."""
    try:
        return _arrow_columns(_batches(conn, query), names, dtypes)
    except (TypeError, ValueError, ArithmeticError, ImportError):  # ArrowException is both
        return _object_columns([r for rows in _batches(conn, query) for r in rows], names, dtypes)


#: Arrow type each schema dtype is read as: integers come as float64 (NULL as NaN) and are
#: cast to Int64 as ``Dataset.from_frames`` casts them, so a non-integral value is an error
#: there too rather than truncated.
_ARROW = {"string": "string", "Float64": "float64", "Int64": "float64"}


def _arrow_columns(batches, names: list[str], dtypes: dict[str, str]) -> dict:
    import gc

    import pyarrow as pa

    def kind(name):
        if name in dtypes:
            return _ARROW[dtypes[name]]
        return "int64" if name == "id" or name.endswith("_id") else "string"

    struct = pa.struct([(n, getattr(pa, kind(n))()) for n in names])
    # millions of short-lived row tuples: the cyclic collector would only rescan them
    collecting = gc.isenabled()
    gc.disable()
    try:
        parts = [pa.array(rows, type=struct, from_pandas=True) for rows in batches]
    finally:
        if collecting:
            gc.enable()
    table = pa.concat_arrays(parts) if parts else pa.array([], type=struct)
    out = {}
    for name in names:
        col = table.field(name)
        if dtypes.get(name) == "Int64":
            values = col.to_numpy(zero_copy_only=False)
            out[name] = pd.array(values, dtype="Int64") if len(values) else pd.array([], dtype="Int64")
        elif name in dtypes:
            out[name] = pd.api.types.pandas_dtype(dtypes[name]).__from_arrow__(col)
        elif kind(name) == "int64":
            out[name] = col.to_numpy(zero_copy_only=False)
        else:
            out[name] = np.asarray(col.to_pylist(), dtype=object)
    return out


def _object_columns(rows: list[tuple], names: list[str], dtypes: dict[str, str]) -> dict:
    table = np.array(rows, dtype=object) if rows else np.empty((0, len(names)), dtype=object)
    out = {}
    for i, name in enumerate(names):
        col = table[:, i].copy()
        dtype = dtypes.get(name)
        if dtype == "string":
            out[name] = pd.array([None if pd.isna(v) else str(v) for v in col], dtype=dtype)
        elif dtype is not None:
            values = pd.to_numeric(pd.Series(col, dtype=object))
            out[name] = pd.array(values, dtype=dtype) if len(values) else pd.array([], dtype=dtype)
        elif name == "id" or name.endswith("_id"):
            out[name] = col.astype(np.int64)
        else:
            out[name] = col
    return out


def _typed_frame(cols: dict, dtypes: dict[str, str]) -> pd.DataFrame:
    """The frame of ``dtypes``' columns from :func:`_read_columns`, in ``dtypes``' order."""
    n = len(next(iter(cols.values())))
    return pd.DataFrame({c: cols[c] for c in dtypes}, index=range(n))
