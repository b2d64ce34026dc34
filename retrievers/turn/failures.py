"""Why a fetch failed, in words a source can turn into a truthful spoken sentence."""

from __future__ import annotations

from typing import Literal

FailureKind = Literal[
    "timeout",  # the source or the turn's deadline ran out
    "unreachable",  # connection refused, DNS, TLS...
    "server_error",  # 5xx after retries
    "rate_limited",  # 429 after retries, or our own outbound limit
    "breaker_open",  # the host failed repeatedly; not called until the cool-down passes
    "forbidden_host",  # the URL's host is not allow-listed (SSRF guard)
    "bad_response",  # not JSON, wrong shape, GraphQL errors, 4xx
    "too_large",  # the body exceeded the size limit
    "auth",  # credentials refused, token endpoint failed
]


class FetchError(Exception):
    """A fetch that failed for a known reason. `kind` drives the result status and the log."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status

    @property
    def is_timeout(self) -> bool:
        return self.kind == "timeout"
