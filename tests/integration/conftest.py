"""Fixtures for integration tests: real servers on 127.0.0.1.

- `api_server`: a scriptable JSON API (`fakes.api_server.FakeApiServer`), per test.
- `redis_url`: `REDIS_URL` when it points at a running Redis, else a `redis-server` started for the
  session in a tmp dir (no persistence) and stopped after; Redis tests are skipped, saying why,
  when neither is available. Tests using it must keep to their own cache namespaces.
- `redis_server`: a dedicated `redis-server` a test may stop (e.g. to kill Redis mid-run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.api_server import api_server
from fakes.redis_server import REDIS_SERVER, RedisServer, redis_answers

__all__ = ["api_server", "redis_server", "redis_url"]

NO_REDIS = "redis-server is not installed and REDIS_URL does not point at a running Redis"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured and redis_answers(configured):
        yield configured
        return
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS)
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    with RedisServer(tmp_path / "redis") as server:
        yield server
