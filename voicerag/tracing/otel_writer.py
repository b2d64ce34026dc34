"""Spans made off the turn's path: the span handler (`otel_spans.py`) only notes what happened and
when (`Note`s); once the turn is over it hands them to a `SpanWriter`, whose worker thread
(`voicerag/tracing/worker.py`) builds
the OpenTelemetry spans with the times noted (starting a span in the SDK costs tens of µs: a turn's
worth would be ~1 ms on the event loop), masks what they carry and gives them to the batch processor.

The root span's parent is the OpenTelemetry context that was current when the run started (LiveKit's
turn in a voice call): it travels with the notes. The queue of finished turns is bounded
(`MAX_TURNS`): beyond it a turn's spans are dropped, and said in the log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from graph.turn_record import TurnRecord
from retrievers.masking import mask
from retrievers.sources.base import ANONYMOUS
from voicerag.tracing.worker import TraceWorker

log = logging.getLogger(__name__)

MAX_TURNS = 1000  # finished turns waiting for their spans to be built
ERROR_CHARS = 300  # of an error message in a span's status (masked)
CANCELLED = "cancelled"


@dataclass(slots=True, eq=False)
class Note:
    """One span as the handler saw it: built later, with these times."""

    name: str
    parent: Note | None  # None: the turn's root
    kind: SpanKind
    attributes: dict[str, AttributeValue]
    start_ns: int
    end_ns: int | None = None  # None: still open when the turn was over (ended then, as cancelled)
    error_type: str | None = None
    error: str | None = None  # raw (masked when the span is built)


@dataclass(frozen=True)
class CallerIds:
    """How a caller appears on the root span: the attribute (`enduser.pseudo.id`, or `enduser.id`
    for plain ids) and the function of the user id that gives its value."""

    attribute: str
    of: Callable[[str], str]


@dataclass
class FinishedTurn:
    notes: list[Note]  # in start order: a parent before its children; the root first
    context: otel_context.Context  # current when the run started: the root's parent
    record: TurnRecord
    finished_ns: int = field(default_factory=time.time_ns)


class SpanWriter:
    """Builds finished turns' spans on the trace worker's thread, in the order the turns ended."""

    def __init__(self, tracer: trace.Tracer, callers: CallerIds | None = None) -> None:
        self._tracer = tracer
        self._callers = callers
        self._worker = TraceWorker("otel-spans", MAX_TURNS)

    @property
    def dropped(self) -> int:
        """Turns whose spans were dropped (the queue was full)."""
        return self._worker.dropped

    def submit(self, turn: FinishedTurn) -> None:
        self._worker.submit(self.write, turn)

    def close(self, timeout_s: float) -> bool:
        """Build what is queued, within `timeout_s`; False if time ran out."""
        return self._worker.drain(timeout_s)

    def write(self, turn: FinishedTurn) -> None:
        """The turn's spans, built with the noted times and ended (children first)."""
        spans: dict[int, Span] = {}
        for note in turn.notes:
            parent = turn.context if note.parent is None else trace.set_span_in_context(spans[id(note.parent)])
            spans[id(note)] = self._tracer.start_span(
                note.name, context=parent, kind=note.kind, attributes=note.attributes, start_time=note.start_ns
            )
        root, *children = turn.notes
        for note in reversed(children):
            span = spans[id(note)]
            if note.end_ns is None:
                note.error_type = note.error = CANCELLED  # its run never said it ended: cut short
            if note.error_type is not None:
                span.set_attribute(error_attributes.ERROR_TYPE, note.error_type)
                span.set_status(Status(StatusCode.ERROR, masked_error(note)))
            span.end(end_time=note.end_ns or turn.finished_ns)
        self._end_root(spans[id(root)], root, turn)

    def _end_root(self, span: Span, root: Note, turn: FinishedTurn) -> None:
        record = turn.record
        span.set_attributes(outcome_attributes(record))
        if self._callers is not None and record.user_id and record.user_id != ANONYMOUS:
            span.set_attribute(self._callers.attribute, self._callers.of(record.user_id))
        if record.failed:
            span.set_attribute(error_attributes.ERROR_TYPE, record.failed)
            span.set_status(Status(StatusCode.ERROR, (record.masked_texts["error"] or record.failed)[:ERROR_CHARS]))
        elif record.cancelled:
            span.set_attribute(error_attributes.ERROR_TYPE, CANCELLED)
            span.set_status(Status(StatusCode.ERROR, CANCELLED))
        span.end(end_time=root.end_ns or turn.finished_ns)


def masked_error(note: Note) -> str:
    if note.error_type == CANCELLED:
        return CANCELLED
    return mask((note.error or "")[:ERROR_CHARS]) or note.error_type or "error"


def outcome_attributes(record: TurnRecord) -> dict[str, AttributeValue]:
    """What the root span says of the finished turn (texts masked; None values left out)."""
    texts = record.masked_texts
    values: dict[str, AttributeValue | None] = {
        "voicerag.question": texts["question"],
        "voicerag.answer": texts["answer"],
        "voicerag.language": record.language,
        "voicerag.route": record.route,
        "voicerag.route_reason": record.route_reason,
        "voicerag.degraded": record.degraded,
        "voicerag.cancelled": record.cancelled,
        "voicerag.problems": [str(p.get("kind", "")) for p in record.problems],
        "voicerag.documents.ids": list(record.documents),
        "voicerag.sources": json.dumps(record.sources, separators=(",", ":")) if record.sources else None,
        "voicerag.tokens.input": record.tokens["input"],
        "voicerag.tokens.output": record.tokens["output"],
        "voicerag.llm_calls": record.llm_calls,
        "voicerag.cost_usd": record.cost_usd,  # absent: unknown (a model without a price)
        "voicerag.first_token_ms": record.first_token_ms,
        "voicerag.total_ms": record.total_ms,
        "voicerag.end_of_turn_ms": record.end_of_turn_ms,
        "voicerag.filler": record.filler,
    }
    return {key: value for key, value in values.items() if value is not None}
