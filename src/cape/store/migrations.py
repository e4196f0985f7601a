"""Schema migrations: an ordered list of steps, each taking the database one version up.

A database records its version in ``cape_meta``. Opening it applies every pending step in
one transaction; a database newer than this code is refused rather than touched.

Adding a step: write a function that alters the tables with portable DDL, append
``Migration(N, "what it does", function)``, and set ``schema.SCHEMA_VERSION = N``. Once a
second step exists, step 1 must create the version-1 tables from a frozen copy, not from
the current ``schema.metadata``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from . import schema

__all__ = ["Migration", "MIGRATIONS", "current_version", "upgrade"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    schema.metadata.create_all(conn)
    conn.execute(schema.cape_meta.insert().values(key="application", value=schema.APPLICATION))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: panels, models, panel_models, scores", _initial),
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
