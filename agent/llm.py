"""The LLM step of the voice session: the LangGraph graph, through livekit-plugins-langchain.

Why a subclass of the stock `LLMAdapter` (livekit-plugins-langchain 1.8.9, pinned: this builds
on its semi-private `LangGraphStream` and `_to_chat_chunk`):
- the stock adapter speaks every chat-model token of every node and every message any node
  returns; this one speaks only what the speaking node (`generate`) streams, so no router,
  grader or source text can ever reach TTS, even if a future node returns a message;
- the stock adapter fixes `context` at construction; this one builds a fresh `Context` for every
  turn (caller identity, language, turn id) from a factory the session provides;
- it says a short filler when the lookups are expected or observed to be slow, and apologises
  instead of going silent when the graph fails;
- each turn is measured by a `TurnObserver` (graph/observer.py) on the run's callbacks, the same
  record as every other front door's; the stream adds what only voice knows (LiveKit's end-of-turn
  delay, the filler, a barge-in) and hands it to the sinks when the turn is over.

The graph runs without a checkpointer here: LiveKit resends the whole chat every turn, so the
chat context is the history (a checkpointed thread would duplicate every reply).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from livekit.agents import llm
from livekit.agents.llm.chat_context import ChatContext
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.voice import SpeechHandle
from livekit.plugins.langchain.langgraph import LangGraphStream, LLMAdapter, _to_chat_chunk

from agent.filler import FillerPolicy
from agent.identity import context_for
from graph.builder import SPEAKING_NODE, VoiceGraph
from graph.context import Context
from graph.observer import TurnObserver
from graph.persona import Phrases
from graph.state import Route
from graph.tracing import Tracer, turn_config
from graph.turn_record import Sink, TurnRecord
from retrievers.language import Language, detect_language

log = logging.getLogger(__name__)

ContextFactory = Callable[[ChatContext], Context]
RECENT_MESSAGES = 16  # of the conversation given to the graph each turn (it reads the last few)
FILLER_CHUNK_ID = "voicerag-filler"  # the filler's chunk, so the agent can end a speech segment after it


def anonymous_context(chat_ctx: ChatContext) -> Context:
    """The least-privilege context, for callers the session knows nothing about."""
    return context_for(None)


class SpeakingNodeStream(LangGraphStream[Context]):
    """Streams one graph run and forwards only the speaking node's message text."""

    def __init__(
        self,
        adapter: GraphLLM,
        *,
        chat_ctx: ChatContext,
        conn_options: APIConnectOptions,
        context: Context,
    ) -> None:
        super().__init__(adapter, chat_ctx=chat_ctx, tools=[], conn_options=conn_options, graph=adapter._graph)
        self._context = context
        self._adapter = adapter
        self.record = TurnRecord.for_context(context, "voice")
        self.record.language = context.language or detect_language(_last_user_text(chat_ctx))
        self.record.end_of_turn_ms = _end_of_turn_ms(chat_ctx)
        self.record.end_of_turn_delay_ms, self.record.transcription_delay_ms = _user_turn_delays(chat_ctx)
        self.observer = TurnObserver(self.record, adapter.sinks, hold=True)  # emitted when _run ends
        self._speech = _speech_handle()
        self._spoke = False

    def _chat_ctx_to_state(self) -> dict[str, Any]:
        """The conversation for the graph: system messages and the recent turns only. LiveKit
        resends the whole call every turn; the graph uses the last few messages (follow-ups, model
        history), and rebuilding hundreds of them would make each turn slower than the one before."""
        items = self._chat_ctx.messages()
        system = [m for m in items if m.role in ("system", "developer")]
        recent = [m for m in items if m.role in ("user", "assistant")][-RECENT_MESSAGES:]
        kinds = {"system": SystemMessage, "developer": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        return {
            "messages": [
                kinds[m.role](content=m.raw_text_content, id=m.id) for m in [*system, *recent] if m.raw_text_content
            ]
        }

    def _say(self, text: str, chunk_id: str | None = None) -> None:
        chunk = _to_chat_chunk(text)
        if chunk is not None:
            self._event_ch.send_nowait(chunk if chunk_id is None else chunk.model_copy(update={"id": chunk_id}))

    def _filler(self, why: str) -> None:
        if self._spoke or self.record.filler is not None:
            return
        self.record.filler, self.record.filler_ms = why, self.observer.elapsed_ms()
        self._say(self._adapter.phrases.filler[self._language], FILLER_CHUNK_ID)

    @property
    def _language(self) -> Language:
        return self.record.language or "en"

    async def _run(self) -> None:
        policy = self._adapter.filler
        timer = (
            asyncio.get_running_loop().call_later(policy.threshold_ms / 1000, self._filler, "observed")
            if policy is not None
            else None
        )
        try:
            stream: AsyncIterator[Any] = self._graph.astream(
                self._chat_ctx_to_state(),
                turn_config(self.observer, self._adapter.tracers),
                context=self._context,
                stream_mode=["messages", "updates"],
            )
            async for mode, payload in stream:
                if mode == "updates":
                    route = _decided_route(payload)
                    if route and route.get("calls") and policy is not None and policy.expected_slow(route):
                        self._filler("expected")
                    continue
                message, metadata = payload
                if metadata.get("langgraph_node") != SPEAKING_NODE:
                    continue
                if isinstance(message, AIMessageChunk | AIMessage) and (chunk := _to_chat_chunk(message)):
                    if not self._spoke:
                        self._spoke = True
                        if timer is not None:
                            timer.cancel()
                    self._event_ch.send_nowait(chunk)
        except asyncio.CancelledError as exc:
            self.observer.ended_by(exc)  # barge-in or a discarded preemptive run: the graph run stops here
            # LiveKit schedules a speech once its turn is committed: one never scheduled was speculative
            self.record.speculative = self._speech is not None and not self._speech.scheduled
            raise
        except Exception as exc:  # a failing graph must not mean silence
            log.error("graph failed during a turn: %s: %s", type(exc).__name__, exc, exc_info=exc)
            self.observer.ended_by(exc)
            apology = self._adapter.phrases.turn_failed[self._language]
            self.record.answer = f"{self.record.answer} {apology}".strip()  # what the caller heard
            self._say(apology)
        finally:
            if timer is not None:
                timer.cancel()
            self._adapter.turn_finished(self)


class GraphLLM(LLMAdapter[Context]):
    """A LiveKit `llm.LLM` whose every turn is one run of the voicerag graph."""

    def __init__(
        self,
        graph: VoiceGraph,
        *,
        phrases: Phrases,
        context_factory: ContextFactory = anonymous_context,
        filler: FillerPolicy | None = None,
        sinks: list[Sink] | None = None,
        tracers: Sequence[Tracer] = (),
    ) -> None:
        super().__init__(graph, stream_mode="messages")
        self.phrases = phrases  # the filler and the apology, in the caller's language
        self._context_factory = context_factory
        self.filler = filler  # None: never say a filler
        self.sinks = sinks or []  # each finished turn's record goes to these (never raising into the turn)
        self.tracers = tracers  # what watches each turn's run (LangSmith, OpenTelemetry)
        self.active: set[SpeakingNodeStream] = set()  # streams still running (tests check cancellation)

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
        try:
            context = self._context_factory(chat_ctx)
        except Exception:  # never lose a turn over identity: answer with the least privilege
            log.exception("could not build the caller's context; answering as anonymous")
            context = anonymous_context(chat_ctx)
        # LiveKit's preemptive generation may run a turn early and run it again: the runs share their lookups.
        context = dataclasses.replace(context, shares_lookups=True)
        stream = SpeakingNodeStream(self, chat_ctx=chat_ctx, conn_options=conn_options, context=context)
        self.active.add(stream)
        return stream

    def turn_finished(self, stream: SpeakingNodeStream) -> None:
        self.active.discard(stream)
        stream.observer.close()  # the record, complete, to the sinks (each guarded: never breaks a turn)


def _speech_handle() -> SpeechHandle | None:
    """The LiveKit speech this LLM call produces, when LiveKit runs it (a text-only test may not).
    LiveKit keeps it in a context variable of its own module (livekit-agents is pinned: see pyproject)."""
    from livekit.agents.voice.agent_activity import _SpeechHandleContextVar

    return _SpeechHandleContextVar.get(None)


def _decided_route(update: dict[str, Any]) -> Route | None:
    """The route, when this `updates` event is route_query deciding it."""
    values = update.get("route_query")
    return values.get("route") if isinstance(values, dict) else None


def _end_of_turn_ms(chat_ctx: ChatContext) -> float | None:
    """What LiveKit measured on the user's message (voice turns only): transcript + end-of-turn delay."""
    users = [m for m in chat_ctx.messages() if m.role == "user"]
    metrics = users[-1].metrics if users else {}
    if "end_of_turn_delay" not in metrics:
        return None
    return round((metrics.get("end_of_turn_delay", 0.0) + metrics.get("transcription_delay", 0.0)) * 1000, 2)


def _user_turn_delays(chat_ctx: ChatContext) -> tuple[float | None, float | None]:
    """LiveKit's end-of-turn and transcription delays of the user's message, each on its own (ms)."""
    users = [m for m in chat_ctx.messages() if m.role == "user"]
    metrics = users[-1].metrics if users else {}
    delays = (metrics.get("end_of_turn_delay"), metrics.get("transcription_delay"))
    return tuple(None if delay is None else round(delay * 1000, 2) for delay in delays)  # type: ignore[return-value]


def _last_user_text(chat_ctx: ChatContext) -> str:
    users = [m for m in chat_ctx.messages() if m.role == "user"]
    return users[-1].text_content or "" if users else ""
