"""The response cache: what a cache is (`ResponseCache`), the in-process one, and the factory.

Values are JSON-able (the parsed response); each entry has its own TTL (the source's). Keys come
from `cache_key` (`keys.py`): "{namespace}:{hash}", the namespace being the source's name, so
`clear(namespace)` drops one source. The Redis cache (shared by every worker) is `redis_cache.py`.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Protocol

from cachetools import TLRUCache

from retrievers.http.keys import cache_key, check_namespace
from retrievers.http.redis_cache import RedisResponseCache

__all__ = ["InMemoryResponseCache", "RedisResponseCache", "ResponseCache", "cache_key", "make_response_cache"]


class ResponseCache(Protocol):
    async def get(self, key: str) -> Any | None: ...

    async def set(self, key: str, value: Any, ttl_s: float) -> None: ...

    async def clear(self, namespace: str | None = None) -> int: ...


class InMemoryResponseCache:
    """In-process: a `cachetools.TLRUCache` (per-item TTL) bounded by the total size of its entries.
    Entries are stored as JSON text, so a caller that changes what it got cannot change the cache."""

    def __init__(self, max_chars: int = 50_000_000) -> None:
        self._entries: TLRUCache[str, tuple[str, float]] = TLRUCache(
            maxsize=max_chars, ttu=self._expires_at, timer=time.monotonic, getsizeof=lambda entry: len(entry[0])
        )

    @staticmethod
    def _expires_at(key: str, entry: tuple[str, float], now: float) -> float:
        return now + entry[1]

    async def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        return None if entry is None else json.loads(entry[0])

    async def set(self, key: str, value: Any, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        with contextlib.suppress(ValueError):  # larger than the whole cache: not cached
            self._entries[key] = (text, ttl_s)

    async def clear(self, namespace: str | None = None) -> int:
        self._entries.expire()
        if namespace is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        prefix = check_namespace(namespace) + ":"
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self._entries.pop(key, None)
        return len(doomed)

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)


def make_response_cache(redis_url: str | None) -> ResponseCache:
    """Redis when `REDIS_URL` is set (shared by every worker), in-process otherwise."""
    return RedisResponseCache(redis_url) if redis_url else InMemoryResponseCache()
