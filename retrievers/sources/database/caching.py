"""A runner layer that answers from the response cache (`ResponseCache`: in-process or Redis).

Only rows are cached (JSON-friendly already); the spoken sentence is rendered per call, in the
caller's language. Keys live in the source's namespace, so `voicerag cache clear --source
database_query` drops them; per-user queries put the caller in the key, so one caller's rows are
never served to another. A cache that fails is a miss: it never fails or blocks a query.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from retrievers.http.cache import ResponseCache, cache_key
from retrievers.sources.database.runner import CachePolicy, QueryResult, QueryRunner

log = logging.getLogger(__name__)


def query_cache_key(
    namespace: str, query: str, sql: str, arguments: Mapping[str, Any], identity: str | None = None
) -> str:
    """The key of one named query's result: equal for the same SQL, arguments and caller."""
    # The SQL is part of the key, so editing a query never serves rows of its former text.
    body = {"sql": sql, "arguments": dict(arguments)}
    return cache_key(namespace, "SELECT", f"sql://{namespace}/{query}", body=body, identity=identity)


class CachingRunner:
    def __init__(self, inner: QueryRunner, cache: ResponseCache) -> None:
        self.inner, self.cache = inner, cache

    async def run(self, sql: str, arguments: Mapping[str, Any], *, caching: CachePolicy | None = None) -> QueryResult:
        if caching is None or caching.ttl_s <= 0:
            return await self.inner.run(sql, arguments, caching=caching)
        try:
            hit = await self.cache.get(caching.key)
        except Exception as exc:  # a cache must never fail a query
            log.warning("database cache get failed: %s: %s", type(exc).__name__, exc)
            hit = None
        if isinstance(hit, list):
            return QueryResult(hit, cached=True)
        result = await self.inner.run(sql, arguments, caching=caching)
        try:
            await self.cache.set(caching.key, result.rows, caching.ttl_s)
        except Exception as exc:
            log.warning("database cache set failed: %s: %s", type(exc).__name__, exc)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()  # the cache belongs to whoever made it
