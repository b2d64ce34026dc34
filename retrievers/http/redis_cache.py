"""The shared response cache in Redis (`REDIS_URL`): JSON values under "voicerag:http:{namespace}:{hash}".

A dead or slow Redis never fails or slows a turn: short socket timeouts, no client-side retries,
every error is a miss (or a no-op), logged once per outage, and Redis is then left alone for
`pause_s` seconds before it is tried again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from retrievers.errors import ServiceError
from retrievers.http.keys import check_namespace

log = logging.getLogger(__name__)

PREFIX = "voicerag:http:"


class RedisResponseCache:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.1,  # connect and each command
        pause_s: float = 5.0,  # after an error, how long to serve without Redis
    ) -> None:
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._timeout_s = timeout_s
        self._pause_s = pause_s
        self._paused_until = 0.0
        self._down = False
        self.errors = 0  # Redis errors seen (each one served as a miss or skipped)

    @property
    def available(self) -> bool:
        """False while paused after an error."""
        return time.monotonic() >= self._paused_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors += 1
        self._paused_until = time.monotonic() + self._pause_s
        if not self._down:
            self._down = True
            log.warning(
                "Redis cache unavailable (%s on %s: %s); serving without it, next try in %.0f s",
                type(exc).__name__,
                operation,
                exc,
                self._pause_s,
            )

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.warning("Redis cache is back")

    async def get(self, key: str) -> Any | None:
        if not self.available:
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._redis.get(PREFIX + key)
        except Exception as exc:
            self._failed("GET", exc)
            return None
        self._succeeded()
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    async def set(self, key: str, value: Any, ttl_s: float) -> None:
        if ttl_s <= 0 or not self.available:
            return
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(PREFIX + key, text, px=max(1, round(ttl_s * 1000)))
        except Exception as exc:
            self._failed("SET", exc)
            return
        self._succeeded()

    async def clear(self, namespace: str | None = None) -> int:
        """Delete the namespace's entries (all of ours when None) with SCAN + UNLINK; the count deleted.
        Unlike a turn's reads and writes, an operator's clear must not pass silently: an unreachable
        Redis raises `ServiceError` (naming REDIS_URL) with nothing, or only part, cleared."""
        pattern = PREFIX + (check_namespace(namespace) + ":*" if namespace is not None else "*")
        deleted = 0
        try:
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self._redis.unlink(*batch)
        except Exception as exc:  # said once, by the command: no warning line besides it
            raise ServiceError(
                f"REDIS_URL: Redis is unreachable ({type(exc).__name__}); {deleted} cached response(s) cleared"
            ) from None
        self._succeeded()
        return deleted

    async def aclose(self) -> None:
        await self._redis.aclose()
