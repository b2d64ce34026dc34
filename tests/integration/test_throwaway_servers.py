"""The servers the fixtures start when the machine has none (tests/fakes): they start on a free
loopback port, answer, and leave nothing behind. Proves the fallback on machines that do run their
own Redis and PostgreSQL (where the fixtures would otherwise never start one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.postgres_server import PostgresServer, postgres_answers, why_not_startable
from fakes.redis_server import REDIS_SERVER, RedisServer, redis_answers

pytestmark = pytest.mark.integration


def test_a_postgres_server_is_started_answers_and_is_gone_after() -> None:
    if problem := why_not_startable():
        pytest.skip(problem)
    with PostgresServer() as server:
        url, folder = server.url, server.directory
        assert postgres_answers(url)  # trust authentication, database `test`
        assert url.startswith("postgresql://postgres@127.0.0.1:") and not url.endswith(":5432/test")
    assert not postgres_answers(url) and folder is not None and not folder.exists()


def test_a_redis_server_is_started_answers_and_is_gone_after(tmp_path: Path) -> None:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    with RedisServer(tmp_path) as server:
        url = server.url
        assert redis_answers(url) and not url.endswith(":6379/0")
    assert not redis_answers(url)
