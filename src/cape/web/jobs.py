"""Results the dashboard has computed, and computations still running.

:class:`ResultCache` keeps results keyed by the analysis name and its validated inputs
(seed included), so a repeated request is answered without computing. :class:`Jobs` runs a
computation in a worker thread with progress (done, total) and cancellation: the progress
callback that every long CAPE computation already takes raises :class:`Cancelled` once the
job is cancelled, so the computation stops at its next step.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Cancelled", "Job", "Jobs", "ResultCache", "cache_key"]


class Cancelled(Exception):
    """Raised inside a computation whose job was cancelled."""


def cache_key(name: str, params: dict) -> str:
    """A stable key for an analysis and its inputs (JSON with sorted keys, hashed)."""
    text = json.dumps([name, params], sort_keys=True, default=str)
    return name + ":" + hashlib.sha256(text.encode()).hexdigest()[:24]


class ResultCache:
    """A thread-safe LRU of computed results (and of the errors computing them gave)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return default

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class Job:
    """One computation: its status (queued, running, done, failed, cancelled) and progress."""

    id: str
    name: str
    key: str
    params: dict
    status: str = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    error_status: int | None = None
    cached: bool = False       # the result was in the cache: nothing was computed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int) -> None:
        """The callback handed to the computation: records progress, stops a cancelled job."""
        if self.cancel_event.is_set():
            raise Cancelled(self.id)
        self.done, self.total = int(done), int(total)

    def to_dict(self) -> dict:
        return {"id": self.id, "analysis": self.name, "params": self.params, "status": self.status,
                "done": self.done, "total": self.total,
                "fraction": (self.done / self.total) if self.total else None,
                "error": self.error, "cached": self.cached,
                "seconds": round((self.finished or time.time()) - self.started, 3)}


class Jobs:
    """Runs computations in worker threads; one job per cache key at a time."""

    def __init__(self, cache: ResultCache, workers: int = 2, keep: int = 200) -> None:
        self.cache = cache
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cape-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()
        self.keep = keep

    def submit(self, name: str, key: str, params: dict, compute: Callable[[Callable[[int, int], None]], Any],
               error_status: Callable[[BaseException], int | None] = lambda exc: None) -> Job:
        """Start ``compute(progress)`` unless a job for ``key`` is queued or running (that job
        is returned) or its result is cached (a finished job is returned, ``cached`` true,
        nothing computed). The result goes into the cache under ``key``."""
        with self._lock:
            jid = self._by_key.get(key)
            if jid is not None and self._jobs[jid].status in ("queued", "running"):
                return self._jobs[jid]
            hit = key in self.cache
            job = Job(id=uuid.uuid4().hex[:16], name=name, key=key, params=params)
            if hit:
                job.status, job.cached, job.finished = "done", True, job.started
            self._jobs[job.id] = job
            self._by_key[key] = job.id
            while len(self._jobs) > self.keep:
                old_id, old = next(iter(self._jobs.items()))
                if old.status in ("queued", "running"):
                    break
                self._jobs.pop(old_id)
                if self._by_key.get(old.key) == old_id:
                    self._by_key.pop(old.key)
        if hit:
            return job

        def run() -> None:
            if job.cancel_event.is_set():
                job.status, job.finished = "cancelled", time.time()
                return
            job.status = "running"
            try:
                result = compute(job.progress)
            except Cancelled:
                job.status = "cancelled"
            except Exception as exc:  # shown to the user as the job's error
                job.status, job.error, job.error_status = "failed", str(exc), error_status(exc)
            else:
                self.cache.put(key, result)
                job.status = "done"
            job.finished = time.time()

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def for_key(self, key: str) -> Job | None:
        with self._lock:
            jid = self._by_key.get(key)
            return self._jobs.get(jid) if jid else None

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.status in ("queued", "running"):
            job.cancel_event.set()
            if job.status == "queued":
                job.status, job.finished = "cancelled", time.time()
        return job

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel_event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
