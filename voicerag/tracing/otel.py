"""OpenTelemetry for one process, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: a `TracerProvider`
(resource `service.name` = `OTEL_SERVICE_NAME`) exporting over OTLP/HTTP (protobuf, to
`<endpoint>/v1/traces`) through a `BatchSpanProcessor`, the graph's span handler per turn
(`voicerag/tracing/otel_spans.py`) and, in the voice worker, LiveKit's own spans on the same
provider (`use_for_livekit`), so a voice turn is one trace.

Nothing is built or sent on a turn's path: the handler notes the turn's spans, a `SpanWriter`
thread builds them once the turn is over (`otel_writer.py`), and ended spans go into a bounded
queue (`MAX_QUEUE_SPANS`; beyond it new spans are dropped, and the SDK logs it) that another thread
exports in batches, each request bounded by `EXPORT_TIMEOUT_S`. The provider is private to
voicerag (never the global one: libraries that trace on their own do not export through it unasked)
and does not shut itself down at exit: `close` does, within the time it is given, whatever the
collector does (hangs, refuses): what is not sent by then is dropped and said in one log line.

The exporter reads the OTLP variables it knows besides the endpoint (`OTEL_EXPORTER_OTLP_HEADERS`
for a collector's auth, `OTEL_EXPORTER_OTLP_COMPRESSION`, certificates).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.semconv._incubating.attributes import enduser_attributes

from retrievers.masking import mask
from voicerag.tracing.otel_spans import INSTRUMENTATION, span_handlers
from voicerag.tracing.otel_writer import CallerIds, SpanWriter
from voicerag.tracing.pseudonyms import user_ids

if TYPE_CHECKING:
    from graph.tracing import Tracer
    from voicerag.settings import Settings

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"  # OTLP/HTTP: the signal's path under OTEL_EXPORTER_OTLP_ENDPOINT
MAX_QUEUE_SPANS = 4096  # ended spans waiting for export (a turn makes ~10, a voice turn ~25 with LiveKit's)
BATCH_SPANS = 512
SCHEDULE_DELAY_MS = 1000  # how long an ended span may wait for its batch
EXPORT_TIMEOUT_S = 5.0  # one export request, retries included


@dataclass
class OtelTracing:
    """The process's provider, the graph's `Tracer` on it, and its closer."""

    provider: TracerProvider
    processor: BatchSpanProcessor
    endpoint: str

    writer: SpanWriter

    def tracer(self) -> Tracer:
        return span_handlers(self.writer)

    def close(self, timeout_s: float) -> None:
        """Export what is queued and stop, within `timeout_s` whatever the collector does: the work
        runs on a daemon thread that is abandoned (never joined past the timeout) if it hangs."""
        deadline = time.monotonic() + timeout_s

        def close() -> None:  # the turns' spans built, then exported
            self.writer.close(timeout_s)
            self.processor.shutdown()

        closing = threading.Thread(target=close, name="otel-close", daemon=True)
        closing.start()
        closing.join(max(0.0, deadline - time.monotonic()))
        if closing.is_alive():
            log.warning("OpenTelemetry: spans not exported within %.1f s were dropped (%s)", timeout_s, self.endpoint)

    def use_for_livekit(self) -> None:
        """LiveKit's spans (session, user and agent turns, llm_node, tts...) on this provider. LiveKit's
        transcripts and chat context are not masked, so they are withheld (`allow_pii=False`: its
        content attributes are dropped before export); the graph's spans carry the masked texts."""
        from livekit.agents import telemetry

        telemetry.set_tracer_provider(self.provider, allow_pii=False)


def traces_url(endpoint: str) -> str:
    """`OTEL_EXPORTER_OTLP_ENDPOINT` is the collector's base URL: traces go to its `/v1/traces`."""
    return endpoint.rstrip("/") + TRACES_PATH


def open_otel(settings: Settings) -> OtelTracing:
    """The provider and exporter the settings name (`otel_exporter_otlp_endpoint` must be set)."""
    assert settings.otel_exporter_otlp_endpoint is not None
    endpoint = traces_url(str(settings.otel_exporter_otlp_endpoint))
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name}),
        shutdown_on_exit=False,  # its own atexit hook would wait 30 s on a hanging collector: `close` is bounded
    )
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_S),
        max_queue_size=MAX_QUEUE_SPANS,
        max_export_batch_size=BATCH_SPANS,
        schedule_delay_millis=SCHEDULE_DELAY_MS,
    )
    provider.add_span_processor(processor)
    writer = SpanWriter(provider.get_tracer(INSTRUMENTATION), caller_ids(settings))
    return OtelTracing(provider, processor, endpoint, writer)


def caller_ids(settings: Settings) -> CallerIds:
    """The caller on the root span, as LangSmith shows it (`TRACE_USER_IDS`, `TRACE_USER_ID_KEY`):
    the same pseudonym in both; a plain id goes through the masker like every text."""
    ids = user_ids(settings)
    if settings.trace_user_ids == "plain":
        return CallerIds(enduser_attributes.ENDUSER_ID, lambda user_id: mask(ids(user_id)))
    return CallerIds(enduser_attributes.ENDUSER_PSEUDO_ID, ids)
