"""The audit store on a real SQLite file: records read back as written, one chain that verifies,
UPDATE/DELETE refused, and an edit made behind the store's back named by `verify`."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicerag.audit.database import sqlite_url
from voicerag.audit.record import GENESIS_HASH, AuditRecord, record_hash
from voicerag.audit.store import AuditStore


def turn(i: int, user: str = "alice", time: str | None = None) -> AuditRecord:
    return AuditRecord(
        time=time or f"2025-01-01T09:00:{i:02d}Z", turn_id=f"t{i}", session_id="s1", user_id=user,
        tenant="acme", roles=["member", "staff"], front_door="voice", route="lookup",
        sources=[{"name": "weather", "status": "ok"}],
        documents=["doc-1", "doc-2"], degraded=i % 2 == 1, latency_ms=100 + i / 3,
        question=f"質問 {i}？", answer=f"answer {i}.",
    )  # fmt: skip


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AuditStore]:
    opened = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    yield opened
    await opened.close()


@pytest.fixture
async def five(store: AuditStore) -> AuditStore:
    """A log of five records, appended in two transactions."""
    await store.append([turn(1), turn(2), turn(3)])
    await store.append([turn(4), turn(5)])
    return store


def raw(store: AuditStore) -> sqlite3.Connection:
    """The file opened behind the store's back, as anyone with access to it could."""
    assert store.database.path is not None
    return sqlite3.connect(store.database.path, isolation_level=None)


async def test_records_read_back_as_they_were_written_in_one_chain(five: AuditStore) -> None:
    found = await five.read()
    assert [r.seq for r in found] == [1, 2, 3, 4, 5]
    for i, stored in enumerate(found, start=1):
        assert stored.model_dump(exclude={"seq", "previous_hash", "hash"}) == turn(i).model_dump()
    assert found[0].previous_hash == GENESIS_HASH
    assert all(later.previous_hash == earlier.hash for earlier, later in itertools.pairwise(found))
    result = await five.verify()
    assert result.intact and result.records == 5 and result.head == found[-1].hash and result.guarded


async def test_update_and_delete_are_refused_by_the_database(five: AuditStore) -> None:
    connection = raw(five)
    for statement in (
        "UPDATE audit_records SET answer = 'changed' WHERE seq = 3",
        "DELETE FROM audit_records WHERE seq = 5",
        "INSERT OR REPLACE INTO audit_records SELECT * FROM audit_records WHERE seq = 3",  # a delete in disguise
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute(statement)
    assert connection.execute("SELECT count(*), max(answer) FROM audit_records").fetchone() == (5, "answer 5.")
    connection.close()
    assert (await five.verify()).intact


async def test_an_edited_record_is_named(five: AuditStore) -> None:
    assert (await five.verify()).intact  # control: the same log before the edit
    connection = raw(five)
    connection.execute("DROP TRIGGER audit_records_no_update")
    connection.execute("UPDATE audit_records SET answer = 'a better answer' WHERE seq = 3")
    connection.close()
    result = await five.verify()
    assert not result.intact and not result.guarded and result.records == 2
    assert result.bad is not None and result.bad.seq == 3 and result.bad.turn_id == "t3"
    assert "edited" in str(result.bad) and str(result.bad).startswith("record 3 (turn t3)")


async def test_an_edit_with_its_hash_recomputed_is_named_by_the_next_record(five: AuditStore) -> None:
    row = (await five.read())[2]
    fields = row.model_dump(mode="json") | {"answer": "rewritten"}
    forged = record_hash(fields)
    connection = raw(five)
    connection.execute("DROP TRIGGER audit_records_no_update")
    connection.execute("UPDATE audit_records SET answer = 'rewritten', hash = ? WHERE seq = 3", (forged,))
    connection.close()
    result = await five.verify()
    assert result.bad is not None and result.bad.seq == 4 and "record 3 was rewritten" in result.bad.reason


async def test_a_removed_record_is_named(five: AuditStore) -> None:
    connection = raw(five)
    connection.execute("DROP TRIGGER audit_records_no_delete")
    connection.execute("DELETE FROM audit_records WHERE seq = 2")
    connection.close()
    result = await five.verify()
    assert result.bad is not None and result.bad.seq == 3 and "record 2 is missing" in result.bad.reason


async def test_the_next_writer_puts_a_dropped_trigger_back(five: AuditStore, tmp_path: Path) -> None:
    connection = raw(five)
    connection.execute("DROP TRIGGER audit_records_no_delete")
    assert not (await five.verify()).guarded
    later = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))  # another process starting
    await later.append([turn(6)])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("DELETE FROM audit_records")
    connection.close()
    assert (await later.verify()).guarded
    await later.close()


async def test_filters_keep_the_most_recent_records_oldest_first(store: AuditStore) -> None:
    times = [f"2025-01-0{day}T09:00:00.000000Z" for day in range(1, 7)]
    users = ["alice", "bob", "alice", "bob", "alice", "bob"]
    await store.append([turn(i, user, time) for i, (user, time) in enumerate(zip(users, times, strict=True))])
    assert [r.turn_id for r in await store.read(limit=2)] == ["t4", "t5"]
    assert [r.turn_id for r in await store.read(user="alice")] == ["t0", "t2", "t4"]
    assert [r.turn_id for r in await store.read(since=times[3])] == ["t3", "t4", "t5"]
    assert [r.turn_id for r in await store.read(user="bob", since=times[2], limit=1)] == ["t5"]
    assert await store.read(user="carol") == []


async def test_reading_a_log_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "audit.sqlite"
    store = AuditStore(sqlite_url(path))
    assert await store.read() == [] and (await store.verify()).records == 0
    assert not path.exists() and not path.parent.exists()
