"""Assistant(Agent): the voice agent. Its LLM step is the graph; it knows who is calling (and which
call: the session id), logs one masked record per turn (logger `voicerag.turns`) and hands it to
the session's other sinks (the audit log), and apologises when speech recognition or synthesis
fails. A tracer that wants the turn's TTS time to first byte (measured by LiveKit once the answer
is voiced, after the turn's record was emitted) is a `SpokenTurnTracer`."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Protocol, cast, runtime_checkable

from livekit.agents import Agent, FlushSentinel, ModelSettings, llm
from livekit.agents.llm.chat_context import ChatContext
from livekit.agents.voice import SpeechHandle

from agent.filler import FillerPolicy
from agent.identity import Caller, context_for
from agent.llm import FILLER_CHUNK_ID, GraphLLM
from graph.builder import VoiceGraph
from graph.context import Context
from graph.persona import Persona
from graph.tracing import Tracer
from graph.turn_record import MASKED, Sink, TurnRecord
from retrievers.language import Language

log = logging.getLogger("voicerag.turns")

KEPT_TURNS = 200  # recent turn records (masked) kept in memory


@runtime_checkable
class SpokenTurnTracer(Protocol):
    """A tracer (graph/tracing.py) that is also told a turn's TTS time to first byte, once heard."""

    def turn_spoken(self, record: TurnRecord) -> None: ...


class Assistant(Agent):
    def __init__(
        self,
        graph: VoiceGraph,
        *,
        persona: Persona,
        caller: Callable[[], Caller | None] = lambda: None,
        filler: FillerPolicy | None = None,
        session_id: str = "",
        sinks: list[Sink] | None = None,
        tracers: Sequence[Tracer] = (),
    ) -> None:
        """`session_id`: the call (the LiveKit room); `sinks`: where each turn's record goes besides
        the log line (the audit log); `tracers`: what watches each turn's run (graph/tracing.py)."""
        self._caller = caller
        self._session_id = session_id
        self._phrases = persona.phrases
        self._apology: SpeechHandle | None = None
        spoken: list[object] = [t for t in tracers if isinstance(t, SpokenTurnTracer)]
        self._spoken_tracers = cast(list[SpokenTurnTracer], spoken)
        self._unspoken: TurnRecord | None = None  # the last turn, until its answer's first audio is measured
        self.turns: deque[dict[str, Any]] = deque(maxlen=KEPT_TURNS)
        self.graph_llm = GraphLLM(
            graph,
            phrases=persona.phrases,
            context_factory=self._context,
            filler=filler,
            sinks=[self._record, *(sinks or [])],
            tracers=tracers,
        )
        # LiveKit passes the instructions to the graph as the first system message; the graph's prompts decide the rest.
        super().__init__(instructions=persona.instructions, llm=self.graph_llm)

    def _context(self, chat_ctx: ChatContext) -> Context:
        """Read the caller afresh every turn: attributes may change during a call."""
        return context_for(self._caller(), session_id=self._session_id)

    async def llm_node(
        self, chat_ctx: ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncGenerator[llm.ChatChunk | str | FlushSentinel, None]:
        """The graph's answer, with the filler as a speech segment of its own: LiveKit feeds a
        non-streaming TTS whole sentences only, and holds a short one ("少々お待ちください。") until
        more text comes, so without the flush the filler would be heard with the answer."""
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk
            if isinstance(chunk, llm.ChatChunk) and chunk.id == FILLER_CHUNK_ID:
                yield FlushSentinel()

    async def on_enter(self) -> None:
        self.session.on("error", self._on_error)
        self.session.on("conversation_item_added", self._on_item_added)

    def _on_item_added(self, event: Any) -> None:
        """LiveKit adds the answer to the chat once voiced (or cut by a barge-in), with its TTS time
        to first byte: that of the last finished turn (one pending turn at most: the next turn's
        record replaces it). A cut answer is logged as such and marked in the turn's trace."""
        item, record = getattr(event, "item", None), self._unspoken
        if record is None or getattr(item, "role", None) != "assistant":
            return
        metrics = getattr(item, "metrics", None) or {}
        interrupted = getattr(item, "interrupted", False) is True
        if "tts_node_ttfb" not in metrics and not interrupted:
            return
        self._unspoken = None
        if "tts_node_ttfb" in metrics:
            record.tts_ttfb_ms = round(metrics["tts_node_ttfb"] * 1000, 2)
        if interrupted:
            record.interrupted = True
            for kept in self.turns:
                if kept["turn_id"] == record.turn_id:
                    kept["interrupted"] = True
            log.info("turn interrupted: the caller spoke over the answer", extra={"turn_id": record.turn_id})
        for tracer in self._spoken_tracers:
            try:
                tracer.turn_spoken(record)
            except Exception as exc:  # a tracer never breaks the call
                log.warning("a tracer failed on a spoken turn: %s", type(exc).__name__)

    def _on_error(self, event: Any) -> None:
        """A speech model failed for good: say so instead of leaving the caller in silence.

        LiveKit retries first, and a recoverable error may still work out, so nothing is said for
        it. Speech recognition: the caller was not understood. Speech synthesis: the answer could
        not be voiced; the apology is a new request, which often works. LLM and graph failures are
        answered inside the turn. One apology at a time: the apology's own failure is not
        apologised for (the session closes after repeated failures, as LiveKit decides)."""
        error = getattr(event, "error", None)
        if error is None or getattr(error, "recoverable", True):
            return
        sentences = {"stt_error": self._phrases.did_not_catch, "tts_error": self._phrases.turn_failed}.get(
            getattr(error, "type", "")
        )
        if sentences is None or (self._apology is not None and not self._apology.done()):
            return
        self._apology = self.session.say(sentences[self._language()], add_to_chat_ctx=False)

    def _language(self) -> Language:
        """The caller's language when known, else the language of the call's last turn."""
        last: Language = self.turns[-1]["language"] if self.turns else "en"
        try:
            return self._context(ChatContext.empty()).language or last
        except Exception:  # an unreadable caller must not cost the caller the apology
            return last

    def _record(self, record: TurnRecord) -> None:
        self._unspoken = None if record.cancelled else record
        masked = record.masked()
        self.turns.append(masked)
        log.info("turn", extra=masked | {MASKED: True})  # one line per turn (rendered by voicerag/logs.py)
