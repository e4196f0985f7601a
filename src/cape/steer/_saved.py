"""Saved results of the steering package (evaluations, internal coupling): written atomically,
recorded under ``$CAPE_HOME/<folder>`` for ``cape audit`` and ``cape report``, read back with
a clear error naming the file. One place for what both result kinds do alike."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import CapeError


def write_atomic(path: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as JSON to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def home_folder(name: str) -> Path:
    """``$CAPE_HOME/<name>`` (not created)."""
    from ..store import cape_home

    return Path(cape_home()) / name


def record_path(folder: str, model_id: str) -> Path:
    """A new file name ``$CAPE_HOME/<folder>/<model>-<UTC time>.json`` (the folder created)."""
    where = home_folder(folder)
    where.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_id)).strip("_")[:80] or "model"
    return where / f"{stem}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}.json"


def read_kind(path: str | Path, kind: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``kind`` is ``kind``; a CapeError naming the file
    otherwise (``what``: how the error names the expected content)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CapeError(f"{path}: no such file ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CapeError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise CapeError(f"{path}: not {what} (its 'kind' is not {kind!r})")
    return doc
