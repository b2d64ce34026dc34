"""The graph's spans of one turn: a LangChain callback handler that turns the run's events into
OpenTelemetry spans, with the GenAI semantic-convention attributes where they exist.

- the root run → span `voicerag` (`invoke_workflow`; the caller as `enduser.pseudo.id`, a keyed
  hash: `TRACE_USER_IDS`, shared with LangSmith), whose parent is the OpenTelemetry context
  current when the run starts: LiveKit's turn span in a voice call (one trace per turn), none for
  `ask`, `chat` and Studio (the turn's own trace). It ends when the turn's record is complete
  (`turn_finished`), with what an operator asks first: route, degraded, problems, documents,
  sources, tokens, cost, timings, and the question and answer masked (`TurnRecord.masked_texts`,
  masked once per turn for every sink);
- each node run (children of the root carrying `langgraph_node`) → a span named after the node;
- each chat-model run → `chat <model>` (client): request model, provider, reported usage, cost;
- the knowledge-base search (`graph/nodes/child_runs.py`) → `retrieval knowledge_base`: document
  ids and scores, never their text;
- each source call → `execute_tool <source>`: status, elapsed, cache hit, parameter names (values
  can be a caller's order number: left out).

Other runs (LangGraph's edges and writers, runnables inside a node) get no span: their children
hang from their nearest ancestor's. An error sets the span's status with the masked message; a
cancelled run (barge-in, Ctrl-C) is an error `cancelled`. Spans still open when the turn is over
(a cancelled run's late callbacks) end then, so nothing is lost or left dangling.

The handler runs inline (no executor hop) and only records in memory: export is the batch
processor's, on its own thread (`voicerag/tracing/otel.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from graph.observer import CANCELLATIONS
from graph.tracing import ROOT_RUN_NAME, Tracer, TurnTraceHandler
from graph.turn_record import TurnRecord
from graph.usage import PRICE_KEY, cost_usd, usage_of
from retrievers.masking import mask
from retrievers.sources.base import ANONYMOUS

INSTRUMENTATION = "voicerag"  # the instrumentation scope of the graph's spans
ERROR_CHARS = 300  # of an error message in a span's status (masked)
# gen_ai.operation.name values (the semconv enum class is deprecated: moved to the GenAI repository).
CHAT, RETRIEVAL, EXECUTE_TOOL, INVOKE_WORKFLOW = "chat", "retrieval", "execute_tool", "invoke_workflow"
TOOL_TYPE = "extension"  # a source: called by the agent, on its side, to reach an external system
CANCELLED = "cancelled"


@dataclass(frozen=True)
class CallerIds:
    """How a caller appears on the root span: the attribute (`enduser.pseudo.id`, or `enduser.id`
    for plain ids) and the function of the user id that gives its value."""

    attribute: str
    of: Callable[[str], str]


def span_handlers(tracer: trace.Tracer, callers: CallerIds | None = None) -> Tracer:
    """The `graph.tracing.Tracer` that gives every turn its span handler on `tracer`."""

    def handlers(record: TurnRecord) -> list[BaseCallbackHandler]:
        return [TurnSpans(tracer, record, callers)]

    return handlers


class TurnSpans(TurnTraceHandler):
    """The spans of one turn's run (one handler per turn)."""

    run_inline = True  # called where the event happens: no thread hop on the turn's path

    def __init__(self, tracer: trace.Tracer, record: TurnRecord, callers: CallerIds | None = None) -> None:
        self._tracer = tracer
        self._record = record
        self._callers = callers
        self._spans: dict[UUID, Span] = {}  # open spans by run
        self._nearest: dict[UUID, Span] = {}  # a run without a span -> its nearest ancestor's span
        self._root: UUID | None = None
        self._root_span: Span | None = None
        self._root_ended_ns: int | None = None
        self._prices: dict[UUID, dict[str, float] | None] = {}  # chat-model run -> its price
        self._first_chunk: dict[UUID, int] = {}  # chat-model run -> its start (ns), until its first token
        self._finished = False

    # ------------------------------------------------------------------ spans

    def _parent(self, parent_run_id: UUID | None) -> Span | None:
        if parent_run_id is None:
            return None
        return self._spans.get(parent_run_id) or self._nearest.get(parent_run_id) or self._root_span

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        attributes: dict[str, AttributeValue],
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Span | None:
        if self._finished:
            return None
        parent = self._parent(parent_run_id)
        context = trace.set_span_in_context(parent) if parent is not None else None  # None: the current one
        span = self._tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        self._spans[run_id] = span
        return span

    def _end(self, run_id: UUID, attributes: dict[str, AttributeValue] | None = None) -> None:
        self._nearest.pop(run_id, None)
        span = self._spans.pop(run_id, None)
        if span is None:
            return
        if attributes:
            span.set_attributes(attributes)
        span.end()

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        self._nearest.pop(run_id, None)
        span = self._spans.pop(run_id, None)
        if span is not None:
            failed(span, error)
            span.end()

    # ------------------------------------------------------------------ chains: the root, the nodes

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is None:
            if self._root is None:
                self._root = run_id
                self._root_span = self._start(run_id, None, ROOT_RUN_NAME, self._turn_attributes())
            return
        node = (metadata or {}).get("langgraph_node")
        if parent_run_id == self._root and isinstance(node, str) and not node.startswith("__"):
            attributes: dict[str, AttributeValue] = {"langgraph.node": node}
            if isinstance(step := (metadata or {}).get("langgraph_step"), int):
                attributes["langgraph.step"] = step
            self._start(run_id, parent_run_id, node, attributes)
        elif (parent := self._parent(parent_run_id)) is not None:
            self._nearest[run_id] = parent

    def on_chain_end(self, outputs: dict[str, Any] | Any, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id == self._root:
            self._root_ended_ns = time.time_ns()  # the span ends when the record is complete
            return
        route = outputs.get("route") if isinstance(outputs, dict) else None
        self._end(run_id, {"voicerag.route": route["kind"]} if isinstance(route, dict) and "kind" in route else None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id == self._root:
            self._root_ended_ns = time.time_ns()  # its status comes from the record
            return
        self._fail(run_id, error)

    # ------------------------------------------------------------------ chat models

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = str(params.get("model") or params.get("model_name") or metadata.get("ls_model_name") or "")
        attributes: dict[str, AttributeValue] = {gen_ai.GEN_AI_OPERATION_NAME: CHAT, gen_ai.GEN_AI_REQUEST_MODEL: model}
        if provider := metadata.get("ls_provider"):
            attributes[gen_ai.GEN_AI_PROVIDER_NAME] = str(provider)
        if isinstance(temperature := metadata.get("ls_temperature"), int | float):
            attributes[gen_ai.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)
        if isinstance(max_tokens := metadata.get("ls_max_tokens"), int):
            attributes[gen_ai.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if node := metadata.get("langgraph_node"):
            attributes["voicerag.node"] = str(node)  # which call: route_query, grade_context, generate
        if self._start(run_id, parent_run_id, f"{CHAT} {model}".strip(), attributes, SpanKind.CLIENT) is not None:
            self._prices[run_id] = metadata.get(PRICE_KEY)
            self._first_chunk[run_id] = time.time_ns()

    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], *, run_id: UUID, **kwargs: Any) -> None:
        if token and (started := self._first_chunk.pop(run_id, None)) is not None and run_id in self._spans:
            seconds = (time.time_ns() - started) / 1e9
            self._spans[run_id].set_attribute(gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, seconds)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._first_chunk.pop(run_id, None)
        self._end(run_id, self._usage(run_id, response) | response_attributes(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._first_chunk.pop(run_id, None)
        partial = kwargs.get("response")
        if isinstance(partial, LLMResult) and (span := self._spans.get(run_id)) is not None:
            span.set_attributes(self._usage(run_id, partial))  # cut short after it began: what it reported
        self._prices.pop(run_id, None)
        self._fail(run_id, error)

    def _usage(self, run_id: UUID, response: LLMResult) -> dict[str, AttributeValue]:
        price = self._prices.pop(run_id, None)
        usage = usage_of(response)
        if usage is None:
            return {}
        attributes: dict[str, AttributeValue] = {
            gen_ai.GEN_AI_USAGE_INPUT_TOKENS: usage[0],
            gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: usage[1],
        }
        if price:
            attributes["voicerag.cost_usd"] = cost_usd(*usage, price)
        return attributes

    # ------------------------------------------------------------------ the knowledge base, the sources

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "retriever")
        attributes: dict[str, AttributeValue] = {
            gen_ai.GEN_AI_OPERATION_NAME: RETRIEVAL,
            gen_ai.GEN_AI_DATA_SOURCE_ID: name,
        }
        self._start(run_id, parent_run_id, f"{RETRIEVAL} {name}", attributes)

    def on_retriever_end(self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any) -> None:
        ids = [str(d.metadata.get("id", d.id or "")) for d in documents]
        scores = [float(d.metadata.get("score", 0.0)) for d in documents]
        self._end(run_id, {"voicerag.documents.count": len(ids), "voicerag.documents.ids": ids,
                           "voicerag.documents.scores": scores})  # fmt: skip

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        attributes: dict[str, AttributeValue] = {
            gen_ai.GEN_AI_OPERATION_NAME: EXECUTE_TOOL,
            gen_ai.GEN_AI_TOOL_NAME: name,
            gen_ai.GEN_AI_TOOL_TYPE: TOOL_TYPE,
            # the names of the arguments given, not their values (one can be a caller's order number)
            "voicerag.source.params": sorted(name for name, value in (inputs or {}).items() if value is not None),
        }
        self._start(run_id, parent_run_id, f"{EXECUTE_TOOL} {name}", attributes)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._spans.get(run_id)
        if span is None or not isinstance(output, dict):
            self._end(run_id)
            return
        status = str(output.get("status", ""))
        span.set_attributes(
            {
                "voicerag.source.status": status,
                "voicerag.source.elapsed_ms": float(output.get("elapsed_ms") or 0.0),
                "voicerag.source.cached": bool(output.get("cached")),
            }
        )
        if status in ("error", "timeout"):  # a source reports failures as its result: the span says so
            data = output.get("data")
            kind = data.get("error") if isinstance(data, dict) else None
            span.set_attribute(error_attributes.ERROR_TYPE, str(kind or status))
            span.set_status(Status(StatusCode.ERROR, status))
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    # ------------------------------------------------------------------ the turn

    def _turn_attributes(self) -> dict[str, AttributeValue]:
        record = self._record
        attributes: dict[str, AttributeValue] = {
            gen_ai.GEN_AI_OPERATION_NAME: INVOKE_WORKFLOW,
            gen_ai.GEN_AI_CONVERSATION_ID: record.session_id,
            "voicerag.turn_id": record.turn_id,
            "voicerag.session_id": record.session_id,
            "voicerag.front_door": record.front_door,
            "voicerag.roles": list(record.roles),
        }
        if record.tenant:
            attributes["voicerag.tenant"] = record.tenant
        if self._callers is not None and record.user_id and record.user_id != ANONYMOUS:
            attributes[self._callers.attribute] = self._callers.of(record.user_id)
        return attributes

    def turn_finished(self, record: TurnRecord) -> None:
        """The record is complete: the root span gets the turn's outcome and ends; any span still
        open (a cancelled run's late callbacks) ends with it."""
        if self._finished:
            return
        self._finished = True
        for run_id in list(self._spans):
            if run_id != self._root:
                self._fail(run_id, CancelledTurn())
        self._nearest.clear()
        span = self._spans.pop(self._root, None) if self._root is not None else None
        if span is None:
            return
        span.set_attributes(outcome_attributes(record))
        if record.failed:
            span.set_attribute(error_attributes.ERROR_TYPE, record.failed)
            span.set_status(Status(StatusCode.ERROR, (record.masked_texts["error"] or record.failed)[:ERROR_CHARS]))
        elif record.cancelled:
            span.set_attribute(error_attributes.ERROR_TYPE, CANCELLED)
            span.set_status(Status(StatusCode.ERROR, CANCELLED))
        span.end(end_time=self._root_ended_ns)


class CancelledTurn(Exception):
    """What ends a span still open when its turn is over."""

    def __str__(self) -> str:
        return CANCELLED


def failed(span: Span, error: BaseException) -> None:
    """The span's status for a run that raised: `cancelled`, or the error's type and masked message."""
    if isinstance(error, (*CANCELLATIONS, CancelledTurn)):
        span.set_attribute(error_attributes.ERROR_TYPE, CANCELLED)
        span.set_status(Status(StatusCode.ERROR, CANCELLED))
        return
    span.set_attribute(error_attributes.ERROR_TYPE, type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, mask(str(error)[:ERROR_CHARS]) or type(error).__name__))


def response_attributes(response: LLMResult) -> dict[str, AttributeValue]:
    """The response model and finish reasons a chat model reported."""
    attributes: dict[str, AttributeValue] = {}
    reasons: list[str] = []
    for generations in response.generations:
        for generation in generations:
            info = generation.generation_info or {}
            metadata = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
            if reason := info.get("finish_reason") or metadata.get("finish_reason"):
                reasons.append(str(reason))
            if model := metadata.get("model_name"):
                attributes[gen_ai.GEN_AI_RESPONSE_MODEL] = str(model)
    if reasons:
        attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    return attributes


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
