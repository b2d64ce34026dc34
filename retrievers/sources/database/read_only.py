"""The innermost runner: one statement on a pooled connection, read-only, under a statement timeout.

What every database shares lives here: the statement timeout capped by the turn's deadline, a
last-resort asyncio timeout on top, the rollback that returns a clean connection to the pool, and
failures turned into `FetchError`s — `timeout` (statement cancelled), `unreachable` (no
connection), `auth` (credentials refused), `server_error` (the database refused the statement).
How a backend makes the transaction read-only and enforces the timeout is its subclass's job.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from retrievers.sources.database.answers import json_value
from retrievers.sources.database.runner import CachePolicy, QueryResult, Row
from retrievers.turn.deadline import capped
from retrievers.turn.failures import FetchError

TIMEOUT_GRACE_S = 1.0  # the asyncio timeout on top of the database's own, should a driver hang


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for candidate in (exc, orig, getattr(orig, "__cause__", None)):
        if state := getattr(candidate, "sqlstate", None):
            return str(state)
    return None


def classify(exc: DBAPIError, connected: bool) -> FetchError:
    """A driver error as a `FetchError` whose kind says what to tell the caller."""
    state = _sqlstate(exc)
    message = str(exc.orig if exc.orig is not None else exc).splitlines()[0]
    if state == "57014" or "interrupted" in message:  # query_canceled / SQLite's progress handler
        return FetchError("timeout", f"the database cancelled the query: {message}")
    if state is not None and state.startswith("28"):  # invalid authorization
        return FetchError("auth", f"the database refused the credentials: {message}")
    if not connected or exc.connection_invalidated:
        return FetchError("unreachable", f"cannot connect to the database: {message}")
    return FetchError("server_error", f"the database refused the query: {message}")


class ReadOnlyExecutor(ABC):
    def __init__(self, engine: AsyncEngine, statement_timeout_s: float) -> None:
        self.engine = engine
        self.statement_timeout_s = statement_timeout_s

    @abstractmethod
    async def _read(
        self, connection: AsyncConnection, sql: str, arguments: Mapping[str, Any], budget_s: float
    ) -> list[Row]:
        """Run `sql` read-only on `connection`, cancelled by the database after `budget_s`."""

    async def run(self, sql: str, arguments: Mapping[str, Any], *, caching: CachePolicy | None = None) -> QueryResult:
        budget = capped(self.statement_timeout_s)
        if budget <= 0:
            raise FetchError("timeout", "no time left in the turn for the query")
        connected = False
        try:
            async with asyncio.timeout(budget + TIMEOUT_GRACE_S), self.engine.connect() as connection:
                connected = True
                try:
                    rows = await self._read(connection, sql, arguments, budget)
                finally:
                    with contextlib.suppress(Exception):
                        await connection.rollback()
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError("timeout", f"the query did not finish within {budget:.3f} s") from None
        except DBAPIError as exc:
            raise classify(exc, connected) from None
        except (OSError, PoolTimeoutError) as exc:
            raise FetchError("unreachable", f"cannot connect to the database: {exc}") from None
        return QueryResult([{key: json_value(value) for key, value in row.items()} for row in rows])

    async def aclose(self) -> None:
        await self.engine.dispose()
