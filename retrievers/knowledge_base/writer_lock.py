"""One writer at a time per knowledge base, across processes (and machines, with Redis).

- Embedded Chroma: a file lock (`filelock`) beside the store, `<chroma folder>/<collection>.writer.lock`.
  The kernel drops it when its process dies, `kill -9` included.
- A Chroma server with `REDIS_URL`: a Redis lock (redis-py's `Lock`) that expires `ttl_s` after its
  holder stops renewing it (a killed writer blocks others for at most that long). A writer that
  cannot renew it in time stops writing (`ensure_held`).
- A Chroma server without Redis: a file lock in the data dir, which only serialises the writers of
  this machine (`note` says so).

Locks are only ever tried (`try_acquire` never waits): the writer waits between tries, so a wait
is bounded, can say that it waits, and Ctrl-C interrupts it.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol

import filelock
import redis
from chromadb.api import ClientAPI
from redis.exceptions import LockError, RedisError

from retrievers.errors import ServiceError
from retrievers.knowledge_base.chroma_client import ChromaEndpoint

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 600.0  # how long a writer waits for another one before giving up
REDIS_LOCK_TTL_S = 30.0
_REDIS_SOCKET_TIMEOUT_S = 5.0
MULTI_MACHINE_NOTE = (
    "note: CHROMA_URL without REDIS_URL: writers are serialised on this machine only; "
    "set REDIS_URL for writers on several machines"
)


class WriterLock(Protocol):
    """The lock a knowledge base's writers take in turn."""

    name: str  # what is locked, for messages: a file or a Redis key
    note: str | None  # a caveat worth telling whoever writes

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        ...

    def ensure_held(self) -> None:
        """Raise `ServiceError` when the lock was lost while held (a Redis lock that expired)."""
        ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class FileWriterLock:
    """An exclusive `flock` on a file, shared with every process of this machine."""

    def __init__(self, path: Path, note: str | None = None) -> None:
        self.path = path
        self.name = str(path)
        self.note = note
        self._lock = filelock.FileLock(path, thread_local=False)  # taken and released by different threads

    def try_acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        except OSError as exc:
            raise ServiceError(f"cannot take the writer lock {self.path} ({exc})") from None
        return True

    def ensure_held(self) -> None:
        """A file lock is held until released or its process dies: nothing to check."""

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class RedisWriterLock:
    """redis-py's `Lock`, renewed by a background thread while held."""

    def __init__(self, url: str, key: str, ttl_s: float = REDIS_LOCK_TTL_S) -> None:
        self.name = key
        self.note: str | None = None
        self.ttl_s = ttl_s
        self._redis = redis.Redis.from_url(
            url, socket_timeout=_REDIS_SOCKET_TIMEOUT_S, socket_connect_timeout=_REDIS_SOCKET_TIMEOUT_S
        )
        self._lock = self._redis.lock(key, timeout=ttl_s, thread_local=False)
        self._held_until = 0.0  # monotonic time the lock is known to last until
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def try_acquire(self) -> bool:
        try:
            acquired = bool(self._lock.acquire(blocking=False))
        except RedisError as exc:
            raise ServiceError(f"REDIS_URL: cannot take the writer lock {self.name} ({exc})") from None
        if acquired:
            self._held_until = time.monotonic() + self.ttl_s
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew, name="kb-writer-lock", daemon=True)
            self._renewer.start()
        return acquired

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._lock.reacquire()  # back to a full ttl_s
            except LockError:  # expired and maybe taken by another writer: lost for good
                self._held_until = 0.0
                return
            except RedisError as exc:  # Redis unreachable: held until the last renewal runs out
                log.warning("could not renew the writer lock %s: %s", self.name, exc)
                continue
            self._held_until = time.monotonic() + self.ttl_s

    def ensure_held(self) -> None:
        if time.monotonic() >= self._held_until:
            raise ServiceError(
                f"REDIS_URL: lost the writer lock {self.name} (expired: Redis unreachable?); "
                "stopped writing, the next ingest repairs what was left half-written"
            )

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=_REDIS_SOCKET_TIMEOUT_S)
            self._renewer = None
        try:
            self._lock.release()
        except (LockError, RedisError) as exc:  # expired already: nothing left to release
            log.warning("writer lock %s: %s", self.name, exc)

    def close(self) -> None:
        self._stop.set()
        self._redis.close()


def default_writer_lock(
    client: ClientAPI, collection: str, *, redis_url: str | None = None, lock_dir: Path | None = None
) -> WriterLock:
    """The writer lock of `collection` on `client`'s Chroma (see the module's docstring).
    `lock_dir`: where a shared server's file lock lives (default: the system's temp folder)."""
    endpoint = ChromaEndpoint.of(client)
    if endpoint.url is None:
        folder = Path(endpoint.path) if endpoint.path else Path(tempfile.gettempdir()) / "voicerag-locks"
        return FileWriterLock(folder / f"{collection}.writer.lock")
    if redis_url:
        return RedisWriterLock(redis_url, f"voicerag:kb-writer:{endpoint.url}/{collection}")
    server = re.sub(r"[^A-Za-z0-9.-]+", "_", endpoint.url.split("://", 1)[-1])
    folder = lock_dir or Path(tempfile.gettempdir()) / "voicerag-locks"
    return FileWriterLock(folder / f"{server}-{collection}.writer.lock", note=MULTI_MACHINE_NOTE)
