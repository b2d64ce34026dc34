"""A runner layer that creates the SQLite file from a seed script before its first query.

The demo database (`data/seed.sql`) appears on first use, so nothing is written when the source
is merely built (e.g. by `voicerag cache clear`). An existing file is used as it is, never re-seeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retrievers.errors import UserInputError
from retrievers.sources.database.runner import CachePolicy, QueryResult, QueryRunner

log = logging.getLogger(__name__)


def seed_sqlite(path: Path, seed_file: Path) -> None:
    """Create the SQLite file from the seed script, atomically (a failed seed leaves no file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    script = seed_file.read_text(encoding="utf-8")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.seeding")
    temporary.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(temporary)) as connection:
            connection.executescript(script)
            connection.commit()
        os.replace(temporary, path)
    except sqlite3.Error as exc:
        temporary.unlink(missing_ok=True)
        raise UserInputError(f"{seed_file}: cannot seed {path}: {exc}") from None
    log.info("seeded %s from %s", path, seed_file)


class SeedOnFirstUse:
    def __init__(self, inner: QueryRunner, path: Path, seed_file: Path) -> None:
        self.inner, self.path, self.seed_file = inner, path, seed_file
        self._seeded = False
        self._lock = asyncio.Lock()  # concurrent first queries seed once

    async def _ensure_seeded(self) -> None:
        if self._seeded:
            return
        async with self._lock:
            if not self._seeded and not self.path.exists():
                await asyncio.to_thread(seed_sqlite, self.path, self.seed_file)
            self._seeded = True

    async def run(self, sql: str, arguments: Mapping[str, Any], *, caching: CachePolicy | None = None) -> QueryResult:
        await self._ensure_seeded()
        return await self.inner.run(sql, arguments, caching=caching)

    async def aclose(self) -> None:
        await self.inner.aclose()
