"""PostgreSQL, read-only twice: sessions default to read-only, and each statement runs after
`SET TRANSACTION READ ONLY` and `SET LOCAL statement_timeout` (the server cancels it in time)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from retrievers.sources.database.read_only import ReadOnlyExecutor
from retrievers.sources.database.runner import Row

APPLICATION_NAME = "voicerag-database-query"  # how our connections show in pg_stat_activity


class PostgresExecutor(ReadOnlyExecutor):
    def __init__(self, url: URL, *, statement_timeout_s: float, timeout_s: float, pool_size: int) -> None:
        connect_args = {
            "timeout": timeout_s,  # asyncpg's connect timeout
            "server_settings": {"application_name": APPLICATION_NAME, "default_transaction_read_only": "on"},
        }
        engine = create_async_engine(
            url.set(drivername="postgresql+asyncpg"),
            connect_args=connect_args,
            pool_recycle=1800,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=timeout_s,
        )
        super().__init__(engine, statement_timeout_s)

    async def _read(
        self, connection: AsyncConnection, sql: str, arguments: Mapping[str, Any], budget_s: float
    ) -> list[Row]:
        await connection.execute(text("SET TRANSACTION READ ONLY"))
        await connection.execute(text(f"SET LOCAL statement_timeout = {max(1, round(budget_s * 1000))}"))
        result = await connection.execute(text(sql), dict(arguments))
        return [dict(row) for row in result.mappings()]
