"""When to try again, and how long to wait (tenacity), always within the turn's deadline.

Retried: connection errors, timeouts, 5xx and 429. A request that may have reached the server
(a timeout, a dropped connection, a 5xx) is retried only when it is idempotent (GET, HEAD, PUT,
DELETE, OPTIONS, or a POST the caller declared `cacheable=True`); one that surely did not (refused
connection, connect or pool timeout, 429) always is. Waits are exponential with full jitter; a
`Retry-After` (seconds or an HTTP date) is honoured as the minimum wait. Our own back-off is
shortened to fit the deadline; a `Retry-After` never is: when it does not fit (or exceeds
`max_wait_s`), or no attempt fits in what is left, there is no retry and the last failure stands.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from retrievers.turn.deadline import remaining
from retrievers.turn.failures import FailureKind, FetchError

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
DEADLINE_MARGIN_S = 0.01  # attempts end this long before the deadline, so our own timeout fires first


class AttemptFailed(FetchError):
    """A failure another attempt might fix. `unsent`: the server surely did not act on the request."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        unsent: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(kind, message, status=status)
        self.unsent = unsent
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds from now (never negative); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def time_left() -> float:
    """What an attempt (or a wait) may use of the deadline."""
    return remaining() - DEADLINE_MARGIN_S


@dataclass
class RetryPolicy:
    max_retries: int = 2
    backoff_s: float = 0.1  # the first wait is drawn from [backoff_s / 4, backoff_s], then doubles
    backoff_max_s: float = 2.0
    max_wait_s: float = 10.0  # longest wait between attempts, Retry-After included
    min_attempt_s: float = 0.05  # no attempt is started with less time than this

    def retrying(self, *, idempotent: bool, what: str, give_up: Callable[[], bool] = lambda: False) -> AsyncRetrying:
        """A tenacity controller for one call. `what` names it in logs; `give_up()` stops retries
        (e.g. the host's breaker opened meanwhile)."""
        backoff = wait_random_exponential(multiplier=self.backoff_s, max=self.backoff_max_s, min=self.backoff_s / 4)

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, AttemptFailed) and (exc.unsent or idempotent)

        def wait(state: RetryCallState) -> float:
            room = time_left() - self.min_attempt_s - 0.005  # what `stop` will see a moment later
            ours = max(0.0, min(backoff(state), room))
            exc = state.outcome.exception() if state.outcome is not None else None
            retry_after = exc.retry_after_s if isinstance(exc, AttemptFailed) else None
            return ours if retry_after is None else max(ours, retry_after)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number > self.max_retries or give_up():
                return True
            sleep, left = state.upcoming_sleep, time_left()
            if sleep > self.max_wait_s:
                log.info("not retrying %s: asked to wait %.1f s, over %.1f s", what, sleep, self.max_wait_s)
                return True
            if sleep + self.min_attempt_s > left:
                log.info(
                    "not retrying %s: a wait of %.0f ms and another attempt do not fit in the %.0f ms left",
                    what,
                    sleep * 1000,
                    max(left, 0.0) * 1000,
                )
                return True
            return False

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.info(
                "retrying %s in %.0f ms after %s (attempt %d of %d)",
                what,
                state.upcoming_sleep * 1000,
                exc,
                state.attempt_number + 1,
                self.max_retries + 1,
            )

        return AsyncRetrying(
            retry=retry_if_exception(should_retry),
            wait=wait,
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        )
