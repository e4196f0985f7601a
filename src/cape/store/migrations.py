"""Schema migrations: an ordered list of steps, each taking the database one version up.

A database records its version in ``cape_meta``. Opening it applies every pending step in
one transaction; a database newer than this code is refused rather than touched.

Adding a step: write a function that alters the tables with portable DDL, append
``Migration(N, "what it does", function)``, and set ``SCHEMA_VERSION = N`` in :mod:`cape.storeinfo` (re-exported by ``schema``). Every
step works on frozen copies of the tables it reads and writes (``_v1_tables``,
``_v2_tables``), never on the current ``schema`` module, so that an old database is always
taken through the same steps. A new database is created by running every step too.

Versions:

1. panels, models (one global row per model id), panel_models (membership), scores of a
   model. Scores belonged to models, so panels sharing a model id leaked into each other.
2. panel-scoped models: ``models`` gains ``panel`` and ``subset`` and is unique on
   ``(panel, model)``; ``panel_models`` is gone. A version-1 model shared by k panels
   becomes k rows, each with the version-1 metadata and every score that panel showed
   under version 1, so each panel's view is preserved exactly. (Models in no panel, which
   no version-1 code path wrote and no panel showed, are not carried over.)
3. ``scores.run_date`` (nullable text): when the run behind a score was made, read from
   the result file (lm-eval's ``date``, a ``results_<time>.json`` name) so that the newest
   run wins even where the source was renamed. Existing rows keep ``NULL``; their date is
   still read from their source name, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)

from . import schema

__all__ = ["Migration", "MIGRATIONS", "current_version", "upgrade"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _model_columns() -> list[Column]:
    """The model metadata columns shared by versions 1 and 2 (a fresh copy per call)."""
    return [
        Column("display_name", Text),
        Column("family", String(200)),
        Column("organisation", String(200)),
        Column("kind", String(16)),
        Column("params", BigInteger),
        Column("active_params", BigInteger),
        Column("d_model", Integer),
        Column("n_layers", Integer),
        Column("n_heads", Integer),
        Column("tokens", BigInteger),
        Column("flops", Float),
        Column("release_date", String(10)),
        Column("release_date_precision", String(5)),
        Column("flags", Text, nullable=False, default=""),
        Column("source", Text),
    ]


def _score_table(md: MetaData) -> Table:
    return Table(
        "scores", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
        Column("benchmark", String(64), nullable=False),
        Column("variant", String(128), nullable=False),
        Column("value", Float, nullable=False),
        Column("stderr", Float),
        Column("n_shot", Integer),
        Column("harness", Text),
        Column("source", String(1000), nullable=False),
        Column("flags", Text, nullable=False, default=""),
        UniqueConstraint("model_id", "benchmark", "variant", "source", name="uq_score_identity"),
    )


def _common_tables(md: MetaData) -> None:
    Table("cape_meta", md, Column("key", String(64), primary_key=True),
          Column("value", Text, nullable=False))
    Table("panels", md,
          Column("name", String(200), primary_key=True),
          Column("title", Text, nullable=False, default=""),
          Column("description", Text, nullable=False, default=""),
          Column("created_at", String(32), nullable=False))


def _v1_tables() -> MetaData:
    """Frozen copy of the version-1 tables."""
    md = MetaData()
    _common_tables(md)
    Table("models", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("model", String(512), nullable=False, unique=True),
          *_model_columns())
    Table("panel_models", md,
          Column("panel", String(200), ForeignKey("panels.name"), primary_key=True),
          Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
          Column("subset", String(64)))
    _score_table(md)
    return md


def _v2_tables() -> MetaData:
    """Frozen copy of the version-2 tables (panel-scoped models)."""
    md = MetaData()
    _common_tables(md)
    Table("models", md,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("panel", String(200), ForeignKey("panels.name"), nullable=False),
          Column("model", String(512), nullable=False),
          *_model_columns(),
          Column("subset", String(64)),
          UniqueConstraint("panel", "model", name="uq_model_per_panel"))
    _score_table(md)
    return md


def _initial(conn: Connection) -> None:
    _v1_tables().create_all(conn)
    conn.execute(schema.cape_meta.insert().values(key="application", value=schema.APPLICATION))


def _panel_scoped_models(conn: Connection) -> None:
    """Version 1 -> 2: one model row per (panel, model), carrying the scores the panel showed.

    Portable: read the version-1 rows, drop the old tables, create the new ones, insert.
    Everything runs in the caller's transaction, so a failure leaves version 1 intact.
    """
    old = _v1_tables()
    m, pm, s = old.tables["models"], old.tables["panel_models"], old.tables["scores"]
    meta = [c.name for c in m.columns if c.name != "id"]
    # one row per membership, in the order version 1 listed a panel's models (models.id)
    members = pd.DataFrame(
        conn.execute(select(m.c.id.label("old_id"), pm.c.panel, pm.c.subset, *[m.c[c] for c in meta])
                     .join(pm, pm.c.model_id == m.c.id).order_by(m.c.id, pm.c.panel)).mappings().all(),
        columns=["old_id", "panel", "subset", *meta], dtype=object)
    scores = pd.DataFrame(conn.execute(select(s).order_by(s.c.id)).mappings().all(),
                          columns=[c.name for c in s.columns], dtype=object)
    s.drop(conn)
    pm.drop(conn)
    m.drop(conn)
    new = _v2_tables()
    nm, ns = new.tables["models"], new.tables["scores"]
    nm.create(conn)
    ns.create(conn)
    if members.empty:
        return
    _insert(conn, nm, members.drop(columns=["old_id"]))
    ids = pd.DataFrame(conn.execute(select(nm.c.id.label("model_id"), nm.c.panel, nm.c.model)).mappings().all(),
                       columns=["model_id", "panel", "model"], dtype=object)
    links = members[["old_id", "panel", "model"]].merge(ids, on=["panel", "model"], validate="one_to_one")
    # every score of a model, once per panel that showed it; kept in version-1 order
    out = (scores.rename(columns={"model_id": "old_id", "id": "old_score_id"})
           .merge(links[["old_id", "panel", "model_id"]], on="old_id")
           .sort_values(["old_score_id", "panel"], kind="stable"))
    if not out.empty:
        _insert(conn, ns, out[[c.name for c in ns.columns if c.name != "id"]])


def _insert(conn: Connection, table: Table, frame: pd.DataFrame) -> None:
    """Insert a frame of Python objects (built with ``dtype=object``: no float casts)."""
    rows = frame.to_dict("records")
    for i in range(0, len(rows), 1000):
        conn.execute(table.insert(), rows[i:i + 1000])


def _score_run_date(conn: Connection) -> None:
    """Version 2 -> 3: add the nullable ``scores.run_date`` column (portable ADD COLUMN)."""
    conn.exec_driver_sql("ALTER TABLE scores ADD COLUMN run_date VARCHAR(32)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: panels, models, panel_models, scores", _initial),
    Migration(2, "panel-scoped models: models unique on (panel, model), no panel_models",
              _panel_scoped_models),
    Migration(3, "scores.run_date: when the run behind a score was made", _score_run_date),
)


def current_version(conn: Connection) -> int:
    row = conn.execute(
        select(schema.cape_meta.c.value).where(schema.cape_meta.c.key == "schema_version")
    ).first()
    return int(row[0]) if row else 0


def upgrade(conn: Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the steps above the database's version; return the versions applied."""
    have = current_version(conn) if conn.dialect.has_table(conn, "cape_meta") else 0
    applied = []
    for step in sorted(migrations, key=lambda m: m.version):
        if step.version <= have:
            continue
        step.apply(conn)
        values = {"key": "schema_version", "value": str(step.version)}
        if have == 0 and not applied:
            conn.execute(schema.cape_meta.insert().values(**values))
        else:
            conn.execute(schema.cape_meta.update()
                         .where(schema.cape_meta.c.key == "schema_version")
                         .values(value=str(step.version)))
        applied.append(step.version)
    return applied
