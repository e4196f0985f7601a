"""The database tables (SQLAlchemy Core). Portable SQL only: SQLite by default, any
SQLAlchemy URL (for example PostgreSQL) through ``CAPE_DB_URL``.

Panels are isolated by the keys themselves (schema version 2): a ``models`` row belongs to
exactly one panel (unique on ``(panel, model)``) and carries the metadata as imported into
that panel; a ``scores`` row belongs to exactly one ``models`` row. The same model id in two
panels is two rows, so nothing written to one panel can change what another returns.
Version 3 adds ``scores.run_date``: when the run behind a score was made.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ..storeinfo import APPLICATION, SCHEMA_VERSION

__all__ = ["metadata", "cape_meta", "panels", "models", "scores", "SCHEMA_VERSION"]

# SCHEMA_VERSION (bump it together with a new migration) and APPLICATION live in
# cape.storeinfo, in the standard library only, so that cape.catalog can check a database
# without importing SQLAlchemy.

metadata = MetaData()

cape_meta = Table(
    "cape_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

panels = Table(
    "panels",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", String(32), nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("panel", String(200), ForeignKey("panels.name"), nullable=False),
    Column("model", String(512), nullable=False),
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
    Column("subset", String(64)),
    UniqueConstraint("panel", "model", name="uq_model_per_panel"),
)

scores = Table(
    "scores",
    metadata,
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
    Column("run_date", String(32)),
    UniqueConstraint("model_id", "benchmark", "variant", "source", name="uq_score_identity"),
)

#: Every table, in an order that respects foreign keys (for dumps and tests).
TABLES = (cape_meta, panels, models, scores)
