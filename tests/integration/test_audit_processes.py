"""The audit log across processes, on SQLite and PostgreSQL: two processes appending at once keep one
chain, and a `kill -9` of a writing process loses only records not yet committed — every record the
writer had reported written survives, and what is left is an unbroken prefix of what was written."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_audit_postgres import audit_postgres_url

from voicerag.audit.database import sqlite_url
from voicerag.audit.record import ChainedRecord
from voicerag.audit.store import AuditStore

__all__ = ["audit_postgres_url"]  # a fixture, used through `audit_url`

pytestmark = pytest.mark.integration

RECORD = "AuditRecord(turn_id=f'{name}-{i}', session_id=name, user_id='u', front_door='voice', latency_ms=1, question='q', answer='a')"  # noqa: E501

# Waits for the go file, then appends one record per transaction, as two busy workers would.
APPENDER = textwrap.dedent(
    f"""
    import asyncio, sys, time
    from pathlib import Path
    from voicerag.audit import AuditRecord, AuditStore
    url, name, go, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    async def main():
        store = AuditStore(url)
        print("ready", flush=True)
        give_up = time.monotonic() + 60
        while not go.exists() and time.monotonic() < give_up:
            await asyncio.sleep(0.005)
        for i in range(count):
            await store.append([{RECORD}])
            await asyncio.sleep(0.002)  # turns come apart; SQLite would let one process hog its lock
        await store.close()
    asyncio.run(main())
    """
)

# Writes through the writer as fast as turns could come, saying how many are committed so far.
KILLED_WRITER = textwrap.dedent(
    f"""
    import sys, time
    from voicerag.audit import AuditRecord, AuditStore, AuditWriter
    url, name = sys.argv[1], "t"
    writer = AuditWriter(AuditStore(url))
    for i in range(1_000_000):
        writer.write({RECORD})
        if i % 25 == 0:
            print(writer.written, flush=True)
        time.sleep(0.0002)
    """
)


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "audit.sqlite")
    return str(request.getfixturevalue("audit_postgres_url"))


async def whole_log(url: str) -> list[ChainedRecord]:
    """Every record, after checking the chain."""
    store = AuditStore(url)
    try:
        result = await store.verify()
        assert result.intact, result.bad
        found = await store.read(limit=1_000_000)
        assert len(found) == result.records
        return found
    finally:
        await store.close()


async def create_log(url: str) -> None:
    store = AuditStore(url)
    await store.append([])
    await store.close()


def python(script: str, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", script, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_appending_at_once_keep_one_chain(audit_url: str, tmp_path: Path) -> None:
    asyncio.run(create_log(audit_url))  # so that both start appending at once
    go, count = tmp_path / "go", 150
    appenders = [python(APPENDER, audit_url, name, str(go), str(count)) for name in ("a", "b")]
    for appender in appenders:  # both imported and waiting
        assert appender.stdout is not None and appender.stdout.readline() == "ready\n"
    go.touch()
    for appender in appenders:
        _, errors = appender.communicate(timeout=120)
        assert appender.returncode == 0, errors
    sessions = [r.session_id for r in asyncio.run(whole_log(audit_url))]
    assert sorted(sessions) == ["a"] * count + ["b"] * count
    switches = sum(1 for before, after in itertools.pairwise(sessions) if before != after)
    assert switches >= 10, f"the two processes hardly overlapped ({switches} switches): concurrency not tested"


def test_kill_9_loses_only_what_was_not_yet_committed(audit_url: str) -> None:
    writer = python(KILLED_WRITER, audit_url)
    assert writer.stdout is not None
    acknowledged, give_up = 0, time.monotonic() + 60
    while acknowledged < 300 and time.monotonic() < give_up:
        line = writer.stdout.readline()
        assert line, writer.stderr.read() if writer.stderr else "the writer ended"
        acknowledged = int(line)
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL and acknowledged >= 300
    turns = [r.turn_id for r in asyncio.run(whole_log(audit_url))]
    assert len(turns) >= acknowledged  # every record reported committed survived
    assert turns == [f"t-{i}" for i in range(len(turns))]  # the loss is only a tail: nothing skipped, nothing reordered
