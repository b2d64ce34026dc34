"""An OTLP/HTTP trace receiver on 127.0.0.1 (a free port), for testing what voicerag exports.

It accepts `POST /v1/traces` (a protobuf `ExportTraceServiceRequest`, gzip or not), as a collector
does, and keeps every span (`received`), decoded: names, ids as hex, parent, attributes as Python
values, status, the resource's `service.name` and the instrumentation scope. `hang = True` makes it
accept requests and never answer (until it stops), as a stuck collector does.

    with OtlpReceiver() as receiver:
        ... OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url ...
        root = receiver.named("voicerag")[0]
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from fakes.threaded import ThreadedServer

STATUS = {0: "unset", 1: "ok", 2: "error"}


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    attributes: dict[str, Any]
    status: str  # unset, ok, error
    status_message: str
    service: str
    scope: str
    start_ns: int
    end_ns: int
    events: list[str] = field(default_factory=list)


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


class OtlpReceiver(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[ReceivedSpan] = []
        self.requests = 0  # POSTs that arrived (answered or not)
        self.hang = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.requests += 1
        if self.hang:  # a stuck collector: no answer until the receiver stops
            await asyncio.to_thread(self._stopping.wait)
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in export.resource_spans:
            resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={kv.key: value_of(kv.value) for kv in span.attributes},
                            status=STATUS[span.status.code],
                            status_message=span.status.message,
                            service=str(resource.get("service.name", "")),
                            scope=scope_spans.scope.name,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            events=[event.name for event in span.events],
                        )
                    )
        with self._lock:
            self.received += spans
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def named(self, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans() if span.name == name]

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.received)

    def wait_for(self, name: str, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The spans named `name` once at least one arrived (bounded)."""
        deadline = time.monotonic() + timeout_s
        while not (found := self.named(name)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no span {name!r} arrived within {timeout_s} s: {[s.name for s in self.spans()]}")
            time.sleep(0.02)
        return found

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans() if span.trace_id == trace_id]

    @staticmethod
    def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        """`span`'s parent, its parent's parent... as far as `spans` go."""
        by_id = {s.span_id: s for s in spans}
        chain = []
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span)
        return chain
