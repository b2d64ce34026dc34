"""The turn's tracers, from settings: what watches every turn besides the log, the audit log and the
metrics. Each tracer is a `graph.tracing.Tracer` (LangChain callback handlers for one turn); a
process opens its tracing once (`open_tracing`), hands `tracing.tracers` to its front door, and
closes it when it ends (`close`, bounded: a hanging backend never holds the process's exit).

- LangSmith: `voicerag/tracing/langsmith.py`, when `LANGSMITH_TRACING=true`.
- OpenTelemetry: `voicerag/tracing/otel.py`, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graph.tracing import Tracer
    from voicerag.settings import Settings
    from voicerag.tracing.otel import OtelTracing

CLOSE_TIMEOUT_S = 2.0  # what closing may take, in all: a process exits within this of its last turn


@dataclass
class Tracing:
    """The tracers of one process, and how to flush and stop them."""

    tracers: list[Tracer] = field(default_factory=list)
    closers: list[Callable[[float], None]] = field(default_factory=list)  # each: flush within a timeout
    otel: OtelTracing | None = None  # its provider: the voice worker gives it to LiveKit

    def add(self, tracer: Tracer, close: Callable[[float], None]) -> None:
        self.tracers.append(tracer)
        self.closers.append(close)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Flush and stop every tracer, each within its share of `timeout_s` (what is not sent by
        then is dropped, and said in the log by the tracer)."""
        for close in self.closers:
            close(timeout_s / len(self.closers))
        self.closers.clear()


def open_tracing(settings: Settings) -> Tracing:
    """The tracers the settings ask for (none by default)."""
    tracing = Tracing()
    if settings.langsmith_tracing:
        from voicerag.tracing.langsmith import open_langsmith  # langsmith's client: only when asked for

        langsmith_tracer = open_langsmith(settings)
        tracing.add(langsmith_tracer, langsmith_tracer.close)
    if settings.otel_exporter_otlp_endpoint is not None:
        from voicerag.tracing.otel import open_otel  # the OpenTelemetry SDK: only when asked for

        otel = open_otel(settings)
        tracing.add(otel.tracer(), otel.close)
        tracing.otel = otel
    return tracing
