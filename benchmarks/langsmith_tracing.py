"""langsmith_tracing: what a LangSmith trace costs a turn on its path — issue 10 item 2.

The compiled graph on the sample knowledge base (no chat model: extractive answers), after warm-up
turns, on the sample questions: each turn observed (a `TurnObserver`, as every front door runs it)
and, in alternating order, the same turn also traced by the LangSmith handler (`TurnTracer`: the
product's masked client, sending in the background to the local fake LangSmith of the tests).
Reported, p50/p95 per turn: the time spent inside the handler's callbacks and `turn_finished` (run
building, masking, serialising, queueing: what the turn waits for), and the whole turn with and
without it with their paired difference (noisy: the turn itself varies by more).
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
from voicerag.tracing.langsmith import LangSmithTracer, TurnTracer, open_langsmith

NAME = "langsmith_tracing"
SAMPLE_QUESTIONS = ROOT / "tests" / "data" / "sample_kb_questions.jsonl"
CALLER = Context(user_id="C-101518", roles=["member"], tenant="acme", session_id="bench")
CALLBACKS = (
    "on_chain_start", "on_chain_end", "on_chain_error", "on_chat_model_start", "on_llm_start", "on_llm_end",
    "on_llm_new_token", "on_retriever_start", "on_retriever_end", "on_tool_start", "on_tool_end", "turn_finished",
)  # fmt: skip
SPENT: list[int] = [0]  # ns inside the handler during the current turn


def _timed(name: str) -> Callable[..., Any]:
    original = getattr(TurnTracer, name)

    def timed(self: TurnTracer, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return original(self, *args, **kwargs)
        finally:
            SPENT[0] += time.perf_counter_ns() - started

    return timed


class TimedTurnTracer(TurnTracer):
    pass


for _name in CALLBACKS:
    setattr(TimedTurnTracer, _name, _timed(_name))


async def turn(graph: VoiceGraph, question: str, context: Context, tracer: LangSmithTracer | None) -> float:
    started = time.perf_counter()

    def traced(record: TurnRecord) -> list[BaseCallbackHandler]:
        assert tracer is not None
        return [TimedTurnTracer(record, tracer)]

    tracers: list[Tracer] = [traced] if tracer else []
    with observing(TurnRecord.for_context(context, "ask"), []) as observer:
        await graph.ainvoke({"messages": [HumanMessage(question)]}, turn_config(observer, tracers), context=context)
    return (time.perf_counter() - started) * 1000


async def run(quick: bool) -> Result:
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' fake LangSmith (a local recording server)
    from fakes.langsmith_server import FakeLangSmith

    folder = DATA_DIR / NAME
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    settings = bench_settings(folder / "data", embeddings="use")
    services = build_services(settings)
    fake = FakeLangSmith().start()
    try:
        traced_settings = settings.model_copy(
            update={"langsmith_tracing": True, "langsmith_endpoint": fake.url, "trace_user_id_key": None}
        )
        tracer = open_langsmith(traced_settings)
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
        tracer.close(10.0)
        sent = sum(1 for run in fake.runs().values() if not run.get("parent_run_id") and run.get("end_time"))
    finally:
        fake.stop()
        await services.aclose()
        shutil.rmtree(folder, ignore_errors=True)
    figures: dict[str, Any] = {
        "handler_us": stats(handler_us),
        "turn_plain_ms": stats(plain_ms),
        "turn_traced_ms": stats(traced_ms),
        "paired_difference_ms": stats(differences),
        "traces_received": sent,
    }
    print_table(
        f"langsmith_tracing: per turn ({sent} traces received)",
        ["what", "p50", "p95", "n"],
        [
            [label, figures[key]["p50"], figures[key]["p95"], figures[key]["n"]]
            for key, label in (
                ("handler_us", "LangSmith handler on the turn's path, µs"),
                ("turn_plain_ms", "observed turn, ms"),
                ("turn_traced_ms", "observed + traced turn, ms"),
                ("paired_difference_ms", "paired difference, ms"),
            )
        ],
    )
    return Result(NAME, quick, figures)
