"""`AuditWriter`: records leave the turn's path at once and reach the database from a thread.

`write(record)` appends to a bounded in-memory queue (a lock and a deque: microseconds) and never
waits for the database. A daemon thread, with an event loop of its own, takes whatever has queued
up and appends it in one transaction: a batch per commit, so the rate follows the database's commit
rate, not the turns'. While the database is down the thread retries with backoff and records queue
up; a full queue refuses new records (counted, one warning) rather than block a turn or reorder the
chain.

`close(timeout_s)` flushes what is queued and returns within `timeout_s` whatever the database
does; what could not be written is counted in one warning line. It also runs at interpreter exit
(atexit), so a normal exit loses nothing. A `kill -9` loses what was queued or in flight: records
handed to `write` in the last moments (about one commit's time, more while the database lags).
Committed records survive it, the chain intact.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Coroutine
from functools import partial
from typing import Any

from voicerag.audit.record import AuditRecord
from voicerag.audit.store import AuditStore

log = logging.getLogger("voicerag.audit")

BATCH = 500  # records per transaction at most
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0


def describe(exc: BaseException) -> str:
    """One line for a log: the driver's first line, not SQLAlchemy's paragraph."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class AuditWriter:
    def __init__(self, store: AuditStore, *, queue_size: int = 10_000, batch: int = BATCH) -> None:
        self.store = store
        self.queue_size, self.batch = queue_size, batch
        self._queue: deque[AuditRecord] = deque()
        self._lock = threading.Condition()
        self._closing = False
        self._deadline = math.inf  # monotonic time by which close() gives up
        self._in_flight = 0
        self.written = 0  # committed to the database
        self.dropped = 0  # refused: queue full, or written after close()
        self.error: str | None = None  # the last failure, while it lasts
        self._thread = threading.Thread(target=self._run, name="voicerag-audit-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ----------------------------------------------------------------- the caller's side

    def write(self, record: AuditRecord) -> bool:
        """Queue `record` for the database; False (and counted) when the queue is full or closed."""
        if not isinstance(record, AuditRecord):  # caught here, not as a batch the thread retries forever
            raise TypeError(f"an AuditRecord is expected, not {type(record).__name__}")
        with self._lock:
            if not self._closing and len(self._queue) < self.queue_size:
                self._queue.append(record)
                self._lock.notify_all()  # the writer thread, whoever else waits (flush) lets it be
                return True
            self.dropped += 1
            first = self.dropped == 1
        if first:  # once: a flood of warnings would cost the turns more than the loss
            log.warning("audit log: a record was dropped (queue of %d full, or writer closed)", self.queue_size)
        return False

    @property
    def pending(self) -> int:
        """Records handed over and not yet committed."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def flush(self, timeout_s: float) -> int:
        """Wait, at most `timeout_s`, until every record handed over so far is committed (a voice
        call's records at its end, while the worker goes on); returns how many are still pending."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while (self._queue or self._in_flight) and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            return len(self._queue) + self._in_flight

    def close(self, timeout_s: float = 5.0) -> int:
        """Flush and stop, within `timeout_s`; returns how many records were not written (logged)."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout_s
                self._lock.notify_all()
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        atexit.unregister(self.close)
        lost = self.pending + self.dropped
        if lost:
            unwritten = self.pending
            log.warning(
                "audit log: %d record(s) not written to %s (%d still queued at shutdown, %d dropped)%s",
                lost, self.store.where, unwritten, self.dropped, f": {self.error}" if self.error else "",
            )  # fmt: skip
        return lost

    async def aclose(self, timeout_s: float = 5.0) -> int:
        """`close` without blocking the event loop."""
        return await asyncio.to_thread(self.close, timeout_s)

    # ----------------------------------------------------------------- the writer thread

    def _run(self) -> None:
        # The SQLite folder now, outside any event loop: the store would create it through a thread
        # pool, which interpreter exit shuts before the atexit flush runs (every queued record lost).
        with contextlib.suppress(OSError):  # the first append then says what is wrong, and retries
            self.store.database.ensure_folder()
        with asyncio.Runner() as runner:
            try:
                while (batch := self._next_batch()) is not None:
                    if not self._append(runner, batch):
                        return  # closing, and the database did not come back in time
            finally:
                with contextlib.suppress(Exception):  # the engine of a dead database: nothing to save
                    self._bounded(runner, self.store.close(), self.store.database.timeout_s)

    def _next_batch(self) -> list[AuditRecord] | None:
        """The next records to append, waiting for some; None once closing and drained."""
        with self._lock:
            while not self._queue and not self._closing:
                self._lock.wait(timeout=60)  # woken by write() and close(); the timeout is only a backstop
            if not self._queue:
                return None
            batch = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            self._in_flight = len(batch)
            return batch

    def _append(self, runner: asyncio.Runner, batch: list[AuditRecord]) -> bool:
        """Append `batch`, retrying while the database fails; False when closing ran out of time."""
        pause = RETRY_FIRST_S
        while True:
            budget = min(self.store.database.timeout_s, self._deadline - time.monotonic())
            try:
                if budget <= 0:
                    raise TimeoutError("close() timed out")
                self._bounded(runner, self.store.append(batch), budget)
            except Exception as exc:  # any failure: keep the records and try again
                if self.error is None:
                    log.warning("audit log: cannot write to %s (%s); retrying", self.store.where, describe(exc))
                self.error = describe(exc)
            else:
                with self._lock:
                    self.written += len(batch)
                    self._in_flight = 0
                    self._lock.notify_all()  # flush() waits for this
                if self.error is not None:
                    log.warning("audit log: writing to %s again", self.store.where)
                    self.error = None
                return True
            with self._lock:
                if self._closing and time.monotonic() >= self._deadline:
                    return False
                self._lock.wait_for(
                    partial(self._close_called_since, self._closing),  # not woken by each new record
                    min(pause, max(0.0, self._deadline - time.monotonic())),
                )
            pause = min(pause * 2, RETRY_MAX_S)

    def _close_called_since(self, was_closing: bool) -> bool:
        return self._closing and not was_closing

    @staticmethod
    def _bounded(runner: asyncio.Runner, work: Coroutine[Any, Any, object], timeout_s: float) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(timeout_s):
                await work

        runner.run(bounded())
