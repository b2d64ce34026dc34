"""capacity: how many concurrent calls one worker process carries while our share of each turn
stays ≤ 100 ms p95, and the CPU a turn costs.

N simulated calls in this one process, each a text-mode `AgentSession` with our `Assistant` over the
product graph (sample knowledge base, USE embeddings; caches warm: every question asked once first),
each asking a question every `INTERVAL_S` (± jitter) for `WINDOW_S`: two in three from the knowledge
base, one in three a live source — the company database (the seeded SQLite: stock) or the weather
(a local Open-Meteo stand-in, `tests/fakes/open_meteo.py`, through the product's HTTP layer and its
cache). The chat model is
the fixed fake (first token after `TTFT_MS`); our share = `session.run` → the first chunk out of
`llm_node`, minus that TTFT: routing, embedding, search, grading, the adapter and LiveKit's text
pipeline, all competing for the same event loop and two cores. Audio (VAD, turn detector) is not
simulated here: it adds per call a steady Silero VAD load, measured apart in `voice_e2e`.
"""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import time
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.llm import ChatContext

from benchmarks.agent_overhead import FixedTTFTChatModel, TimedAssistant, direct_turn, questions, sample_kb
from benchmarks.common import ROOT, Result, log, print_table, stats
from graph.builder import build_graph, warm_up

NAME = "capacity"
TTFT_MS = 250
INTERVAL_S = 3.0
TARGET_P95_MS = 100.0
LIVE_SHARE = 1 / 3  # of the questions: a live source rather than the knowledge base
LIVE_QUESTIONS = [  # each routed to a source by the rules (checked when the benchmark starts)
    "Is the Kumo Halo in stock?",
    "KH-300の在庫はありますか？",
    "What's the weather in Sapporo?",
    "大阪の天気はどうですか？",
]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def call(graph: Any, persona: Any, asked: list[str], until: float, seed: int) -> list[tuple[bool, float]]:
    """One simulated call: a question every INTERVAL_S ± 30 % until `until`; per turn, whether it
    asked a live source and our share, ms."""
    rng = random.Random(seed)
    assistant = TimedAssistant(graph, persona)
    shares: list[tuple[bool, float]] = []
    async with AgentSession() as session:
        await session.start(assistant)
        await asyncio.sleep(rng.uniform(0, INTERVAL_S))  # calls do not start in step
        while time.monotonic() < until:
            await assistant.update_chat_ctx(ChatContext.empty())
            assistant.first_chunk_at = None
            live = rng.random() < LIVE_SHARE
            started = time.perf_counter()
            await session.run(user_input=rng.choice(LIVE_QUESTIONS if live else asked))
            if assistant.first_chunk_at is not None:
                shares.append((live, (assistant.first_chunk_at - started) * 1000 - TTFT_MS))
            await asyncio.sleep(max(0.0, INTERVAL_S * rng.uniform(0.7, 1.3) - (time.perf_counter() - started)))
    return shares


async def level(graph: Any, persona: Any, asked: list[str], calls: int, window_s: float) -> dict[str, Any]:
    cpu_before, started = cpu_s(), time.monotonic()
    results = await asyncio.gather(*(call(graph, persona, asked, started + window_s, seed) for seed in range(calls)))
    turns = [turn for result in results for turn in result]
    shares = [share for _, share in turns]
    cpu = cpu_s() - cpu_before
    return {
        "calls": calls,
        "turns": len(shares),
        "live_turns": sum(live for live, _ in turns),
        "our_share_ms": stats(shares),
        "live_share_ms": stats([share for live, share in turns if live] or [0.0]),
        "cpu_ms_per_turn": round(cpu * 1000 / max(1, len(shares)), 1),
        "cpu_busy": round(cpu / (time.monotonic() - started), 2),  # cores in use, of 2
    }


async def run(quick: bool) -> Result:
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' Open-Meteo stand-in (a local server)
    from fakes.open_meteo import OpenMeteoServer

    meteo = OpenMeteoServer().start()
    services = await sample_kb(weather_api_url=meteo.url, geocoding_api_url=meteo.url)
    try:
        for question in LIVE_QUESTIONS:  # each one really reaches its source
            state = await graph_state(build_graph(services), question)
            if not state.get("api_results"):
                raise RuntimeError(f"capacity: {question!r} was not routed to a live source")
        services.chat_model = FixedTTFTChatModel(ttft_s=TTFT_MS / 1000)
        graph = build_graph(services)
        await warm_up(services)
        asked = [q for q in questions() if len(q) > 12]  # knowledge-base questions, not small talk
        for question in asked + LIVE_QUESTIONS:  # warm caches, as in voice_e2e: the path, not the first embedding
            await direct_turn(graph, question, services.persona.instructions)
        window_s = 10.0 if quick else 20.0
        levels = (1, 8, 24) if quick else (1, 8, 32, 64, 128, 256)
        rows = []
        for calls in levels:
            log(f"{calls} concurrent calls for {window_s:.0f} s")
            rows.append(await level(graph, services.persona, asked, calls, window_s))
            if rows[-1]["our_share_ms"]["p95"] > 3 * TARGET_P95_MS:
                break  # well past the target: larger N only takes longer
    finally:
        await services.aclose()
        meteo.stop()
    fitting = [r["calls"] for r in rows if r["our_share_ms"]["p95"] <= TARGET_P95_MS]
    print_table(
        f"capacity: concurrent text calls on one process, a question every ~{INTERVAL_S:.0f} s each, "
        f"{LIVE_SHARE:.0%} of them live sources "
        f"(our share = first chunk − {TTFT_MS} ms TTFT; target p95 ≤ {TARGET_P95_MS:.0f} ms)",
        [
            "calls",
            "turns (live)",
            "our share p50",
            "p95",
            "live-source turns p50",
            "p95",
            "CPU ms / turn",
            "cores busy",
        ],
        [
            [
                r["calls"],
                f"{r['turns']} ({r['live_turns']})",
                r["our_share_ms"]["p50"],
                r["our_share_ms"]["p95"],
                r["live_share_ms"]["p50"],
                r["live_share_ms"]["p95"],
                r["cpu_ms_per_turn"],
                r["cpu_busy"],
            ]
            for r in rows
        ],
    )
    return Result(NAME, quick, {"levels": rows, "largest_within_target": max(fitting, default=0)})


async def graph_state(graph: Any, question: str) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    from agent.identity import context_for

    return dict(await graph.ainvoke({"messages": [HumanMessage(question)]}, context=context_for(None)))
