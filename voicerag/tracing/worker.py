"""One background thread per process that does tracing work in order, off the turn's path.

A tracer's callbacks on the turn's path only take note of each event; building the runs, masking
and serialising them happen here, after the turn (`voicerag/tracing/langsmith.py`). The queue is
bounded: beyond `MAX_TASKS` waiting, new work is dropped and counted (a backend that cannot keep up
never grows the process's memory). The thread is a daemon, so it never holds the process's exit;
`drain(timeout)` waits at most `timeout` for what is queued.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from retrievers.masking import mask

log = logging.getLogger(__name__)

MAX_TASKS = 10_000


class TraceWorker:
    def __init__(self, name: str, max_tasks: int = MAX_TASKS) -> None:
        self._name = name
        self._tasks: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue(max_tasks)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.dropped = 0

    def submit(self, task: Callable[..., Any], *args: Any) -> None:
        """Run `task(*args)` on the worker thread, after everything submitted before it."""
        if self._thread is None:
            self._start()
        try:
            self._tasks.put_nowait((task, args))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("%s: %d task(s) dropped: the queue is full", self._name, self.dropped)

    def drain(self, timeout_s: float) -> bool:
        """Wait until every queued task has run, for at most `timeout_s`; True when they all did."""
        deadline = time.monotonic() + timeout_s
        while self._tasks.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    @property
    def waiting(self) -> int:
        return self._tasks.unfinished_tasks

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            task, args = self._tasks.get()
            try:
                task(*args)
            except Exception as exc:  # a tracing failure is logged, never raised into anything
                log.warning("%s: %s: %s", self._name, type(exc).__name__, mask(str(exc)))
            finally:
                self._tasks.task_done()
