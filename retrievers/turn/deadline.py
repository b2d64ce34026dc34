"""The turn's deadline: one absolute time, visible to every layer below the graph.

`route_query` fixes it when the turn starts (`deadline_at` in the graph state, a `time.monotonic()`
value); each node that waits enters it (`with deadline_at(state["deadline_at"]): ...`), and every
wait below — the knowledge-base search, source timeouts, retry back-off, rate-limit waits,
Retry-After, SQL statement timeouts — is capped by `remaining()`. A context variable follows asyncio
tasks, so concurrent lookups of one turn share it and other turns are unaffected. This is the only
deadline mechanism: nothing computes a budget of its own from the state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("voicerag_turn_deadline", default=None)


@contextmanager
def deadline_at(at: float | None) -> Iterator[float | None]:
    """Enter the deadline `at` (a `time.monotonic()` value), or keep an earlier one already set.
    `None` sets nothing (no deadline: a lookup outside a turn, e.g. `voicerag search`)."""
    current = _deadline.get()
    effective = current if at is None else at if current is None else min(current, at)
    token = _deadline.set(effective)
    try:
        yield effective
    finally:
        _deadline.reset(token)


def turn_deadline(seconds: float) -> AbstractContextManager[float | None]:
    """The deadline `seconds` from now (or an earlier one already set)."""
    return deadline_at(time.monotonic() + seconds)


def remaining(default: float = float("inf")) -> float:
    """Seconds left before the deadline (never negative); `default` when no deadline is set."""
    at = _deadline.get()
    return default if at is None else max(0.0, at - time.monotonic())


def as_timeout() -> float | None:
    """What `asyncio.timeout` should be given: the seconds left, or None when no deadline is set."""
    at = _deadline.get()
    return None if at is None else remaining()


def capped(seconds: float) -> float:
    """`seconds`, or less if the deadline comes first."""
    return min(seconds, remaining())
