"""otel_tracing: what OpenTelemetry spans cost a turn on its path — issue 10 item 3.

The compiled graph on the sample knowledge base (no chat model: extractive answers; the sample
database source, no HTTP sources), after warm-up turns, on the sample questions: each turn observed
(a `TurnObserver`, as every front door runs it) and, in alternating order, the same turn also traced
by the span handler (`voicerag/tracing/otel_spans.py::TurnSpans`) on the product's provider
(`open_otel`: batch processor, OTLP/HTTP export in the background to the tests' local receiver).
Reported, p50/p95 per turn: the time spent inside the handler's callbacks and `turn_finished`
(noting the spans-to-be: what the turn waits for), the time the `SpanWriter` thread takes to build
and end them (off the turn's path, but holding the GIL), the spans per turn, and the whole turn
with and without it with their paired difference (noisy: the turn itself varies by more).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

from benchmarks.common import DATA_DIR, ROOT, SAMPLE_KB, Progress, Result, bench_settings, print_table, stats
from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.observer import observing
from graph.tracing import Tracer, turn_config
from graph.turn_record import TurnRecord
from retrievers.documents import load_documents
from voicerag.services import build_services
from voicerag.tracing.otel import open_otel
from voicerag.tracing.otel_spans import TurnSpans
from voicerag.tracing.otel_writer import FinishedTurn, SpanWriter

NAME = "otel_tracing"
SAMPLE_QUESTIONS = ROOT / "tests" / "data" / "sample_kb_questions.jsonl"
CALLER = Context(user_id="C-101518", roles=["member"], tenant="acme", session_id="bench")
CALLBACKS = (
    "on_chain_start", "on_chain_end", "on_chain_error", "on_chat_model_start", "on_llm_end", "on_llm_new_token",
    "on_retriever_start", "on_retriever_end", "on_tool_start", "on_tool_end", "turn_finished",
)  # fmt: skip
SPENT: list[int] = [0]  # ns inside the handler during the current turn


def _timed(name: str) -> Callable[..., Any]:
    original = getattr(TurnSpans, name)

    def timed(self: TurnSpans, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return original(self, *args, **kwargs)
        finally:
            SPENT[0] += time.perf_counter_ns() - started

    return timed


class TimedTurnSpans(TurnSpans):
    pass


for _name in CALLBACKS:
    setattr(TimedTurnSpans, _name, _timed(_name))


async def turn(graph: VoiceGraph, question: str, context: Context, tracer: SpanWriter | None) -> float:
    started = time.perf_counter()

    def traced(record: TurnRecord) -> list[BaseCallbackHandler]:
        assert tracer is not None
        return [TimedTurnSpans(tracer, record)]

    tracers: list[Tracer] = [traced] if tracer else []
    with observing(TurnRecord.for_context(context, "ask"), []) as observer:
        await graph.ainvoke({"messages": [HumanMessage(question)]}, turn_config(observer, tracers), context=context)
    return (time.perf_counter() - started) * 1000


async def run(quick: bool) -> Result:
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' OTLP receiver (a local recording server)
    from fakes.otlp_receiver import OtlpReceiver

    folder = DATA_DIR / NAME
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    settings = bench_settings(folder / "data", embeddings="use", sources_file=None)
    services = build_services(settings)
    receiver = OtlpReceiver().start()
    writer_us: list[float] = []
    try:
        otel = open_otel(settings.model_copy(update={"otel_exporter_otlp_endpoint": receiver.url}))
        tracer = otel.writer
        build = tracer.write

        def timed_write(finished: FinishedTurn) -> None:  # off the turn's path: the writer's thread
            started = time.perf_counter_ns()
            build(finished)
            writer_us.append((time.perf_counter_ns() - started) / 1000)

        tracer.write = timed_write  # type: ignore[method-assign]
        await services.knowledge_base.index_documents(load_documents(sorted(SAMPLE_KB.rglob("*.md"))).documents)
        await warm_up(services)
        graph = build_graph(services)
        lines = SAMPLE_QUESTIONS.read_text(encoding="utf-8").splitlines()
        asked = [json.loads(line)["question"] for line in lines if line.strip()]
        for question in asked[:5]:
            await turn(graph, question, CALLER, tracer)
        turns = 40 if quick else 300
        plain_ms, traced_ms, differences, handler_us = [], [], [], []
        progress = Progress("turns", turns)
        for i in range(turns):
            question, context = asked[i % len(asked)], dataclasses.replace(CALLER, turn_id=f"bench-{i}")
            SPENT[0] = 0
            if i % 2:
                without = await turn(graph, question, context, None)
                with_ = await turn(graph, question, context, tracer)
            else:
                with_ = await turn(graph, question, context, tracer)
                without = await turn(graph, question, context, None)
            plain_ms.append(without)
            traced_ms.append(with_)
            differences.append(with_ - without)
            handler_us.append(SPENT[0] / 1000)
            progress(i + 1)
        otel.close(10.0)
        spans = receiver.spans()
    finally:
        receiver.stop()
        await services.aclose()
        shutil.rmtree(folder, ignore_errors=True)
    roots = sum(1 for span in spans if span.name == "voicerag")
    figures: dict[str, Any] = {
        "handler_us": stats(handler_us),
        "writer_us": stats(writer_us),
        "turn_plain_ms": stats(plain_ms),
        "turn_traced_ms": stats(traced_ms),
        "paired_difference_ms": stats(differences),
        "traces_received": roots,
        "spans_per_turn": round(len(spans) / max(roots, 1), 1),
    }
    print_table(
        f"otel_tracing: per turn ({roots} traces received, {figures['spans_per_turn']} spans each)",
        ["what", "p50", "p95", "n"],
        [
            [label, figures[key]["p50"], figures[key]["p95"], figures[key]["n"]]
            for key, label in (
                ("handler_us", "span handler on the turn's path, µs"),
                ("writer_us", "spans built by the writer (its thread), µs"),
                ("turn_plain_ms", "observed turn, ms"),
                ("turn_traced_ms", "observed + traced turn, ms"),
                ("paired_difference_ms", "paired difference, ms"),
            )
        ],
    )
    return Result(NAME, quick, figures)
