"""The audit log on a real PostgreSQL: records read back exactly, UPDATE/DELETE/TRUNCATE refused even
for the table's owner, an edit named by `verify`, the operator's setup (the writing role may only
append and read), and a writer that keeps to its close() timeout when the server dies or hangs."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from fakes.postgres_server import PostgresServer, why_not_startable
from test_interrupt import silent_server

from voicerag.audit.record import AuditRecord
from voicerag.audit.schema import postgres_setup_sql
from voicerag.audit.store import AuditStore
from voicerag.audit.writer import AuditWriter

__all__ = ["silent_server"]  # a fixture

pytestmark = pytest.mark.integration

CLOSE_SLACK_S = 1.5  # a thread switch and a log line on a loaded machine, not a measurement


async def execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def on_server(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture
def audit_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """An empty database of the test's own (one audit table per database), as the superuser."""
    name = f"voicerag_audit_{uuid.uuid4().hex[:10]}"
    asyncio.run(execute(postgres_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield on_server(postgres_admin_url, name)
    finally:
        asyncio.run(execute(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def turn(i: int, **changes: object) -> AuditRecord:
    fields: dict[str, object] = {"turn_id": f"t{i}", "session_id": "s", "user_id": "u", "front_door": "studio"}
    return AuditRecord(**(fields | {"latency_ms": 0.1 + 0.2, "question": f"q{i}", "answer": "a"} | changes))


async def five_records(url: str) -> AuditStore:
    store = AuditStore(url)
    await store.append([turn(i) for i in range(1, 6)])
    return store


async def test_records_read_back_exactly_and_the_chain_verifies(audit_postgres_url: str) -> None:
    written = [
        turn(1, tenant="acme", roles=["member"], sources=[{"name": "product_stock", "status": "unreachable"}]),
        turn(2, question="KH-300の保証期間は？\x00", answer="2年です。", documents=["warranty"], degraded=True),
        turn(3, route="small_talk", rate_limited=True, latency_ms=1234.5678901234),
    ]
    store = AuditStore(audit_postgres_url)
    await store.append(written[:1])
    await store.append(written[1:])
    found = await store.read()
    assert [r.model_dump(exclude={"seq", "previous_hash", "hash"}) for r in found] == [w.model_dump() for w in written]
    assert found[1].question == "KH-300の保証期間は？\ufffd"  # NUL, which PostgreSQL refuses, replaced
    result = await store.verify()
    assert result.intact and result.records == 3 and result.head == found[-1].hash and result.guarded
    await store.close()


async def test_update_delete_and_truncate_are_refused_even_for_the_owner(audit_postgres_url: str) -> None:
    store = await five_records(audit_postgres_url)
    for statement in ("UPDATE audit_records SET answer = 'x'", "DELETE FROM audit_records", "TRUNCATE audit_records"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await execute(audit_postgres_url, statement)  # as the superuser who created the table
    result = await store.verify()
    assert result.intact and result.records == 5
    await store.close()


async def test_an_edited_record_is_named(audit_postgres_url: str) -> None:
    store = await five_records(audit_postgres_url)
    assert (await store.verify()).intact  # control: the same log before the edit
    await execute(
        audit_postgres_url,
        "ALTER TABLE audit_records DISABLE TRIGGER USER",  # what the owner or a superuser can do
        "UPDATE audit_records SET latency_ms = 1 WHERE seq = 2",
    )
    result = await store.verify()
    assert result.bad is not None and result.bad.seq == 2 and "edited" in result.bad.reason and not result.guarded
    await store.close()


@pytest.fixture
def writer_role(postgres_admin_url: str) -> Iterator[tuple[str, str]]:
    """A login role of the test's own (name, password); dropped after the test's database."""
    name, password = f"voicerag_audit_writer_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    asyncio.run(execute(postgres_admin_url, f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
    try:
        yield name, password
    finally:
        asyncio.run(execute(postgres_admin_url, f"DROP ROLE IF EXISTS {name}"))


async def test_the_operator_setup_lets_the_writing_role_only_append_and_read(
    writer_role: tuple[str, str], audit_postgres_url: str
) -> None:
    role, password = writer_role
    await execute(audit_postgres_url, postgres_setup_sql(role))  # run by an administrator, who owns the table
    as_writer = audit_postgres_url.replace("postgresql://postgres@", f"postgresql://{role}:{password}@", 1)
    writer = AuditWriter(AuditStore(as_writer))
    for i in range(3):
        writer.write(turn(i))
    assert await writer.aclose(timeout_s=30) == 0
    store = AuditStore(as_writer)
    result = await store.verify()
    assert result.intact and result.records == 3 and result.guarded
    await store.close()
    for statement, refusal in (
        ("UPDATE audit_records SET answer = 'x'", "permission denied"),
        ("DELETE FROM audit_records", "permission denied"),
        ("ALTER TABLE audit_records DISABLE TRIGGER USER", "must be owner"),
        ("DROP TABLE audit_records", "must be owner"),
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refusal):
            await execute(as_writer, statement)
    # control: the owner may disable the triggers — the refusal above is the role's, not the statement's
    await execute(audit_postgres_url, "ALTER TABLE audit_records DISABLE TRIGGER USER")


@pytest.mark.quiet  # a time bound (tests/quiet.py)
def test_close_keeps_to_its_timeout_when_the_server_dies(caplog: pytest.LogCaptureFixture) -> None:
    problem = why_not_startable()
    if problem:
        pytest.skip(f"cannot start a PostgreSQL of this test's own: {problem}")
    with PostgresServer() as server:
        writer = AuditWriter(AuditStore(server.url, timeout_s=2))
        for i in range(5):
            writer.write(turn(i))
        give_up = time.monotonic() + 30
        while writer.written < 5 and time.monotonic() < give_up:
            time.sleep(0.05)
        assert writer.written == 5
        server.stop()
        for i in range(5, 8):
            writer.write(turn(i))
        with caplog.at_level(logging.WARNING, logger="voicerag.audit"):
            started = time.monotonic()
            lost = writer.close(timeout_s=2)
            took = time.monotonic() - started
    assert lost == 3 and took < 2 + CLOSE_SLACK_S
    said = [m for m in caplog.messages if "not written" in m]
    assert len(said) == 1 and said[0].startswith("audit log: 3 record(s) not written to postgresql"), said


@pytest.mark.quiet  # a time bound (tests/quiet.py)
def test_close_keeps_to_its_timeout_when_the_server_hangs(silent_server: str) -> None:
    """A server that accepts connections and never says a word: hung mid-way."""
    port = silent_server.rsplit(":", 1)[1]
    writer = AuditWriter(AuditStore(f"postgresql://postgres@127.0.0.1:{port}/audit", timeout_s=30))
    writer.write(turn(0))
    writer.write(turn(1))
    started = time.monotonic()
    lost = writer.close(timeout_s=1)
    assert lost == 2 and time.monotonic() - started < 1 + CLOSE_SLACK_S
