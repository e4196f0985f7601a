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

import pandas as pd
from sqlalchemy import create_engine, delete, event, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError, OperationalError

from ..errors import CapeError, InputError, StoreError
from ..panels import BUILTIN_PANELS, Panel
from ..schema import MODEL_COLUMNS, SCORE_COLUMNS, Dataset, to_python
from . import migrations, schema

__all__ = ["Store", "IngestReport", "MetadataReport", "Conflict", "default_url", "cape_home"]

_PANEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: What a stored panel's name may be (public: the dashboard's upload form checks it too).
PANEL_NAME = _PANEL_NAME
#: Largest number of bound values per IN (...) query; SQLite's default limit is 32766.
_CHUNK = 500
_META = [c for c in MODEL_COLUMNS if c != "model"]
_SCORE_FIELDS = ("value", "stderr", "n_shot", "harness", "flags", "run_date")


def cape_home() -> Path:
    """``$CAPE_HOME``, or the per-user data folder."""
    env = os.environ.get("CAPE_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("cape", appauthor=False))


def default_url() -> str:
    """``$CAPE_DB_URL``, or SQLite at ``$CAPE_HOME/cape.db``."""
    return os.environ.get("CAPE_DB_URL") or f"sqlite:///{cape_home() / 'cape.db'}"


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
        m, s, p = schema.models, schema.scores, schema.panels
        with self.engine.connect() as conn:
            prow = conn.execute(select(p).where(p.c.name == name)).mappings().first()
            if prow is None:
                raise CapeError(f"no panel '{name}' in {self.location}")
            mq = (select(*[m.c[c] for c in MODEL_COLUMNS], m.c.subset, m.c.id)
                  .where(m.c.panel == name).order_by(m.c.id))
            models = pd.DataFrame(conn.execute(mq).mappings().all())
            sq = (select(m.c.model, *[s.c[c] for c in SCORE_COLUMNS if c != "model"])
                  .join(m, m.c.id == s.c.model_id)
                  .where(m.c.panel == name)
                  .order_by(s.c.id))
            scores = pd.DataFrame(conn.execute(sq).mappings().all())
        if models.empty:
            models = pd.DataFrame(columns=list(MODEL_COLUMNS) + ["subset"])
        ds = Dataset.from_frames(models.drop(columns=["id"], errors="ignore"), scores)
        ds.models["flags"] = ds.models["flags"].fillna("")
        ds.scores["flags"] = ds.scores["flags"].fillna("")
        return Panel(name=name, models=ds.models, scores=ds.scores, title=prow["title"],
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
        """
        if panel in BUILTIN_PANELS:
            raise CapeError(f"'{panel}' is a built-in panel and read-only; ingest into a panel of your own")
        if not _PANEL_NAME.match(panel):
            raise CapeError(f"panel name '{panel}' is not allowed: use letters, digits, '.', '_' "
                            "and '-', starting with a letter or digit")
        origins = _origins(data)
        data = data.public()
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
                origins: dict[tuple, str], *, replace: bool, title: str | None) -> None:
        m, s, p = schema.models, schema.scores, schema.panels
        # panel
        if conn.execute(select(p.c.name).where(p.c.name == panel)).first() is None:
            report.panel_created = True
            conn.execute(p.insert().values(name=panel, title=title or panel, description="",
                                           created_at=datetime.now(timezone.utc).isoformat(timespec="seconds")))
        # this panel's models (the same model id in another panel is another row)
        incoming = data.models
        ids = incoming["model"].tolist()
        stored: dict[str, dict] = {}
        for i in range(0, len(ids), _CHUNK):
            rows = conn.execute(select(m).where((m.c.panel == panel)
                                                & m.c.model.in_(ids[i:i + _CHUNK]))).mappings().all()
            stored.update({r["model"]: dict(r) for r in rows})
        conflicts: list[Conflict] = []
        model_ids: dict[str, int] = {}
        has_subset = "subset" in incoming.columns
        for rec in incoming.to_dict("records"):
            rec = {k: to_python(v) for k, v in rec.items()}
            old = stored.get(rec["model"])
            if old is None:
                values = {c: rec.get(c) for c in _META}
                values["flags"] = values["flags"] or ""
                res = conn.execute(m.insert().values(panel=panel, model=rec["model"],
                                                     subset=rec.get("subset") if has_subset else None,
                                                     **values))
                model_ids[rec["model"]] = res.inserted_primary_key[0]
                report.models_added += 1
                report.members_added += 1
                continue
            model_ids[rec["model"]] = old["id"]
            update = {}
            for c in _META:
                new, have = rec.get(c), old.get(c)
                if c == "flags":
                    new, have = new or "", have or ""
                    if new and new != have:
                        if have and not replace:
                            conflicts.append(Conflict(rec["model"], c, have, new, origins.get((rec["model"],))))
                        else:
                            update[c] = new
                    continue
                if new is None or _same(new, have):
                    continue
                if have is None or replace:
                    update[c] = new
                else:
                    conflicts.append(Conflict(rec["model"], c, have, new, origins.get((rec["model"],))))
            if update:
                conn.execute(m.update().where(m.c.id == old["id"]).values(**update))
                report.models_updated += 1
        # scores (of this panel's model rows only)
        existing: dict[tuple, dict] = {}
        id_list = list(model_ids.values())
        for i in range(0, len(id_list), _CHUNK):
            rows = conn.execute(select(s).where(s.c.model_id.in_(id_list[i:i + _CHUNK]))).mappings().all()
            for r in rows:
                existing[(r["model_id"], r["benchmark"], r["variant"], r["source"])] = dict(r)
        inserts = []
        for rec in data.scores.to_dict("records"):
            rec = {k: to_python(v) for k, v in rec.items()}
            rec["flags"] = rec["flags"] or ""
            rec["source"] = rec["source"] or ""
            key = (model_ids[rec["model"]], rec["benchmark"], rec["variant"], rec["source"])
            old = existing.get(key)
            fields = {c: rec[c] for c in _SCORE_FIELDS}
            if old is None:
                inserts.append({"model_id": key[0], "benchmark": key[1], "variant": key[2],
                                "source": key[3], **fields})
                continue
            if old["run_date"] is None and fields["run_date"] is not None:
                # a score stored before run dates were kept (schema 2): the date only fills in
                conn.execute(s.update().where(s.c.id == old["id"]).values(run_date=fields["run_date"]))
                old = {**old, "run_date": fields["run_date"]}
            diff = [c for c in _SCORE_FIELDS if not _same(fields[c], old[c] if c != "flags" else old[c] or "")]
            if not diff:
                report.scores_unchanged += 1
            elif replace:
                conn.execute(s.update().where(s.c.id == old["id"]).values(**fields))
                report.scores_replaced += 1
                report.replaced.append(f"{rec['model']} {key[1]}/{key[2]}: {old['value']:g} -> {fields['value']:g}")
            else:
                what = f"{key[1]}/{key[2]} from '{key[3]}'"
                c0 = diff[0]
                conflicts.append(Conflict(rec["model"], what if c0 == "value" else f"{what} {c0}",
                                          old[c0], fields[c0],
                                          origins.get((rec["model"], key[1], key[2], key[3]))))
        if conflicts:
            shown = "; ".join(str(c) for c in conflicts[:10])
            more = f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
            raise StoreError(
                f"{len(conflicts)} value(s) differ from what panel '{panel}' in {self.location} "
                f"already holds, nothing was written: {shown}{more}",
                hint="pass --replace to overwrite them",
            )
        if inserts:
            conn.execute(s.insert(), inserts)
            report.scores_added += len(inserts)


def _origins(data: Dataset) -> dict[tuple, str]:
    """Input file per model and per score key, for naming files in conflict messages."""
    out: dict[tuple, str] = {}
    if "_file" in data.models.columns:
        for mid, f in zip(data.models["model"], data.models["_file"]):
            if f is not None and f is not pd.NA:
                out.setdefault((mid,), str(f))
    if "_file" in data.scores.columns:
        keys = zip(data.scores["model"], data.scores["benchmark"],
                   data.scores["variant"].fillna(""), data.scores["source"].fillna(""), data.scores["_file"])
        for m, b, v, src, f in keys:
            if f is not None and f is not pd.NA:
                out.setdefault((m, b, v, src), str(f))
    return out


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
