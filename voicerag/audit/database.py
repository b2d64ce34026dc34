"""From AUDIT_DATABASE_URL to an engine: SQLite (aiosqlite) or PostgreSQL (asyncpg), each with
bounded waits, transactions that serialise appends across processes, and the schema created once.

Appends are serialised so that concurrent writers (several workers, a CLI) never fork the chain:
SQLite takes the database's write lock at `BEGIN IMMEDIATE`; PostgreSQL a transaction-scoped
advisory lock. Reads take neither.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from retrievers.errors import UserInputError
from retrievers.secret_url import hide_password
from voicerag.audit.schema import POSTGRES_FUNCTION, POSTGRES_GUARDS, SQLITE_GUARDS, TABLE, metadata

APPLICATION_NAME = "voicerag-audit"  # how our connections show in pg_stat_activity
# The advisory lock every appender takes: a fixed 64-bit key derived from the table's name.
LOCK_KEY = int.from_bytes(hashlib.sha256(f"voicerag.{TABLE}".encode()).digest()[:8], "big", signed=True)


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite audit file (the default: audit.sqlite in the data dir)."""
    return URL.create("sqlite+aiosqlite", database=str(Path(path).absolute())).render_as_string()


def parse_url(database_url: str, variable: str) -> URL:
    """The URL with our async driver, or a UserInputError naming `variable`."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise UserInputError(f"{variable}: not a SQLAlchemy URL: {hide_password(database_url)!r}") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise UserInputError(
                f"{variable}: must name a SQLite file (sqlite:///path/audit.sqlite): {hide_password(database_url)!r}"
            )
        return url.set(drivername="sqlite+aiosqlite", database=str(Path(database).absolute()))
    raise UserInputError(f"{variable}: unsupported database {backend!r} (use sqlite or postgresql)")


class AuditDatabase:
    """The engine of one audit database. Nothing connects until first use."""

    def __init__(self, url: URL, *, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.postgres = url.get_backend_name() == "postgresql"
        self.path = None if self.postgres else Path(url.database or "")
        self.engine = self._postgres_engine() if self.postgres else self._sqlite_engine()
        self._folder_ready = False

    def ensure_folder(self) -> None:
        """Create the SQLite file's folder (blocking: call it off any event loop)."""
        if self.path is not None and not self._folder_ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._folder_ready = True

    @property
    def where(self) -> str:
        """The database, for messages (never its password)."""
        return str(self.path) if self.path is not None else self.url.render_as_string(hide_password=True)

    def _postgres_engine(self) -> AsyncEngine:
        milliseconds = str(round(self.timeout_s * 1000))
        connect_args = {
            "timeout": self.timeout_s,  # asyncpg's connect timeout
            "command_timeout": self.timeout_s,
            "server_settings": {
                "application_name": APPLICATION_NAME,
                "statement_timeout": milliseconds,
                "lock_timeout": milliseconds,  # the advisory lock included
                "idle_in_transaction_session_timeout": milliseconds,
            },
        }
        return create_async_engine(
            self.url, connect_args=connect_args, pool_size=1, max_overflow=1, pool_timeout=self.timeout_s,
            pool_pre_ping=True, pool_recycle=1800,
        )  # fmt: skip

    def _sqlite_engine(self) -> AsyncEngine:
        # timeout: how long a writer waits for another's lock (SQLite's busy timeout)
        engine = create_async_engine(self.url, connect_args={"timeout": self.timeout_s}, pool_size=1, max_overflow=1)

        @event.listens_for(engine.sync_engine, "connect")
        def _setup(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we say BEGIN ourselves (below)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous = FULL")  # a commit survives a power cut, not just a kill
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Any) -> None:
            appending = connection.get_execution_options().get("audit_append", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if appending else "BEGIN")

        return engine

    @asynccontextmanager
    async def appending(self) -> AsyncIterator[AsyncConnection]:
        """A transaction no other appender (in any process) runs at the same time."""
        async with self.engine.connect() as connection:
            connection = await connection.execution_options(audit_append=True)
            async with connection.begin():
                if self.postgres:
                    await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                yield connection

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection, connection.begin():
            yield connection

    async def exists(self) -> bool:
        """Whether the audit table is there (a SQLite file that does not exist is not created)."""
        if self.path is not None and not self.path.is_file():
            return False
        async with self.reading() as connection:
            return await connection.run_sync(lambda sync: inspect(sync).has_table(TABLE))

    async def create_schema(self) -> None:
        """The table and its triggers, once, whichever process comes first. A table that exists is
        left as it is: its owner may not be us (see `schema.postgres_setup_sql`)."""
        if self.path is not None and not self._folder_ready:
            await asyncio.to_thread(self.ensure_folder)  # off the loop: `langgraph dev` refuses blocking calls on any
        async with self.appending() as connection:
            if self.postgres:
                if await connection.run_sync(lambda sync: inspect(sync).has_table(TABLE)):
                    return
                await connection.run_sync(metadata.create_all)
                await connection.execute(text(POSTGRES_FUNCTION))
                for ddl in POSTGRES_GUARDS.values():
                    await connection.execute(text(ddl))
            else:
                await connection.run_sync(metadata.create_all)  # checks first
                for ddl in SQLITE_GUARDS.values():  # IF NOT EXISTS: one dropped by hand comes back
                    await connection.execute(text(ddl))

    async def guarded(self) -> bool:
        """Whether every append-only trigger is in place (and, on PostgreSQL, enabled)."""
        if self.postgres:
            expected, query = (
                set(POSTGRES_GUARDS),
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:table) "
                    "AND NOT tgisinternal AND tgenabled <> 'D'"
                ),
            )
        else:
            expected = set(SQLITE_GUARDS)
            query = text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table")
        async with self.reading() as connection:
            found = set((await connection.execute(query, {"table": TABLE})).scalars())
        return expected <= found

    async def close(self) -> None:
        await self.engine.dispose()
