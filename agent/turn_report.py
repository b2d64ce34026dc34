"""What one voice turn did, measured apart from the code that runs it (as pipecat keeps its
latency observers apart from its processors): the stream feeds the graph's `updates` events and
its own moments (first token, filler, failure) in; the assistant logs the record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from langgraph.types import Overwrite

from graph.builder import SPEAKING_NODE
from graph.state import Route
from retrievers.language import Language


@dataclass
class TurnReport:
    """One turn, for the per-turn log line and the metrics exporters."""

    turn_id: str
    user_id: str
    language: Language
    first_token_ms: float | None = None  # from the LLM step's start
    end_of_turn_ms: float | None = None  # LiveKit's: end of speech → transcript + end-of-turn decision
    filler: str | None = None  # "expected" or "observed" when a filler was said
    filler_ms: float | None = None
    route: str | None = None
    sources: dict[str, Any] = field(default_factory=dict)  # name -> {status, elapsed_ms, cached}
    timings_ms: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False
    failed: str | None = None  # the exception type when the graph failed
    cancelled: bool = False
    total_ms: float | None = None

    def observe(self, update: dict[str, Any]) -> Route | None:
        """Fold one graph `updates` event in; returns the route when this update decided it."""
        decided: Route | None = None
        for node, values in update.items():
            if not isinstance(values, dict):
                continue
            if node == "route_query" and "route" in values:
                decided = values["route"]
                self.route = decided["kind"]
                self.language = values.get("language", self.language)
            for result in values.get("api_results", []) or []:
                self.sources[result["source"]] = {
                    k: result[k] for k in ("status", "elapsed_ms", "cached") if k in result
                }
            timings = values.get("timings_ms") or {}
            if isinstance(timings, Overwrite):  # a new turn's first timings (route_query)
                timings = timings.value
            self.timings_ms.update(timings)
            if "degraded" in values and node == SPEAKING_NODE:
                self.degraded = bool(values["degraded"])
        return decided

    def as_record(self) -> dict[str, Any]:
        """The JSON-friendly record, with the derived figures operators look at first."""
        record = asdict(self)
        if self.end_of_turn_ms is not None and self.first_token_ms is not None:
            # End of the user's speech → first answer token: LiveKit's end-of-turn decision, then ours.
            record["end_of_speech_to_first_token_ms"] = round(self.end_of_turn_ms + self.first_token_ms, 2)
        record["cache_hits"] = sum(1 for s in self.sources.values() if s.get("cached"))
        return record
