"""The span handler on a small LangGraph graph (no model, no server): a node that raises ends its span
and the root's as errors whose messages are masked; spans are built off the run, by the writer, with
the times the handler noted, parents before children."""

from __future__ import annotations

from typing import TypedDict

from helpers import SAMPLE_PII
from langgraph.graph import START, StateGraph
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from graph.observer import observing
from graph.tracing import turn_config
from graph.turn_record import TurnRecord
from voicerag.tracing.otel_spans import span_handlers
from voicerag.tracing.otel_writer import SpanWriter

PHONE = SAMPLE_PII["mobile phone"]


class State(TypedDict, total=False):
    question: str
    found: str


def find(state: State) -> State:
    return {"found": "yes"}


def fail(state: State) -> State:
    raise ValueError(f"no order for the caller on {PHONE}")


def traced(*nodes: tuple[str, object]) -> dict[str, ReadableSpan]:
    """Run a graph of `nodes` in a row, observed and traced; its spans by name."""
    builder = StateGraph(State)
    previous = START
    for name, node in nodes:
        builder.add_node(name, node)  # type: ignore[call-overload]
        builder.add_edge(previous, name)
        previous = name
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    writer = SpanWriter(provider.get_tracer("test"))
    record = TurnRecord("turn-1", "session-1", "C-1", "ask")
    try:
        with observing(record, []) as observer:
            config = turn_config(observer, [span_handlers(writer)])
            builder.compile().invoke({"question": f"call me on {PHONE}"}, config)
    except ValueError:
        pass
    assert writer.close(5.0)
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_failing_node_ends_its_span_and_the_roots_as_masked_errors() -> None:
    spans = traced(("find", find), ("lookup", fail))
    assert set(spans) == {"voicerag", "find", "lookup"}
    lookup, root = spans["lookup"], spans["voicerag"]
    assert lookup.status.status_code is StatusCode.ERROR and lookup.attributes is not None
    assert lookup.attributes["error.type"] == "ValueError"
    assert lookup.status.description == "no order for the caller on [PHONE]"
    assert root.status.status_code is StatusCode.ERROR and root.attributes is not None
    assert root.attributes["error.type"] == "ValueError" and PHONE not in (root.status.description or "")
    assert root.attributes["voicerag.question"] == "call me on [PHONE]"
    assert spans["find"].status.status_code is StatusCode.UNSET  # control: the node that worked


def test_spans_keep_the_runs_times_and_parents() -> None:
    spans = traced(("find", find), ("lookup", find))
    root, first, second = spans["voicerag"], spans["find"], spans["lookup"]
    assert root.parent is None and root.context is not None
    for child in (first, second):
        assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert root.start_time is not None and first.start_time is not None and second.start_time is not None
    assert first.end_time is not None and root.end_time is not None and second.end_time is not None
    assert root.start_time <= first.start_time <= first.end_time <= second.start_time <= root.end_time
    assert root.status.status_code is StatusCode.UNSET
