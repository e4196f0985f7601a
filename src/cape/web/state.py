"""The server's state: the result cache, the jobs, and how errors become HTTP statuses."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import CapeError
from .analyses import ANALYSES, Analysis, NotFound
from .jobs import Job, Jobs, ResultCache, cache_key

__all__ = ["WebState", "http_status", "store_version", "validation_messages"]


def store_version() -> str:
    """A token that changes when the store's data may have changed, so that results of
    stored panels are recomputed after a `cape ingest` in a terminal too: the store's URL
    and, for SQLite, the size and modification time of the database file and its WAL
    journal (a stat each: microseconds). For a server database the URL alone: results stay
    cached until an upload through the dashboard or a restart."""
    from pathlib import Path

    from ..store import default_url

    url = default_url()
    parts = [url]
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        for path in (db, db.with_name(db.name + "-wal")):
            try:
                st = path.stat()
                parts.append(f"{st.st_mtime_ns}:{st.st_size}")
            except OSError:
                parts.append("-")
    return "|".join(parts)


def http_status(exc: BaseException) -> int:
    """404 for an unknown panel, family or saved result; 400 for any other refusal by the
    engine (a CapeError); 500 for a bug."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, CapeError):
        return 400
    return 500


def validation_messages(exc: ValidationError) -> list[str]:
    """'field: message' lines for a page (the API returns pydantic's 422 body)."""
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body"))
        out.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg")))
    return out


@dataclass
class WebState:
    """What one ``cape serve`` process holds: settings, cache and jobs (and, added by the
    steering module, the loaded model)."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    cache: ResultCache = field(default_factory=lambda: ResultCache(256))
    jobs: Jobs = None  # type: ignore[assignment]
    extras: dict[str, Any] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.jobs is None:
            self.jobs = Jobs(self.cache)

    # -- computing ---------------------------------------------------------------------
    def inputs(self, name: str, params: dict) -> BaseModel:
        """Validate ``params`` for analysis ``name`` (raises pydantic's ValidationError)."""
        return ANALYSES[name].query.model_validate(params)

    def key(self, name: str, q: BaseModel) -> str:
        """The cache key of ``name`` on ``q``; for a stored panel it includes the store's
        version (:func:`store_version`), so new data means a new computation."""
        from ..panels import is_builtin

        params = q.model_dump(mode="json")
        panel = params.get("panel")
        if isinstance(panel, str) and not is_builtin(panel):
            params = params | {"_store": store_version()}
        return cache_key(name, params)

    def cached(self, name: str, q: BaseModel) -> Any:
        return self.cache.get(self.key(name, q))

    def compute(self, name: str, q: BaseModel, progress: Callable[[int, int], None] | None = None) -> tuple[Any, bool]:
        """The result for ``q`` and whether it came from the cache. One computation per key
        at a time: a second identical request waits for the first and reuses it."""
        key = self.key(name, q)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self.cache.get(key)
            if hit is not None:
                return hit, True
            analysis: Analysis = ANALYSES[name]
            result = analysis.compute(q, progress or (lambda d, t: None))
            self.cache.put(key, result)
            return result, False

    def start(self, name: str, q: BaseModel) -> Job:
        """Run ``name`` on ``q`` as a job (reused while one for the same inputs runs)."""
        analysis = ANALYSES[name]
        return self.jobs.submit(name, self.key(name, q), q.model_dump(mode="json"),
                                lambda progress: analysis.compute(q, progress), error_status=http_status)

    def result_or_job(self, name: str, q: BaseModel) -> tuple[Any, Job | None]:
        """For a page: the cached result, or computed now when quick, or a running job for a
        long analysis (the page then shows its progress)."""
        hit = self.cached(name, q)
        if hit is not None:
            return hit, None
        if ANALYSES[name].long:
            return None, self.start(name, q)
        return self.compute(name, q)[0], None

    def invalidate(self) -> None:
        """Stored panels changed (an upload): forget every result."""
        self.cache.clear()
