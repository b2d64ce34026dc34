"""Assistant(Agent): the voice agent. Its LLM step is the graph; it knows who is calling, keeps
one metrics record per turn, and apologises when speech recognition fails."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from livekit.agents import Agent
from livekit.agents.llm.chat_context import ChatContext
from livekit.agents.metrics import EOUMetrics

from agent.identity import Caller, context_for
from agent.llm import FillerPolicy, GraphLLM, TurnReport
from graph.builder import VoiceGraph
from graph.prompts import DID_NOT_CATCH
from graph.state import Context

log = logging.getLogger("voicerag.turns")

INSTRUCTIONS = (
    "You are the voice assistant of Kumo Audio. You answer in the caller's language, Japanese or English, "
    "from the company's knowledge base and live systems."
)  # LiveKit passes this to the graph as the first system message; the graph's prompts decide the rest
KEPT_TURNS = 200  # recent turn reports kept in memory for exporters


class Assistant(Agent):
    def __init__(
        self,
        graph: VoiceGraph,
        *,
        caller: Callable[[], Caller | None] = lambda: None,
        filler: FillerPolicy | None = None,
    ) -> None:
        self._caller = caller
        self._last_eou: EOUMetrics | None = None
        self.turns: deque[dict[str, Any]] = deque(maxlen=KEPT_TURNS)
        self.graph_llm = GraphLLM(graph, context_factory=self._context, filler=filler, on_turn=self._record)
        super().__init__(instructions=INSTRUCTIONS, llm=self.graph_llm)

    def _context(self, chat_ctx: ChatContext) -> Context:
        """Read the caller afresh every turn: attributes may change during a call."""
        return context_for(self._caller())

    async def on_enter(self) -> None:
        self.session.on("metrics_collected", self._on_metrics)
        self.session.on("error", self._on_error)

    def _on_metrics(self, event: Any) -> None:
        if isinstance(event.metrics, EOUMetrics):
            self._last_eou = event.metrics

    def _on_error(self, event: Any) -> None:
        """Speech recognition failed: say so instead of waiting in silence (LLM and graph failures
        are answered inside the turn; a failing TTS is retried by LiveKit)."""
        source = type(getattr(event, "source", None)).__module__
        if ".stt" in source or "stt" in type(getattr(event, "source", None)).__name__.lower():
            language = (self._context(ChatContext.empty()).language) or "en"
            self.session.say(DID_NOT_CATCH[language], add_to_chat_ctx=False)

    def _record(self, report: TurnReport) -> None:
        record = asdict(report)
        if self._last_eou is not None and report.first_token_ms is not None:
            # End of the user's speech → first answer token: LiveKit's end-of-turn decision, then ours.
            eou_ms = (self._last_eou.end_of_utterance_delay + self._last_eou.transcription_delay) * 1000
            record["end_of_speech_to_first_token_ms"] = round(eou_ms + report.first_token_ms, 2)
            self._last_eou = None
        record["cache_hits"] = sum(1 for s in report.sources.values() if s.get("cached"))
        self.turns.append(record)
        log.info(json.dumps({"event": "turn", **record}, ensure_ascii=False))
