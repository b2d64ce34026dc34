"""audit: what the audit log costs a turn, and how fast it can write (issue 9, item 6).

- On the turn's path: `AuditWriter.write(record)` (the queue; the database is reached from the
  writer's thread), back to back (the thread busy inserting the whole time: GIL contention at its
  worst) and paced at one record per millisecond (a commit per record or two); building the
  `AuditRecord` is the caller's and measured apart. Target: write ≤ 1 ms p95 (it is microseconds).
- Sustained insert rate: records written through the writer until `close()` returns (batched
  commits), and one record per commit (`AuditStore.append`, the rate when turns are sparse).
- Both on a SQLite file (WAL, synchronous=FULL) and on PostgreSQL: `VOICERAG_BENCH_POSTGRES_URL`
  (default the machine's postgresql://postgres@127.0.0.1:5432/test; an empty value skips it), in a
  database created for the run and dropped after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from benchmarks.common import DATA_DIR, Result, log, print_table, stats
from voicerag.audit import AuditRecord, AuditStore, AuditWriter
from voicerag.audit.database import sqlite_url

NAME = "audit"
POSTGRES = os.environ.get("VOICERAG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def record(i: int) -> AuditRecord:
    """A turn's record of a realistic size: a question, a two-sentence answer, two sources."""
    return AuditRecord(
        turn_id=f"turn-{i}",
        session_id="session-1",
        user_id=f"user-{i % 50}",
        tenant="acme",
        roles=["member"],
        front_door="voice",
        route="lookup",
        sources=[{"name": "weather", "status": "ok"}, {"name": "product_stock", "status": "timeout"}],
        documents=["warranty-kh300", "returns-policy"],
        latency_ms=412.5,
        question="KH-300の保証期間は何年ですか？ and can I return it if [EMAIL] never got the invoice?",
        answer="KH-300の保証期間は2年です。 Returns are accepted within 30 days with the receipt.",
    )


def _us(started_ns: int, ended_ns: int) -> float:
    return (ended_ns - started_ns) / 1000


async def caller_cost(url: str, writes: int, paced: bool) -> dict[str, Any]:
    """µs per `write()` on the caller's thread (and per `AuditRecord(...)`, built here too)."""
    built, costs = [], []
    writer = AuditWriter(AuditStore(url), queue_size=writes + 1)
    try:
        for i in range(writes):
            started = time.perf_counter_ns()
            item = record(i)
            between = time.perf_counter_ns()
            accepted = writer.write(item)
            ended = time.perf_counter_ns()
            assert accepted
            built.append(_us(started, between))
            costs.append(_us(between, ended))
            if paced:
                await asyncio.sleep(0.001)  # the caller's event loop goes on between turns
    finally:
        lost = await writer.aclose(timeout_s=60)
    assert lost == 0, f"{lost} records lost"
    return {"write_us": stats(costs), "build_record_us": stats(built)}


async def insert_rate(url: str, records: int, one_by_one: int) -> dict[str, Any]:
    """Records per second through the writer (batched), and with one record per commit."""
    items = [record(i) for i in range(records)]
    store = AuditStore(url)
    try:
        before = (await store.verify()).records  # what the caller-cost runs wrote
    finally:
        await store.close()
    writer = AuditWriter(AuditStore(url), queue_size=records + 1)
    started = time.perf_counter()
    for item in items:
        writer.write(item)
    lost = await writer.aclose(timeout_s=300)
    batched_s = time.perf_counter() - started
    assert lost == 0, f"{lost} records lost"
    store = AuditStore(url)
    try:
        started = time.perf_counter()
        for item in items[:one_by_one]:
            await store.append([item])
        single_s = time.perf_counter() - started
        verification = await store.verify()
    finally:
        await store.close()
    assert verification.intact and verification.records == before + records + one_by_one, verification
    return {
        "batched_records_per_s": round(records / batched_s),
        "batched_records": records,
        "one_per_commit_per_s": round(one_by_one / single_s),
        "one_per_commit_records": one_by_one,
    }


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str | None]:
    """A database of the run's own on the PostgreSQL server, or None when none answers."""
    if not POSTGRES:
        yield None
        return
    name = f"voicerag_bench_audit_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(POSTGRES, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log(f"  no PostgreSQL at {POSTGRES} ({type(exc).__name__}): PostgreSQL not measured")
        yield None
        return
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def measure(url: str, quick: bool) -> dict[str, Any]:
    back_to_back = await caller_cost(url, 2_000 if quick else 20_000, paced=False)
    paced = await caller_cost(url, 300 if quick else 2_000, paced=True)
    rate = await insert_rate(url, 2_000 if quick else 20_000, 100 if quick else 500)
    return {"back_to_back": back_to_back, "paced_1ms": paced, **rate}


async def run(quick: bool) -> Result:
    figures: dict[str, Any] = {}
    folder = DATA_DIR / "audit"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        log("  SQLite")
        figures["sqlite"] = await measure(sqlite_url(folder / "audit.sqlite"), quick)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    async with postgres_database() as postgres:
        if postgres is not None:
            log("  PostgreSQL")
            figures["postgresql"] = await measure(postgres, quick)
    print_table(
        "audit: on the caller's path, µs (target: write ≤ 1000 µs p95)",
        ["database, how", "write p50", "write p95", "AuditRecord(...) p50", "p95", "n"],
        [
            [f"{db}, {label}", m[how]["write_us"]["p50"], m[how]["write_us"]["p95"],
             m[how]["build_record_us"]["p50"], m[how]["build_record_us"]["p95"], m[how]["write_us"]["n"]]
            for db, m in figures.items()
            for how, label in (("back_to_back", "back to back"), ("paced_1ms", "one per ms"))
        ],
    )  # fmt: skip
    print_table(
        "audit: sustained insert rate, records/s",
        ["database", "batched (writer)", "records", "one per commit", "records"],
        [
            [
                db,
                m["batched_records_per_s"],
                m["batched_records"],
                m["one_per_commit_per_s"],
                m["one_per_commit_records"],
            ]
            for db, m in figures.items()
        ],
    )
    return Result(NAME, quick, figures)
