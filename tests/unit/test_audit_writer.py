"""The audit writer on a real SQLite file: nothing lost on close or on a normal exit, a turn never
waits for the database, a full queue refuses records and counts them, and close() keeps to its
timeout when the database cannot be written or hangs."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from voicerag.audit.database import sqlite_url
from voicerag.audit.record import AuditRecord
from voicerag.audit.store import AuditStore
from voicerag.audit.writer import AuditWriter

CLOSE_SLACK_S = 1.5  # a thread switch and a log line on a loaded machine, not a measurement


def turn(i: int) -> AuditRecord:
    return AuditRecord(
        turn_id=f"t{i}", session_id="s", user_id="u", front_door="ask", latency_ms=1, question="q", answer="a"
    )


async def chain_of(path: Path) -> list[str]:
    """The turn ids in the log, in chain order, after checking the chain."""
    store = AuditStore(sqlite_url(path))
    try:
        assert (await store.verify()).intact
        return [r.turn_id for r in await store.read(limit=100_000)]
    finally:
        await store.close()


async def create_log(path: Path) -> None:
    store = AuditStore(sqlite_url(path))
    await store.append([])
    await store.close()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process's write transaction on the file: appends wait for it (SQLite's busy wait)."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.rollback()
        connection.close()


def close_timed(writer: AuditWriter, timeout_s: float) -> tuple[int, float]:
    started = time.monotonic()
    lost = writer.close(timeout_s)
    return lost, time.monotonic() - started


async def test_everything_queued_is_written_by_close(tmp_path: Path) -> None:
    writer = AuditWriter(AuditStore(sqlite_url(tmp_path / "audit.sqlite")))
    assert all(writer.write(turn(i)) for i in range(1000))
    assert writer.close(timeout_s=30) == 0 and writer.written == 1000 and writer.pending == 0
    assert await chain_of(tmp_path / "audit.sqlite") == [f"t{i}" for i in range(1000)]
    assert not writer.write(turn(1000)) and writer.dropped == 1  # closed: refused, counted


async def test_a_full_queue_refuses_new_records_without_waiting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.sqlite"
    await create_log(path)
    writer = AuditWriter(AuditStore(sqlite_url(path), timeout_s=0.2), queue_size=5)
    with caplog.at_level(logging.WARNING, logger="voicerag.audit"), locked(path):
        # The database is locked by this very thread: a write() that waited for it would never return.
        accepted = [writer.write(turn(i)) for i in range(20)]
        assert accepted.count(False) >= 10 and writer.dropped == accepted.count(False)
        assert sum("dropped" in m for m in caplog.messages) == 1  # one warning, not one per record
    lost = writer.close(timeout_s=30)  # the lock is gone: the queue drains
    assert lost == writer.dropped and writer.written == accepted.count(True)
    assert await chain_of(path) == [f"t{i}" for i, ok in enumerate(accepted) if ok]  # in order, none reordered


@pytest.mark.quiet  # a time bound (tests/quiet.py)
def test_close_keeps_to_its_timeout_when_the_database_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    writer = AuditWriter(AuditStore(sqlite_url(tmp_path / "a-file" / "audit.sqlite")))
    for i in range(3):
        writer.write(turn(i))
    with caplog.at_level(logging.WARNING, logger="voicerag.audit"):
        lost, took = close_timed(writer, timeout_s=1.0)
    assert lost == 3 and took < 1.0 + CLOSE_SLACK_S
    said = [m for m in caplog.messages if "not written" in m]
    assert len(said) == 1 and "3 record(s) not written" in said[0] and "3 still queued" in said[0], said


@pytest.mark.quiet  # a time bound (tests/quiet.py)
async def test_close_keeps_to_its_timeout_when_the_database_hangs(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    await create_log(path)
    writer = AuditWriter(AuditStore(sqlite_url(path), timeout_s=30))  # SQLite would wait 30 s for the lock
    with locked(path):
        writer.write(turn(0))
        writer.write(turn(1))
        lost, took = close_timed(writer, timeout_s=1.0)
    assert lost == 2 and took < 1.0 + CLOSE_SLACK_S


def test_records_first_written_while_the_interpreter_exits_are_not_lost(tmp_path: Path) -> None:
    """The writer thread's first append (which creates the SQLite folder and table) starts only
    after the main thread has ended and the interpreter has shut its thread pools: it must still
    get everything written (it used a thread pool for the folder and lost all 50 records)."""
    script = textwrap.dedent(
        """
        import atexit, threading
        from voicerag.audit import AuditRecord, open_audit_writer
        from voicerag.settings import load_settings
        writer = open_audit_writer(load_settings())
        gate, append = threading.Event(), writer.store.append
        def after_the_gate(batch):
            gate.wait()
            return append(batch)
        writer.store.append = after_the_gate
        atexit.register(gate.set)  # runs at exit, before the writer's own flush (atexit is LIFO)
        for i in range(50):
            writer.write(AuditRecord(turn_id=f"t{i}", session_id="s", user_id="u", front_door="chat",
                                     latency_ms=1, question="q", answer="a"))
        """
    )
    env = {**os.environ, "VOICERAG_DATA_DIR": str(tmp_path / "new-folder"), "VOICERAG_ENV_FILE": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert asyncio.run(chain_of(tmp_path / "new-folder" / "audit.sqlite")) == [f"t{i}" for i in range(50)]


def test_a_normal_exit_loses_nothing(tmp_path: Path) -> None:
    """The process writes and exits without calling close(): the exit flushes the queue."""
    script = textwrap.dedent(
        """
        from voicerag.audit import AuditRecord, open_audit_writer
        from voicerag.settings import load_settings
        writer = open_audit_writer(load_settings())
        for i in range(2000):
            writer.write(AuditRecord(turn_id=f"t{i}", session_id="s", user_id="u", front_door="chat",
                                     latency_ms=1, question="q", answer="a"))
        """
    )
    env = {**os.environ, "VOICERAG_DATA_DIR": str(tmp_path), "VOICERAG_ENV_FILE": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert asyncio.run(chain_of(tmp_path / "audit.sqlite")) == [f"t{i}" for i in range(2000)]
