"""early_lookups: end of speech → first token, with and without early lookups reused.

LiveKit's preemptive generation starts the graph when the transcript is stable (here: at end of
speech, t = 0), before end of turn is decided (here: `EOT_MS` later). When the final transcript
differs from the one the speculative run started on (a recognizer's formatting: "kh 300" → "KH-300"),
LiveKit discards that run and starts the final one at end of turn. Four ways, per question:

- `final only`: no preemptive generation; the run starts at end of turn;
- `discarded, no reuse`: speculative run at 0, cancelled at end of turn, final run then fetches again
  (runs that do not share their lookups, `Context.shares_lookups` false);
- `discarded, reuse`: the same, in a call: the final run awaits the speculative run's lookups;
- `adopted`: LiveKit keeps the speculative run (same transcript); its first token can only be heard
  at end of turn, so the figure is max(first token, end of turn).

The real graph over the sample knowledge base (USE embeddings), a read-only source answering every
question after `delay` ms (one slower, one faster than the end-of-turn decision) and a chat model
whose first token comes `TTFT_S` after it is called. Every question is asked once beforehand, both
forms, so query vectors and search results are cached for every way alike: what differs is the
source. First token = the first token `generate` streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from typing import Any, cast

from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import BaseModel

from benchmarks.agent_overhead import SAMPLE_QUESTIONS, FixedTTFTChatModel
from benchmarks.common import DATA_DIR, SAMPLE_KB, Result, bench_settings, log, ms_since, now, print_table, stats
from graph.builder import SPEAKING_NODE, VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.services import Services
from graph.state import InputState
from retrievers.documents import load_documents
from retrievers.language import Language
from retrievers.sources.base import Fetched, Source, SourceContext
from retrievers.sources.registry import SourceRegistry
from voicerag.services import build_services

NAME = "early_lookups"
EOT_MS = 200  # end of speech → end-of-turn decision (LiveKit's endpointing / turn detector)
TTFT_S = 0.05
DELAYS_MS = (300, 100)  # the source: slower, then faster, than the end-of-turn decision
WAYS = ("final only", "discarded, no reuse", "discarded, reuse", "adopted")


class NoParams(BaseModel):
    pass


class SlowSource(Source[NoParams]):
    """A read-only source consulted for every question, answering after `delay_s`."""

    name = "inventory"
    description = "stock levels"
    labels = {"en": "the inventory", "ja": "在庫情報"}  # noqa: RUF012
    examples = {"en": [], "ja": []}  # noqa: RUF012
    params_model = NoParams

    def __init__(self, delay_s: float) -> None:
        super().__init__(ttl_s=0, timeout_s=5.0)
        self.delay_s = delay_s
        self.fetches = 0

    def extract(self, question: str, language: Language, earlier: list[str]) -> NoParams:
        return NoParams()

    async def fetch(self, params: NoParams, ctx: SourceContext) -> Fetched:
        self.fetches += 1
        await asyncio.sleep(self.delay_s)
        return Fetched(data={"in_stock": True}, summary="It is in stock.")


def questions() -> list[str]:
    records = [json.loads(line) for line in SAMPLE_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in records if r["answerable"]]


def as_first_heard(question: str) -> str:
    """The transcript a speculative run starts on: lower case, no punctuation, as before formatting."""
    return re.sub(r"[?？。、,.!！]", "", question).lower()


async def first_token_ms(graph: VoiceGraph, question: str, ctx: Context, since: float) -> float:
    """ms from `since` to the first token `generate` streams (the run is consumed to its end)."""
    first: float | None = None
    state: InputState = {"messages": [HumanMessage(question)]}
    async for event in graph.astream(state, context=ctx, stream_mode="messages"):
        message, metadata = cast(tuple[BaseMessage, dict[str, Any]], event)
        if first is None and metadata.get("langgraph_node") == SPEAKING_NODE and message.content:
            first = ms_since(since)
    assert first is not None, f"no answer streamed for {question!r}"
    return first


async def turn(graph: VoiceGraph, question: str, way: str, call: str) -> float:
    """End of speech → first token of the run LiveKit would play, in ms."""
    ctx = Context(session_id=call, shares_lookups=way != "discarded, no reuse")  # as the voice front door
    started = now()
    if way == "final only":
        await asyncio.sleep(EOT_MS / 1000)
        return await first_token_ms(graph, question, ctx, started)
    speculative = asyncio.create_task(first_token_ms(graph, as_first_heard(question), ctx, started))
    if way == "adopted":
        return max(await speculative, float(EOT_MS))
    await asyncio.sleep(EOT_MS / 1000)
    speculative.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await speculative
    return await first_token_ms(graph, question, ctx, started)


async def measure(services: Services, delay_ms: int, asked: list[str]) -> dict[str, Any]:
    source = SlowSource(delay_ms / 1000)
    graph = build_graph(dataclasses.replace(services, sources=SourceRegistry([source])))
    timings: dict[str, list[float]] = {way: [] for way in WAYS}
    fetches: dict[str, int] = dict.fromkeys(WAYS, 0)
    for number, question in enumerate(asked):
        for way in WAYS if number % 2 == 0 else WAYS[::-1]:  # alternating order: no way always goes first
            before = source.fetches
            timings[way].append(await turn(graph, question, way, call=f"bench-{delay_ms}-{number}-{way}"))
            fetches[way] += source.fetches - before
    saved = [a - b for a, b in zip(timings["discarded, no reuse"], timings["discarded, reuse"], strict=True)]
    return {
        "source_ms": delay_ms,
        "end_of_turn_ms": EOT_MS,
        "ttft_ms": TTFT_S * 1000,
        "first_token_ms": {way: stats(values) for way, values in timings.items()},
        "fetches_per_turn": {way: round(count / len(asked), 2) for way, count in fetches.items()},
        "saved_by_reuse_ms": stats(saved),
    }


async def sample_kb() -> Services:
    data_dir = DATA_DIR / NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    no_sources = data_dir / "sources.yaml"
    no_sources.write_text("", encoding="utf-8")
    services = build_services(
        bench_settings(
            data_dir,
            embeddings="use",
            collection="bench-sample-kb-use",
            sources_file=no_sources,
            database_queries_file=None,
        )
    )
    await services.knowledge_base.index_documents(load_documents([SAMPLE_KB]).documents, prune_sources=True)
    services.chat_model = FixedTTFTChatModel(ttft_s=TTFT_S)
    await warm_up(services)
    return services


async def run(quick: bool) -> Result:
    services = await sample_kb()
    try:
        asked = questions()[: 4 if quick else None]
        graph = build_graph(services)
        for question in asked:  # vectors and search results cached for every way alike
            for form in (question, as_first_heard(question)):
                await first_token_ms(graph, form, Context(), now())
        log(f"{len(asked)} questions x {len(WAYS)} ways x {len(DELAYS_MS)} source delays")
        results = [await measure(services, delay, asked) for delay in DELAYS_MS]
    finally:
        await services.aclose()

    for result in results:
        print_table(
            f"early_lookups: end of speech → first token, ms (source {result['source_ms']} ms, end of turn "
            f"{EOT_MS} ms after end of speech, TTFT {TTFT_S * 1000:.0f} ms; {len(asked)} questions, sample KB)",
            ["way", "p50", "p95", "mean", "fetches/turn"],
            [
                [way, s["p50"], s["p95"], s["mean"], result["fetches_per_turn"][way]]
                for way, s in result["first_token_ms"].items()
            ]
            + [["saved by reuse (paired)", *(result["saved_by_reuse_ms"][k] for k in ("p50", "p95", "mean")), ""]],
        )
    return Result(NAME, quick, {"questions": len(asked), "results": results})
