"""Running one turn of the graph for the text front doors, observed (one `TurnRecord` to the sinks:
the log line, the audit log), and its JSON form (the CLI contract)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage
from langchain_core.runnables import RunnableConfig

from graph.builder import SPEAKING_NODE, VoiceGraph
from graph.context import Context
from graph.observer import observing
from graph.tracing import Tracer, turn_config
from graph.tts_text import speakable_text
from graph.turn_record import FrontDoor, Sink, TurnRecord


async def run_turn(
    graph: VoiceGraph,
    messages: list[AnyMessage],
    context: Context,
    on_text: Callable[[str], None] | None = None,
    *,
    config: RunnableConfig | None = None,
) -> dict[str, Any]:
    """Run the graph on the conversation so far; `on_text` receives the answer as it streams.
    Returns the final state."""
    final: dict[str, Any] = {}
    stream: AsyncIterator[Any] = graph.astream(
        {"messages": messages}, config, context=context, stream_mode=["messages", "values"]
    )
    async for mode, payload in stream:
        if mode == "values":
            final = payload
        elif on_text is not None:
            message, metadata = payload
            spoken = metadata.get("langgraph_node") == SPEAKING_NODE and isinstance(message, AIMessageChunk | AIMessage)
            if spoken and message.text:
                on_text(message.text)
    return final


async def observed_turn(
    graph: VoiceGraph,
    messages: list[AnyMessage],
    context: Context,
    front_door: FrontDoor,
    sinks: list[Sink],
    on_text: Callable[[str], None] | None = None,
    tracers: Sequence[Tracer] = (),
) -> dict[str, Any]:
    """`run_turn` with a `TurnObserver` and the process's tracers (`graph/tracing.py`): the record
    goes to `sinks` however the turn ends (a Ctrl-C makes it a cancelled one). The returned state
    carries the record's model `usage`."""
    with observing(TurnRecord.for_context(context, front_door), sinks) as observer:
        state = await run_turn(graph, messages, context, on_text, config=turn_config(observer, tracers))
        return state | {"usage": observer.record.usage()}


def turn_json(state: dict[str, Any]) -> dict[str, Any]:
    """The `voicerag ask --json` object, the CLI contract of the README (docs/ARCHITECTURE.md: the path of a turn)."""
    route = state.get("route") or {"kind": "lookup", "sources": []}
    timings = dict(state.get("timings_ms") or {})
    language = state.get("language", "en")
    return {
        "question": state.get("question", ""),
        "answer": state.get("answer", ""),
        # the answer as TTS receives it: shaped for speech by generate (graph/speakable.py), then normalised
        "spoken": speakable_text(state.get("answer", ""), language),
        "language": language,
        "route": {"kind": route["kind"], "sources": list(route.get("sources", []))},
        "documents": [
            {"doc_id": d["doc_id"], "title": d["title"], "score": d["score"], "text": d["text"]}
            for d in state.get("graded", [])
        ],
        "api_results": list(state.get("api_results", [])),
        "degraded": bool(state.get("degraded", False)),
        "timings_ms": {
            key: timings.get(key, 0.0)
            for key in ("route", "retrieve", "call_apis", "grade", "generate", "pre_generation", "total")
        }
        | {"sources": dict(timings.get("sources", {}))},
        # tokens {input, output, total} of every model call, cost_usd (null: unknown price), llm_calls
        "usage": state.get("usage") or TurnRecord("", "", "", "ask").usage(),
    }
