"""The graph's spans of one turn: a LangChain callback handler that notes the run's events as
OpenTelemetry spans-to-be (`otel_writer.Note`), with the GenAI semantic-convention attributes where
they exist; once the turn is over a `SpanWriter` builds them off the turn's path.

- the root run → span `voicerag` (`invoke_workflow`; the caller as `enduser.pseudo.id`, a keyed
  hash: `TRACE_USER_IDS`, shared with LangSmith), whose parent is the OpenTelemetry context
  current when the run starts: LiveKit's turn span in a voice call, none for `ask`, `chat` and
  Studio (the turn's own trace). It carries, once the turn's record is complete (`turn_finished`),
  what an operator asks first: route, degraded, problems, documents, sources, tokens, cost,
  timings, and the question and answer masked (`TurnRecord.masked_texts`: once per turn for every
  sink);
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

The handler runs inline (no executor hop) and only fills small dataclasses: no OpenTelemetry call,
no masking, no I/O on the turn's path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeGuard
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry import context as otel_context
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from graph.observer import CANCELLATIONS
from graph.tracing import ROOT_RUN_NAME, Tracer, TurnTraceHandler
from graph.turn_record import TurnRecord
from graph.usage import PRICE_KEY, cost_usd, usage_of
from voicerag.tracing.otel_writer import CANCELLED, FinishedTurn, Note, SpanWriter

INSTRUMENTATION = "voicerag"  # the instrumentation scope of the graph's spans
# gen_ai.operation.name values (the semconv enum class is deprecated: moved to the GenAI repository).
CHAT, RETRIEVAL, EXECUTE_TOOL, INVOKE_WORKFLOW = "chat", "retrieval", "execute_tool", "invoke_workflow"
TOOL_TYPE = "extension"  # a source: called by the agent, on its side, to reach an external system


def span_handlers(writer: SpanWriter) -> Tracer:
    """The `graph.tracing.Tracer` that gives every turn its span handler, its spans built by `writer`."""

    def handlers(record: TurnRecord) -> list[BaseCallbackHandler]:
        return [TurnSpans(writer, record)]

    return handlers


class TurnSpans(TurnTraceHandler):
    """The spans of one turn's run (one handler per turn), noted as they happen."""

    run_inline = True  # called where the event happens: no thread hop on the turn's path

    def __init__(self, writer: SpanWriter, record: TurnRecord) -> None:
        self._writer = writer
        self._record = record
        self._notes: dict[UUID, Note] = {}  # every span of the turn by run, in start order
        self._nearest: dict[UUID, Note] = {}  # a run without a span -> its nearest ancestor's note
        self._root: Note | None = None
        self._context: otel_context.Context | None = None  # current when the root started
        self._prices: dict[UUID, dict[str, float] | None] = {}  # chat-model run -> its price
        self._waiting_first_chunk: set[UUID] = set()  # chat-model runs until their first token
        self._finished = False

    # ------------------------------------------------------------------ notes

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        attributes: dict[str, AttributeValue],
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Note | None:
        if self._finished or self._root is None:
            return None
        parent = self._notes.get(parent_run_id) or self._nearest.get(parent_run_id) if parent_run_id else None
        note = Note(name, parent or self._root, kind, attributes, time.time_ns())
        self._notes[run_id] = note
        return note

    def _open(self, run_id: UUID) -> Note | None:
        note = self._notes.get(run_id)
        return note if note is not None and note.end_ns is None and not self._finished else None

    def _end(self, run_id: UUID, attributes: dict[str, AttributeValue] | None = None) -> None:
        self._nearest.pop(run_id, None)
        if (note := self._open(run_id)) is not None:
            if attributes:
                note.attributes.update(attributes)
            note.end_ns = time.time_ns()

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        self._nearest.pop(run_id, None)
        if (note := self._open(run_id)) is not None:
            if isinstance(error, CANCELLATIONS):
                note.error_type = note.error = CANCELLED
            else:
                note.error_type, note.error = type(error).__name__, str(error)  # masked by the writer
            note.end_ns = time.time_ns()

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
            if self._root is None and not self._finished:
                self._context = otel_context.get_current()  # LiveKit's turn, in a voice call
                self._root = Note(ROOT_RUN_NAME, None, SpanKind.INTERNAL, self._turn_attributes(), time.time_ns())
                self._notes[run_id] = self._root
            return
        node = (metadata or {}).get("langgraph_node")
        if self._root is not None and self._notes.get(parent_run_id) is self._root and is_node(node):
            attributes: dict[str, AttributeValue] = {"langgraph.node": node}
            if isinstance(step := (metadata or {}).get("langgraph_step"), int):
                attributes["langgraph.step"] = step
            self._start(run_id, parent_run_id, node, attributes)
        elif (parent := self._notes.get(parent_run_id) or self._nearest.get(parent_run_id)) is not None:
            self._nearest[run_id] = parent

    def on_chain_end(self, outputs: dict[str, Any] | Any, *, run_id: UUID, **kwargs: Any) -> None:
        route = outputs.get("route") if isinstance(outputs, dict) else None
        self._end(run_id, {"voicerag.route": route["kind"]} if isinstance(route, dict) and "kind" in route else None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if (note := self._notes.get(run_id)) is not None and note is self._root:
            self._end(run_id)  # its status comes from the record
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
            self._waiting_first_chunk.add(run_id)

    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], *, run_id: UUID, **kwargs: Any) -> None:
        if token and run_id in self._waiting_first_chunk and (note := self._open(run_id)) is not None:
            self._waiting_first_chunk.discard(run_id)
            seconds = (time.time_ns() - note.start_ns) / 1e9
            note.attributes[gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = seconds

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._waiting_first_chunk.discard(run_id)
        self._end(run_id, self._usage(run_id, response) | response_attributes(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._waiting_first_chunk.discard(run_id)
        partial = kwargs.get("response")
        if isinstance(partial, LLMResult) and (note := self._open(run_id)) is not None:
            note.attributes.update(self._usage(run_id, partial))  # cut short after it began: what it reported
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
        note = self._open(run_id)
        if note is None or not isinstance(output, dict):
            self._end(run_id)
            return
        status = str(output.get("status", ""))
        if status in ("error", "timeout"):  # a source reports failures as its result: the span says so
            data = output.get("data")
            kind = data.get("error") if isinstance(data, dict) else None
            note.error_type, note.error = str(kind or status), status
        self._end(
            run_id,
            {
                "voicerag.source.status": status,
                "voicerag.source.elapsed_ms": float(output.get("elapsed_ms") or 0.0),
                "voicerag.source.cached": bool(output.get("cached")),
            },
        )

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
        return attributes

    def turn_finished(self, record: TurnRecord) -> None:
        """The record is complete: the turn's notes go to the writer (spans still open, a cancelled
        run's late callbacks, end there as cancelled; the root gets the turn's outcome)."""
        if self._finished:
            return
        self._finished = True
        if self._root is not None and self._context is not None:
            self._writer.submit(FinishedTurn(list(self._notes.values()), self._context, record))


def is_node(node: object) -> TypeGuard[str]:
    """A graph node's run (LangGraph's own `__start__` is left out)."""
    return isinstance(node, str) and not node.startswith("__")


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
