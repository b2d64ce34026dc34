"""agent_overhead: what the LiveKit agent and our adapter add to the first token, and whether a
long call slows down or grows (target: ≤ 10 ms p95 added; flat across 200 turns).

The real graph over the sample knowledge base (USE embeddings: little CPU noise), answering with
a fake chat model whose first token comes after a fixed 50 ms (`FixedTTFTChatModel`). Each
question runs both ways, in alternating order:
- direct: `graph.astream(..., stream_mode="messages")` → the first `generate` token;
- agent: an `AgentSession` in text mode (no STT, TTS or VAD, as `console --text`) running
  `Assistant(graph, persona=...)`: `session.run(user_input=q)` → the first chunk out of `Agent.llm_node`, the
  moment LiveKit's pipeline has text it would hand to TTS. Shown alongside: our adapter's own
  `TurnRecord.first_token_ms` (stream created → the speaking model's first token, by the observer) and LiveKit's
  `LLMMetrics.ttft` (stream created → first chunk through its channel).
The agent's chat context is reset before each question, so both run the graph on the same input
(instructions + question); overhead = agent − direct, per question. Caches (query vectors, search
results) are warm for both: every question runs once each way first. What is measured is what
the agent adds, not retrieval.

Then one session of 200 turns without reset (LiveKit resends the whole chat every turn), cycling
through 20 questions so every 20-turn window asks the same ones: first token per turn, chat
items and process RSS every 20 turns, first vs last 20 turns. A throwaway session asks the cycle
first, so the follow-up rewrites of the search query are cached in every window.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from livekit.agents import AgentSession
from livekit.agents.llm import ChatContext
from livekit.agents.metrics import LLMMetrics

from agent.assistant import Assistant
from agent.identity import context_for
from benchmarks.common import (
    DATA_DIR,
    SAMPLE_KB,
    Progress,
    Result,
    bench_settings,
    log,
    ms_since,
    now,
    print_table,
    stats,
)
from graph.builder import SPEAKING_NODE, VoiceGraph, build_graph, warm_up
from graph.persona import Persona
from graph.services import Services
from retrievers.documents import load_documents
from voicerag.services import build_services

NAME = "agent_overhead"
TTFT_S = 0.05
SAMPLE_QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "sample_kb_questions.jsonl"
SMALL_TALK = ["Hello!", "Thank you.", "こんにちは", "ありがとうございます"]


class FixedTTFTChatModel(BaseChatModel):
    """A streaming chat model: the first token after exactly `ttft_s`, then the rest at once."""

    ttft_s: float = TTFT_S
    reply: str = "This is the fake chat model's answer, streamed token by token after a fixed wait."

    @property
    def _llm_type(self) -> str:
        return "fixed-ttft-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply))])

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.sleep(self.ttft_s)
        for token in re.findall(r"\s*\S+", self.reply):  # the base class reports each token to callbacks
            yield ChatGenerationChunk(message=AIMessageChunk(content=token))


class TimedAssistant(Assistant):
    """The production Assistant, noting when LiveKit receives the turn's first text chunk."""

    def __init__(self, graph: VoiceGraph, persona: Persona) -> None:
        super().__init__(graph, persona=persona)
        self.first_chunk_at: float | None = None
        self.llm_ttft_ms: float | None = None
        self.graph_llm.on("metrics_collected", self._llm_metrics)

    def _llm_metrics(self, metrics: LLMMetrics) -> None:
        self.llm_ttft_ms = metrics.ttft * 1000 if metrics.ttft >= 0 else None

    async def llm_node(self, chat_ctx: Any, tools: Any, model_settings: Any) -> AsyncIterator[Any]:
        async for chunk in super().llm_node(chat_ctx, tools, model_settings):
            if self.first_chunk_at is None and (isinstance(chunk, str) or getattr(chunk, "delta", None)):
                self.first_chunk_at = now()
            yield chunk


