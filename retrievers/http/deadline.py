"""The turn's deadline, visible to every layer below the graph without passing it around.

`call_apis` sets it for the turn (`with turn_deadline(1.5): ...`); every wait below — timeouts,
retry back-off, rate-limit waits, Retry-After — is capped by `remaining()`. A context variable
follows asyncio tasks, so concurrent sources of one turn share it and other turns are unaffected.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("voicerag_turn_deadline", default=None)


@contextmanager
def turn_deadline(seconds: float) -> Iterator[float]:
    """Set the deadline `seconds` from now (or keep an earlier one already set)."""
    at = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(at if current is None else min(current, at))
    try:
        yield at
    finally:
        _deadline.reset(token)


def remaining(default: float = float("inf")) -> float:
    """Seconds left before the deadline (never negative); `default` when no deadline is set."""
    at = _deadline.get()
    return default if at is None else max(0.0, at - time.monotonic())


def capped(seconds: float) -> float:
    """`seconds`, or less if the deadline comes first."""
    return min(seconds, remaining())
