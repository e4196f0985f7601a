"""What identifies and locates the results store, in the standard library only.

:mod:`cape.store` (SQLAlchemy) re-exports these; :mod:`cape.catalog` reads them to list the
stored panels without importing SQLAlchemy or pandas (``cape panels`` stays quick).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "APPLICATION", "cape_home", "default_url"]

#: The schema version this code writes. Bump it together with a new migration
#: (:mod:`cape.store.migrations`).
SCHEMA_VERSION = 3

#: Marker stored in cape_meta so that a database can be recognised as CAPE's.
APPLICATION = "cape"


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
