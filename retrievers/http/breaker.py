"""A circuit breaker per host, on purgatory's state machine (in memory, one per process).

closed → open after `threshold` consecutive failed calls → after `cooldown_s`, one probe call is let
through (half-open; others still fail fast) → closed if it succeeds, open again if it fails.

Only the host's own trouble counts as a failure: timeouts, refused or broken connections, 5xx. An
answer that proves the host is up (4xx, bad JSON, too large, 429) counts as a success. What says
nothing about the host is neutral: refused before sending (allow-list, our own rate limit) or
cancelled by the caller while the turn still had time. A call cancelled because the turn's deadline
ran out counts as a timeout: a hanging host must open its breaker even when `call_apis` cancels it.

State changes are logged (logger `retrievers.http.breaker`) and counted in `transitions`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.messages.events import ContextChanged
from purgatory.domain.model import HALF_OPENED, OPENED, OpenedState
from purgatory.service._async.circuitbreaker import AsyncCircuitBreaker

from retrievers.http import observers
from retrievers.turn.deadline import remaining
from retrievers.turn.failures import FetchError

log = logging.getLogger(__name__)

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half-open"]

COUNTED = frozenset({"timeout", "unreachable", "server_error"})  # the host's own trouble
NEUTRAL = frozenset({"forbidden_host", "breaker_open"})  # never reached the host
DEADLINE_SLACK_S = 0.02  # cancelled with less than this left: the deadline ran out

_NAMES: dict[str, BreakerState] = {"closed": "closed", "opened": "open", "half-opened": "half-open"}


class HostBreakers:
    """One breaker per host key, created on first use."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._factory = AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=cooldown_s)
        self._factory.add_listener(self._on_event)
        self._breakers: dict[str, AsyncCircuitBreaker] = {}
        self._probing: set[str] = set()
        self.transitions: Counter[str] = Counter()  # "host → state": how often

    def _on_event(self, name: str, event_type: str, event: Any) -> None:
        if event_type == "state_changed" and isinstance(event, ContextChanged):
            state = _NAMES.get(event.state, event.state)
            self.transitions[f"{name} → {state}"] += 1
            observers.breaker_changed(name, state)
            if state == "open":
                log.warning("circuit breaker for %s: open (cool-down %.1f s)", name, self.cooldown_s)
            else:
                log.warning("circuit breaker for %s: %s", name, state)
        elif event_type == "failed":
            log.debug(
                "circuit breaker for %s: failure %s/%d", name, getattr(event, "failure_count", "?"), self.threshold
            )

    def state(self, host: str) -> BreakerState:
        """As callers see it: an open breaker whose cool-down has passed is half-open (it will probe)."""
        breaker = self._breakers.get(host)
        if breaker is None:
            return "closed"
        context = breaker.context
        if context.state == OPENED and time.time() > (context.opened_at or 0.0) + context.ttl:
            return "half-open"
        return _NAMES.get(context.state, "closed")

    def states(self) -> dict[str, BreakerState]:
        return {host: self.state(host) for host in self._breakers}

    def is_open(self, host: str) -> bool:
        return self.state(host) == "open"

    async def _breaker(self, host: str) -> AsyncCircuitBreaker:
        breaker = self._breakers.get(host)
        if breaker is None:
            breaker = await self._factory.get_breaker(host)
            self._breakers[host] = breaker
        return breaker

    @staticmethod
    async def _publish(breaker: AsyncCircuitBreaker) -> None:
        while breaker.context.messages:  # what purgatory's own `__aexit__` does
            await breaker.messagebus.handle(breaker.context.messages.pop(0), breaker.uow)

    async def call(self, host: str, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` unless the host's breaker is open (`FetchError("breaker_open")` at once)."""
        breaker = await self._breaker(host)
        context = breaker.context
        if context.state == HALF_OPENED and host in self._probing:
            raise FetchError("breaker_open", f"{host} is being probed after repeated failures")
        try:
            context.handle_new_request()  # open → half-open once the cool-down has passed
        except OpenedState as exc:
            exc.with_traceback(None)  # purgatory raises the same instance every time: don't grow it
            left = (context.opened_at or 0.0) + context.ttl - time.time()
            raise FetchError("breaker_open", f"{host} failed repeatedly; next try in {max(left, 0):.1f} s") from None
        probe = context.state == HALF_OPENED
        if probe:
            self._probing.add(host)
        await self._publish(breaker)
        try:
            result = await fn()
        except FetchError as exc:
            if exc.kind in COUNTED:
                context.handle_exception(exc)
            elif exc.kind not in NEUTRAL and not (exc.kind == "rate_limited" and exc.status is None):
                context.handle_end_request()  # the host answered
            raise
        except asyncio.CancelledError as exc:
            if remaining() <= DEADLINE_SLACK_S:
                context.handle_exception(exc)
            raise
        else:
            context.handle_end_request()
            return result
        finally:
            if probe:
                self._probing.discard(host)
            await self._publish(breaker)
