"""The LLM step of the voice session: the LangGraph graph, through livekit-plugins-langchain.

Why a subclass of the stock `LLMAdapter` (livekit-plugins-langchain 1.8.9, pinned: this builds
on its semi-private `LangGraphStream` and `_to_chat_chunk`):
- the stock adapter speaks every chat-model token of every node and every message any node
  returns; this one speaks only what the speaking node (`generate`) streams, so no router,
  grader or source text can ever reach TTS, even if a future node returns a message;
- the stock adapter fixes `context` at construction; this one builds a fresh `Context` for every
  turn (caller identity, language, turn id) from a factory the session provides.

The graph runs without a checkpointer here: LiveKit resends the whole chat every turn, so the
chat context is the history (a checkpointed thread would duplicate every reply).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from livekit.agents import llm
from livekit.agents.llm.chat_context import ChatContext
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.plugins.langchain.langgraph import LangGraphStream, LLMAdapter, _to_chat_chunk

from graph.builder import SPEAKING_NODE, VoiceGraph
from graph.state import Context

ContextFactory = Callable[[ChatContext], Context]


def anonymous_context(chat_ctx: ChatContext) -> Context:
    """The least-privilege context, for callers the session knows nothing about."""
    return Context(turn_id=uuid.uuid4().hex)


class SpeakingNodeStream(LangGraphStream[Context]):
    """Streams one graph run and forwards only the speaking node's message text."""

    async def _run(self) -> None:
        stream: AsyncIterator[Any] = self._graph.astream(
            self._chat_ctx_to_state(), self._config, context=self._context, stream_mode="messages"
        )
        async for message, metadata in stream:
            if metadata.get("langgraph_node") != SPEAKING_NODE:
                continue
            if isinstance(message, AIMessageChunk | AIMessage) and (chunk := _to_chat_chunk(message)):
                self._event_ch.send_nowait(chunk)


class GraphLLM(LLMAdapter[Context]):
    """A LiveKit `llm.LLM` whose every turn is one run of the voicerag graph."""

    def __init__(self, graph: VoiceGraph, *, context_factory: ContextFactory = anonymous_context) -> None:
        super().__init__(graph, stream_mode="messages")
        self._context_factory = context_factory

    @property
    def model(self) -> str:
        return "voicerag-graph"

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[Any] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> SpeakingNodeStream:
        # Tools are the graph's business (sources are chosen by route_query), so LiveKit's are ignored.
        return SpeakingNodeStream(
            self,
            chat_ctx=chat_ctx,
            tools=[],
            conn_options=conn_options,
            graph=self._graph,
            context=self._context_factory(chat_ctx),
        )
