"""Whether a turn may spend anything: its question is short enough, and neither the caller nor the
caller's tenant is over their rate limit. A refused turn does no lookup and calls no model.

Rate limits (`limits` notation, e.g. "20/minute") are kept with the moving-window strategy: it is
exact (a caller never gets more than N turns in any window, not even across a window boundary, where
a fixed window lets 2N through) and its memory, one timestamp per admitted turn and key, is small for
per-minute conversation limits. Without Redis each process keeps them in memory; with Redis every
worker shares them (one atomic Lua script per check).

Every wait is bounded: a Redis check that has not answered within `timeout_s` (connect or reply) is
abandoned and the turn is admitted against this process's own in-memory limits instead (fail open,
warned once per outage); Redis is then left alone for `pause_s`. A rate limit protects cost, not
confidentiality: refusing every caller because the limit store is down would turn its outage into
the whole service's, while per-process limits still bound what one caller can spend meanwhile.

Keys: the caller is counted by tenant and user id; an anonymous caller by their session (a LiveKit
room, a chat session) when there is one, so anonymous callers do not share one bucket. Keys are
hashed: a user id may be a phone number, and Redis is no place to keep it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Literal

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

Refusal = Literal["rate_limited", "question_too_long"]
ANONYMOUS = "anonymous"  # graph.context.Context's default user id
KEY_PREFIX = "voicerag:limits"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def caller_key(user_id: str, session_id: str = "", tenant: str | None = None) -> str:
    """Who a per-caller limit counts: the user within their tenant; an anonymous caller by session."""
    if user_id == ANONYMOUS and session_id:
        return "session:" + _digest(session_id)
    return "user:" + _digest(tenant or "", user_id)


def tenant_key(tenant: str) -> str:
    return "tenant:" + _digest(tenant)


class TurnAdmission:
    """Admits or refuses turns. Create it anywhere; its storage is made on first use (in the loop)."""

    def __init__(
        self,
        *,
        max_question_chars: int,
        per_user: str | None = None,
        per_tenant: str | None = None,
        redis_url: str | None = None,
        timeout_s: float = 0.2,  # a Redis check's bound (connect and reply)
        pause_s: float = 5.0,  # after a Redis failure, how long to count in memory only
    ) -> None:
        self.max_question_chars = max_question_chars
        self.per_user: RateLimitItem | None = parse(per_user) if per_user else None
        self.per_tenant: RateLimitItem | None = parse(per_tenant) if per_tenant else None
        self.redis_url = redis_url
        self.timeout_s = timeout_s
        self.pause_s = pause_s
        self._local: MovingWindowRateLimiter | None = None
        self._local_storage: MemoryStorage | None = None
        self._shared: MovingWindowRateLimiter | None = None
        self._pool: ConnectionPool | None = None
        self._paused_until = 0.0
        self._down = False
        self.redis_errors = 0  # Redis checks that failed or timed out (each admitted in memory)

    @property
    def limited(self) -> bool:
        return self.per_user is not None or self.per_tenant is not None

    async def refusal(
        self, question: str, *, user_id: str = ANONYMOUS, session_id: str = "", tenant: str | None = None
    ) -> Refusal | None:
        """Why this turn is refused, or None to admit it (and count it)."""
        if len(question) > self.max_question_chars:
            return "question_too_long"  # checked first: it costs nothing and takes no slot
        # The caller's own limit first: one busy caller refused alone does not use the tenant's turns.
        # A turn refused by the tenant limit has used the caller's slot (two keys, two checks).
        if self.per_user is not None and not await self._hit(self.per_user, caller_key(user_id, session_id, tenant)):
            return "rate_limited"
        if self.per_tenant is not None and tenant and not await self._hit(self.per_tenant, tenant_key(tenant)):
            return "rate_limited"
        return None

    async def _hit(self, item: RateLimitItem, key: str) -> bool:
        shared = self._shared_limiter()
        if shared is not None:
            try:
                async with asyncio.timeout(self.timeout_s):
                    admitted = await shared.hit(item, key)
            except Exception as exc:  # down, hanging, refusing: counted here instead, never refused for it
                self._failed(exc)
            else:
                self._succeeded()
                return admitted
        return await self._local_limiter().hit(item, key)

    def _shared_limiter(self) -> MovingWindowRateLimiter | None:
        if self.redis_url is None or time.monotonic() < self._paused_until:
            return None
        if self._shared is None:
            self._pool = ConnectionPool.from_url(
                self.redis_url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0),  # a retry would double the bound
                health_check_interval=0,
            )
            storage = RedisStorage(
                "async+" + self.redis_url,
                implementation="redispy",
                key_prefix=KEY_PREFIX,
                connection_pool=self._pool,  # type: ignore[arg-type]  # passed on to redis.asyncio.Redis
            )
            self._shared = MovingWindowRateLimiter(storage)
        return self._shared

    def _local_limiter(self) -> MovingWindowRateLimiter:
        if self._local is None:
            self._local_storage = MemoryStorage()
            self._local = MovingWindowRateLimiter(self._local_storage)
        return self._local

    def _failed(self, exc: BaseException) -> None:
        self.redis_errors += 1
        self._paused_until = time.monotonic() + self.pause_s
        if not self._down:
            self._down = True
            log.warning(
                "rate limits: Redis unavailable (%s); counting in this process only, next try in %.0f s",
                type(exc).__name__,
                self.pause_s,
            )

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.warning("rate limits: Redis is back; limits are shared again")

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._local_storage is not None and self._local_storage.timer is not None:
            self._local_storage.timer.cancel()