def rss_mb() -> float:
    """Resident memory now (Linux), else the peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def sample_kb(**settings: Any) -> Services:
    """The sample knowledge base on USE, the seeded SQLite company database, no declared sources;
    `settings` override the rest (capacity points the weather source at a local server)."""
    data_dir = DATA_DIR / NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    no_sources = data_dir / "sources.yaml"  # no declared sources: nothing to reach, no real-time feed
    no_sources.write_text("", encoding="utf-8")
    services = build_services(
        bench_settings(
            data_dir, embeddings="use", collection="bench-sample-kb-use", sources_file=no_sources, **settings
        )
    )
    await services.knowledge_base.index_documents(load_documents([SAMPLE_KB]).documents, prune_sources=True)
    services.chat_model = FixedTTFTChatModel()
    return services


def questions() -> list[str]:
    """Questions that reach the chat model: the sample KB's answerable ones, then small talk
    (an unanswerable one is answered "not found" without a model, in a few ms)."""
    records = [json.loads(line) for line in SAMPLE_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in records if r["answerable"]] + SMALL_TALK


async def direct_turn(graph: VoiceGraph, question: str, instructions: str) -> float | None:
    """ms from `astream` to the first token `generate` streams (the whole run is consumed)."""
    first: float | None = None
    started = now()
    state = {"messages": [SystemMessage(instructions), HumanMessage(question)]}
    async for message, metadata in graph.astream(state, context=context_for(None), stream_mode="messages"):
        if first is None and metadata.get("langgraph_node") == SPEAKING_NODE and message.text:
            first = ms_since(started)
    return first


async def agent_turn(session: AgentSession, assistant: TimedAssistant, question: str) -> dict[str, Any]:
    assistant.first_chunk_at = assistant.llm_ttft_ms = None
    started = now()
    await session.run(user_input=question)
    total = ms_since(started)
    report = assistant.turns[-1]
    return {
        "first_token": (assistant.first_chunk_at - started) * 1000 if assistant.first_chunk_at else None,
        "adapter": report["first_token_ms"],
        "llm_ttft": assistant.llm_ttft_ms,
        "total": total,
        "route": report["route"],
        "failed": report["failed"] or report["cancelled"],
    }


async def overhead(graph: VoiceGraph, persona: Persona, asked: list[str]) -> dict[str, Any]:
    assistant = TimedAssistant(graph, persona)
    async with AgentSession() as session:
        await session.start(assistant)

        async def agent(question: str) -> dict[str, Any]:
            await assistant.update_chat_ctx(ChatContext.empty())  # instructions + this question only
            return await agent_turn(session, assistant, question)

        for question in asked:  # warm-up: caches, code paths
            await direct_turn(graph, question, persona.instructions)
            await agent(question)
        pairs = []
        progress = Progress("direct/agent pairs", len(asked))
        for number, question in enumerate(asked):
            if number % 2:
                via_agent, direct = await agent(question), await direct_turn(graph, question, persona.instructions)
            else:
                direct, via_agent = await direct_turn(graph, question, persona.instructions), await agent(question)
            pairs.append({"direct": direct, **via_agent})
            progress(number + 1)
    timed = [p for p in pairs if p["direct"] is not None and p["first_token"] is not None]
    column = {key: [p[key] for p in timed if p[key] is not None] for key in ("direct", "adapter", "llm_ttft")}
    return {
        "pairs": len(pairs),
        "timed": len(timed),
        "small_talk": sum(p["route"] == "small_talk" for p in timed),
        "failed": sum(bool(p["failed"]) for p in pairs),
        "direct": stats(column["direct"]),
        "adapter_first_token_ms": stats(column["adapter"]),
        "livekit_llm_ttft": stats(column["llm_ttft"]),
        "agent": stats([p["first_token"] for p in timed]),
        "overhead": stats([p["first_token"] - p["direct"] for p in timed]),
        "adapter_minus_direct": stats([p["adapter"] - p["direct"] for p in timed if p["adapter"] is not None]),
    }


async def long_session(graph: VoiceGraph, persona: Persona, asked: list[str], turns: int, every: int) -> dict[str, Any]:
    """`turns` turns cycling through `every` questions (so every window asks the same ones)."""
    cycle = [q for q in asked if q not in SMALL_TALK][: every - 2] + SMALL_TALK[:2]
    sequence = [cycle[i % every] for i in range(turns)]
    assistant = TimedAssistant(graph, persona)
    async with AgentSession() as warm_session:  # the cycle once: follow-up rewrites are cached too
        await warm_session.start(assistant)
        for question in sequence[: every + 1]:
            await agent_turn(warm_session, assistant, question)
    assistant = TimedAssistant(graph, persona)
    records, checkpoints = [], []
    gc.collect()
    rss_start = rss_mb()
    progress = Progress("one session", turns)
    async with AgentSession() as session:
        await session.start(assistant)
        for number, question in enumerate(sequence, start=1):
            records.append(await agent_turn(session, assistant, question))
            progress(number)
            if number % every == 0:
                gc.collect()
                window = records[-every:]
                checkpoints.append(
                    {
                        "turn": number,
                        "chat_items": len(assistant.chat_ctx.items),
                        "rss_mb": round(rss_mb(), 1),
                        "first_token_p50": stats([r["first_token"] for r in window if r["first_token"]])["p50"],
                        "total_p50": stats([r["total"] for r in window])["p50"],
                    }
                )
        open_streams = len(assistant.graph_llm.active)

    def window(part: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "first_token": stats([r["first_token"] for r in part if r["first_token"] is not None]),
            "adapter": stats([r["adapter"] for r in part if r["adapter"] is not None]),
            "total": stats([r["total"] for r in part]),
        }

    return {
        "turns": turns,
        "first": window(records[:every]),
        "last": window(records[-every:]),
        "rss_start_mb": round(rss_start, 1),
        "rss_growth_mb": round(checkpoints[-1]["rss_mb"] - checkpoints[0]["rss_mb"], 1),
        "open_streams_after": open_streams,
        "failed": sum(bool(r["failed"]) for r in records),
        "checkpoints": checkpoints,
    }


async def run(quick: bool) -> Result:
    services = await sample_kb()
    try:
        graph = build_graph(services)
        await warm_up(services)
        asked = questions()
        pairs_asked = asked if quick else asked * 5
        turns, every = (40, 10) if quick else (200, 20)
        log(f"{len(pairs_asked)} direct/agent pairs, then {turns} turns in one session")
        first = await overhead(graph, services.persona, pairs_asked)
        long = await long_session(graph, services.persona, asked, turns, every)
    finally:
        await services.aclose()

    rows = [
        ["direct: graph.astream → first generate token", first["direct"]],
        ["adapter: TurnRecord.first_token_ms", first["adapter_first_token_ms"]],
        ["LiveKit LLMMetrics.ttft", first["livekit_llm_ttft"]],
        ["agent: session.run → first chunk out of llm_node", first["agent"]],
        ["overhead: agent − direct (paired)", first["overhead"]],
        ["  of which adapter − direct (paired)", first["adapter_minus_direct"]],
    ]
    print_table(
        f"agent_overhead: first token, ms (fake chat model, TTFT {TTFT_S * 1000:.0f} ms; sample KB, USE; "
        f"{first['timed']} questions, {first['small_talk']} small talk, {first['failed']} failed; "
        "target: overhead p95 ≤ 10 ms)",
        ["ms", "p50", "p95", "mean"],
        [[label, s["p50"], s["p95"], s["mean"]] for label, s in rows],
    )
    print_table(
        f"agent_overhead: one session, {long['turns']} turns (first vs last {every})",
        ["ms", "first p50", "first p95", "last p50", "last p95"],
        [
            [
                label,
                long["first"][key]["p50"],
                long["first"][key]["p95"],
                long["last"][key]["p50"],
                long["last"][key]["p95"],
            ]
            for key, label in (
                ("first_token", "session.run → first chunk"),
                ("adapter", "TurnRecord.first_token_ms"),
                ("total", "session.run total"),
            )
        ],
    )
    print_table(
        f"agent_overhead: every {every} turns (RSS at start {long['rss_start_mb']} MB; "
        f"{long['open_streams_after']} adapter streams left open, {long['failed']} turns failed)",
        ["turn", "chat items", "RSS MB", "first token p50", "run total p50"],
        [[c["turn"], c["chat_items"], c["rss_mb"], c["first_token_p50"], c["total_p50"]] for c in long["checkpoints"]],
    )
    return Result(NAME, quick, {"chat_model_ttft_ms": TTFT_S * 1000, "overhead": first, "long_session": long})
