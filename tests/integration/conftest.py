"""Fixtures for integration tests: real servers on 127.0.0.1.

- `api_server`: a scriptable JSON API (`fakes.api_server.FakeApiServer`), per test.
- `redis_url`: `VOICERAG_TEST_REDIS_URL` when it points at a running Redis, else a `redis-server`
  started for the session in a tmp dir (no persistence) and stopped after. Tests using it must keep
  to their own cache namespaces. (`REDIS_URL` is the product's and is cleared for the session.)
- `redis_server`: a dedicated `redis-server` a test may stop (e.g. to kill Redis mid-run).
- `postgres_admin_url`: a PostgreSQL server with trust authentication and a database `test`:
  `VOICERAG_TEST_POSTGRES_URL` (default: the machine's, postgresql://postgres@127.0.0.1:5432/test)
  when it answers, else one started for the session (`fakes.postgres_server`); an empty value always
  starts one. `postgresql_url`: a fresh database on it seeded from data/seed.sql, per module.
A server that can be neither found nor started skips its tests, saying why in the summary.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from fakes.api_server import api_server
from fakes.postgres_server import PostgresServer, postgres_answers, why_not_startable
from fakes.redis_server import REDIS_SERVER, RedisServer, redis_answers

__all__ = ["api_server", "postgres_admin_url", "postgresql_url", "redis_server", "redis_url"]

SEED = Path(__file__).resolve().parents[2] / "data" / "seed.sql"
MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("VOICERAG_TEST_REDIS_URL")
    if configured and redis_answers(configured):
        yield configured
        return
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (`make test` installs it as root) and no Redis answers")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (`make test` installs it as root)")
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    configured = os.environ.get("VOICERAG_TEST_POSTGRES_URL", MACHINE_POSTGRES)
    if configured and postgres_answers(configured):
        yield configured
        return
    problem = why_not_startable()
    if problem:
        pytest.skip(f"no PostgreSQL answers at {configured or '(none asked)'} and none can be started: {problem}")
    with PostgresServer() as server:
        yield server.url


async def _execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(sql)  # simple protocol: a whole script at once
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def postgresql_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of the module's own, seeded, as a SQLAlchemy URL (asyncpg driver)."""
    database = f"voicerag_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(postgres_admin_url, f'CREATE DATABASE "{database}"'))
    seeded = postgres_admin_url.rsplit("/", 1)[0] + f"/{database}"
    try:
        asyncio.run(_execute(seeded, SEED.read_text(encoding="utf-8")))
        yield seeded.replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        asyncio.run(_execute(postgres_admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
