"""SQLite, read-only three ways: the file is opened with `mode=ro`, `PRAGMA query_only` is on for
every connection, and a progress handler interrupts a statement that runs past its budget."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from retrievers.sources.database.read_only import ReadOnlyExecutor
from retrievers.sources.database.runner import CachePolicy, QueryResult, Row
from retrievers.turn.failures import FetchError

_PROGRESS_EVERY = 1000  # SQLite VM instructions between deadline checks


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file, for the default `DATABASE_URL`."""
    return URL.create("sqlite+aiosqlite", database=str(Path(path).absolute())).render_as_string()


def read_only_url(path: Path, query: Mapping[str, Any]) -> URL:
    """The URL that opens `path` read-only (a URI filename with mode=ro), keeping other options."""
    options = {key: value for key, value in query.items() if key not in ("mode", "uri")}
    return URL.create("sqlite+aiosqlite", database=path.as_uri(), query={**options, "mode": "ro", "uri": "true"})


class SqliteExecutor(ReadOnlyExecutor):
    def __init__(self, path: Path, url: URL, *, statement_timeout_s: float, timeout_s: float, pool_size: int) -> None:
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=timeout_s)

        @event.listens_for(engine.sync_engine, "connect")
        def _query_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only = ON")
            cursor.close()

        super().__init__(engine, statement_timeout_s)
        self.path = path

    async def run(self, sql: str, arguments: Mapping[str, Any], *, caching: CachePolicy | None = None) -> QueryResult:
        if not self.path.is_file():
            # read-only: never created here; checked first, as a failed aiosqlite connect leaks a thread
            raise FetchError("unreachable", f"the SQLite database {self.path} does not exist")
        return await super().run(sql, arguments, caching=caching)

    async def _read(
        self, connection: AsyncConnection, sql: str, arguments: Mapping[str, Any], budget_s: float
    ) -> list[Row]:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection  # aiosqlite.Connection
        assert driver is not None
        deadline = time.monotonic() + budget_s
        await driver.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_EVERY)
        try:
            result = await connection.execute(text(sql), dict(arguments))
            return [dict(row) for row in result.mappings()]
        finally:
            await driver.set_progress_handler(None, 0)
