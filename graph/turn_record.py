"""`TurnRecord`: what one turn did, the same for every front door (voice, `ask`, `chat`, Studio).

Filled by `graph/observer.py::TurnObserver` from the graph run's callbacks (and, for voice, by the
voice stream with what only it knows: LiveKit's end-of-turn delay, the filler); handed, complete,
to sinks: the per-turn log line (`log_turn` here), the audit log (`voicerag/audit/turns.py`), and
later metrics and traces. Model usage: `tokens` ({"input", "output", "total"}: every chat-model
call of the turn — router, grader, answer — as the model reported it), `cost_usd` (priced from
`LLM_PRICES`; None when a call's model has no price or reported no usage: unknown, not free),
`llm_calls` (how many calls). It holds the raw question and answer: what a sink emits or keeps is
`masked()` or `masked_texts` (question, answer and error masked by `retrievers.masking`, once per
turn whatever the number of sinks: masking is the costly part of a record, ~0.1 ms a text).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from graph.context import Context
from retrievers.language import Language
from retrievers.masking import mask

log = logging.getLogger("voicerag.turns")

FrontDoor = Literal["voice", "ask", "chat", "studio"]
Sink = Callable[["TurnRecord"], None]  # takes a finished record; must not raise (errors are logged)

MASKED = "_masked"  # in a log call's `extra`: the fields are masked already (voicerag/logs.py skips them)
RATE_LIMITED = ("refused", "rate_limited")  # the route (kind, reason) of a turn refused by the rate limit


@dataclass
class TurnRecord:
    """One turn. Times in ms from the turn's start (the graph run's start, or the voice stream's)."""

    turn_id: str
    session_id: str
    user_id: str
    front_door: FrontDoor
    tenant: str | None = None
    roles: list[str] = field(default_factory=list)
    language: Language | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    question: str = ""  # raw: only `masked()` leaves the process
    answer: str = ""  # raw; for a cancelled turn, what was streamed before it stopped
    route: str | None = None  # the route's kind; None: the turn ended before it was routed
    route_reason: str | None = None
    rate_limited: bool = False
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {status, elapsed_ms, cached}
    documents: list[str] = field(default_factory=list)  # ids of the documents the answer may use (graded)
    problems: list[dict[str, Any]] = field(default_factory=list)  # lookups that gave nothing, and why
    degraded: bool = False
    timings_ms: dict[str, Any] = field(default_factory=dict)  # what the nodes measured (state.timings_ms)
    nodes_ms: dict[str, float] = field(default_factory=dict)  # each node's run, start to end (callbacks)
    first_token_ms: float | None = None  # the first answer text the speaking node produced
    total_ms: float | None = None
    failed: str | None = None  # the exception type when the turn failed
    error: str | None = None  # its message (masked in `masked()`)
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0, "total": 0})
    cost_usd: float | None = 0.0  # None: some call's cost is unknown (model not in LLM_PRICES, no usage)
    llm_calls: int = 0
    cancelled: bool = False  # stopped before it ended: a barge-in, Ctrl-C, a discarded speculative run
    speculative: bool = False  # voice: a preemptive run LiveKit discarded unvoiced (cancelled, not a barge-in)
    # Voice only (LiveKit's measurements and the filler), None elsewhere.
    end_of_turn_ms: float | None = None  # end of speech → transcript + end-of-turn decision
    end_of_turn_delay_ms: float | None = None  # end of speech → the end-of-turn decision (LiveKit)
    transcription_delay_ms: float | None = None  # end of speech → the final transcript (LiveKit)
    tts_ttfb_ms: float | None = None  # text to TTS → its first audio; measured after the record is emitted
    # the caller spoke over the answer after the graph had finished (LiveKit cut its audio); noted,
    # like tts_ttfb_ms, once LiveKit adds the answer to the chat (a barge-in during the run: `cancelled`)
    interrupted: bool = False
    filler: str | None = None  # "expected" or "observed" when a filler was said
    filler_ms: float | None = None

    @classmethod
    def for_context(cls, context: Context, front_door: FrontDoor) -> TurnRecord:
        return cls(
            turn_id=context.turn_id,
            session_id=context.session_id,
            user_id=context.user_id,
            front_door=front_door,
            tenant=context.tenant,
            roles=list(context.roles),
            language=context.language,
        )

    def take_state(self, state: dict[str, Any]) -> None:
        """What the graph's state says about the turn (partial while it runs, final at its end)."""
        route = state.get("route")
        if route:
            self.route, self.route_reason = route.get("kind"), route.get("reason")
            self.rate_limited = (self.route, self.route_reason) == RATE_LIMITED
        if state.get("language"):
            self.language = state["language"]
        if state.get("question"):
            self.question = state["question"]
        if state.get("answer"):
            self.answer = state["answer"]
        for result in state.get("api_results") or []:
            self.sources[result["source"]] = {k: result[k] for k in ("status", "elapsed_ms", "cached") if k in result}
        if "graded" in state:
            self.documents = list(dict.fromkeys(d["doc_id"] for d in state["graded"] or []))
        if "problems" in state:
            self.problems = [dict(p) for p in state["problems"] or []]
        if "degraded" in state:
            self.degraded = self.degraded or bool(state["degraded"])
        if state.get("timings_ms"):
            self.timings_ms.update(state["timings_ms"])

    @cached_property
    def masked_texts(self) -> dict[str, str | None]:
        """The free texts a caller's words reach, masked; computed once, when a sink first asks (the
        turn is over by then). Ids, names of sources and figures are kept as given."""
        texts = {"question": self.question, "answer": self.answer, "error": self.error}
        return {name: mask(text) if text else text for name, text in texts.items()}

    def masked(self) -> dict[str, Any]:
        """The JSON-friendly record with every string masked, plus the figures operators look at
        first: what the log line, the audit log (and later traces) carry."""
        record = asdict(self)
        record["started_at"] = self.started_at.isoformat()
        if self.end_of_turn_ms is not None and self.first_token_ms is not None:
            # End of the user's speech → first answer token: LiveKit's end-of-turn decision, then ours.
            record["end_of_speech_to_first_token_ms"] = round(self.end_of_turn_ms + self.first_token_ms, 2)
        record["cache_hits"] = sum(1 for s in self.sources.values() if s.get("cached"))
        return record | self.masked_texts

    def add_usage(self, input_tokens: int, output_tokens: int, cost: float | None) -> None:
        """One chat-model call's usage; an unknown cost makes the turn's cost unknown."""
        self.llm_calls += 1
        self.tokens["input"] += input_tokens
        self.tokens["output"] += output_tokens
        self.tokens["total"] += input_tokens + output_tokens
        self.cost_usd = None if cost is None or self.cost_usd is None else round(self.cost_usd + cost, 8)

    def usage(self) -> dict[str, Any]:
        """The turn's model usage (the `usage` of `voicerag ask --json`)."""
        return {"tokens": dict(self.tokens), "cost_usd": self.cost_usd, "llm_calls": self.llm_calls}


def log_turn(record: TurnRecord) -> None:
    """The per-turn log line (logger `voicerag.turns`, rendered by voicerag/logs.py): one per turn."""
    log.info("turn", extra=record.masked() | {MASKED: True})


def emit(record: TurnRecord, sinks: list[Sink]) -> None:
    """Hand `record` to every sink; a failing sink is logged and never reaches the turn."""
    for sink in sinks:
        try:
            sink(record)
        except Exception as exc:
            log.warning("a turn record sink failed: %s: %s", type(exc).__name__, mask(str(exc)))
