"""How SQL runs: a `QueryRunner` is two methods, and runners wrap one another like httpx transports.

    CachingRunner → SeedOnFirstUse → SqliteExecutor        (sqlite+aiosqlite:///…)
    CachingRunner → PostgresExecutor                       (postgresql+asyncpg://…)

Each layer does one job (`connect.py` stacks them): the executors run one read-only statement
under a timeout and classify failures; seeding creates the SQLite file on first use; caching
answers from the response cache. The source above only picks the SQL and the arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Row = dict[str, Any]  # column -> JSON-friendly value


@dataclass(frozen=True)
class CachePolicy:
    """That a run may be answered from, and stored in, the response cache: under `key`, for `ttl_s`."""

    key: str  # "{namespace}:{hash}", from `query_cache_key`
    ttl_s: float  # 0: never cached


@dataclass(frozen=True)
class QueryResult:
    rows: list[Row]
    cached: bool = False  # served from the cache, without touching the database


class QueryRunner(Protocol):
    async def run(self, sql: str, arguments: Mapping[str, Any], *, caching: CachePolicy | None = None) -> QueryResult:
        """Run one statement with bound `arguments`; raise `FetchError` on failure. Layers that do
        not cache pass `caching` on unchanged."""
        ...

    async def aclose(self) -> None:
        """Release what the runner holds (connections), then what it wraps."""
        ...
