"""When the agent says "one moment" before an answer: the filler policy of a voice session.

The threshold is one setting, in milliseconds (`FILLER_THRESHOLD_MS`); the sentence itself is the
persona's `filler` phrase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graph.services import Services
from graph.state import Route


@dataclass(frozen=True)
class FillerPolicy:
    """Say the filler after `threshold_ms` without an answer, or at once when the route calls a
    source that `expected_slow` says is usually slower than that."""

    threshold_ms: int
    expected_slow: Callable[[Route], bool] = lambda route: False


def filler_policy(services: Services, threshold_ms: int) -> FillerPolicy:
    """The policy for a session over `services`: a source is expected to be slow when its recent
    latency (`SourceRegistry.expected_ms`) is above the threshold."""

    def expected_slow(route: Route) -> bool:
        calls = route.get("calls", [])
        return any((services.sources.expected_ms(call["source"]) or 0) > threshold_ms for call in calls)

    return FillerPolicy(threshold_ms=threshold_ms, expected_slow=expected_slow)
