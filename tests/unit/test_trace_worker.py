"""The trace worker: tasks run in order on one thread, off the caller's; a full queue drops new work
and counts it; `drain` waits at most its timeout, however long a task takes."""

from __future__ import annotations

import threading
import time

from voicerag.tracing.worker import TraceWorker


def test_tasks_run_in_order_on_the_worker_thread() -> None:
    worker, ran = TraceWorker("test"), []
    for n in range(50):
        worker.submit(lambda n=n: ran.append((n, threading.current_thread().name)))
    assert worker.drain(5.0)
    assert [n for n, _ in ran] == list(range(50)) and {name for _, name in ran} == {"test"}


def test_a_failing_task_does_not_stop_the_next() -> None:
    worker, ran = TraceWorker("test"), []
    worker.submit(lambda: 1 / 0)
    worker.submit(lambda: ran.append("next"))
    assert worker.drain(5.0) and ran == ["next"]


def test_a_full_queue_drops_new_work_and_drain_is_bounded() -> None:
    release = threading.Event()
    worker = TraceWorker("test", max_tasks=2)
    worker.submit(release.wait)  # the thread takes it and blocks
    while worker.waiting and worker._tasks.qsize():  # until the thread holds it
        time.sleep(0.001)
    for _ in range(4):
        worker.submit(lambda: None)
    assert worker.dropped == 2 and worker.waiting == 3
    started = time.monotonic()
    assert worker.drain(0.2) is False
    assert time.monotonic() - started < 0.5
    release.set()
    assert worker.drain(5.0) and worker.waiting == 0
