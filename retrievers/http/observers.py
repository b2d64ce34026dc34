"""Optional observers of the HTTP layer: the response cache's hits and misses, breaker state changes.

Empty by default; the application adds its own (`voicerag/metrics/` exports them to Prometheus), so
nothing here depends on a metrics library. An observer must be cheap and must not raise (a raising
one is logged and skipped: it never fails a request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

log = logging.getLogger(__name__)

CacheResult = Literal["hit", "miss"]
CacheObserver = Callable[[CacheResult], None]
BreakerObserver = Callable[[str, str], None]  # (host, new state: "closed", "open" or "half-open")

cache_observers: list[CacheObserver] = []
breaker_observers: list[BreakerObserver] = []


def cache_result(result: CacheResult) -> None:
    for observer in cache_observers:
        try:
            observer(result)
        except Exception as exc:
            log.warning("a cache observer failed: %s", type(exc).__name__)


def breaker_changed(host: str, state: str) -> None:
    for observer in breaker_observers:
        try:
            observer(host, state)
        except Exception as exc:
            log.warning("a breaker observer failed: %s", type(exc).__name__)
