"""From `DATABASE_URL` to a stack of runners: the executor of that database, seeding for a SQLite
file that may not exist yet, and the cache on top when one is given."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from retrievers.errors import UserInputError
from retrievers.http.cache import ResponseCache
from retrievers.secret_url import hide_password
from retrievers.sources.database.caching import CachingRunner
from retrievers.sources.database.postgres_runner import PostgresExecutor
from retrievers.sources.database.runner import QueryRunner
from retrievers.sources.database.seeding import SeedOnFirstUse
from retrievers.sources.database.sqlite_runner import SqliteExecutor, read_only_url


def open_runner(
    database_url: str,
    *,
    statement_timeout_s: float,
    timeout_s: float,
    pool_size: int,
    seed_file: Path | None = None,
    cache: ResponseCache | None = None,
) -> QueryRunner:
    """The runner for `database_url`. Nothing connects yet: the pool opens connections on use."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise UserInputError(f"DATABASE_URL is not a valid SQLAlchemy URL: {hide_password(database_url)!r}") from None
    backend = url.get_backend_name()
    runner: QueryRunner
    if backend in ("postgresql", "postgres"):
        runner = PostgresExecutor(
            url, statement_timeout_s=statement_timeout_s, timeout_s=timeout_s, pool_size=pool_size
        )
    elif backend == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise UserInputError(
                f"DATABASE_URL must name a SQLite file (sqlite+aiosqlite:///path): {hide_password(database_url)!r}"
            )
        if seed_file is not None and not Path(seed_file).is_file():
            raise UserInputError(f"{seed_file}: the seed SQL file does not exist")
        path = Path(database).absolute()
        runner = SqliteExecutor(
            path,
            read_only_url(path, url.query),
            statement_timeout_s=statement_timeout_s,
            timeout_s=timeout_s,
            pool_size=pool_size,
        )
        if seed_file is not None:
            runner = SeedOnFirstUse(runner, path, Path(seed_file))
    else:
        raise UserInputError(f"DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)")
    return runner if cache is None else CachingRunner(runner, cache)
