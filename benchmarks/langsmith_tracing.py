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

import shutil
import sys
from typing import Any

from benchmarks.common import DATA_DIR, ROOT, SAMPLE_KB, Result, bench_settings, print_table
from benchmarks.tracing_cost import TURN_LABELS, Timed, figure_rows, paired_turns
from graph.builder import build_graph, warm_up
from graph.turn_record import TurnRecord
from retrievers.documents import load_documents
from voicerag.services import build_services
from voicerag.tracing.langsmith import TurnTracer, open_langsmith

NAME = "langsmith_tracing"


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
        timed = Timed()
        handler_class = timed.subclass(TurnTracer)

        def handler(record: TurnRecord) -> TurnTracer:
            return handler_class(record, tracer)  # type: ignore[call-arg,return-value]

        figures: dict[str, Any] = await paired_turns(build_graph(services), handler, timed, 40 if quick else 300)
        tracer.close(10.0)
        sent = sum(1 for run in fake.runs().values() if not run.get("parent_run_id") and run.get("end_time"))
    finally:
        fake.stop()
        await services.aclose()
        shutil.rmtree(folder, ignore_errors=True)
    figures["traces_received"] = sent
    labels = {"handler_us": "LangSmith handler on the turn's path, µs", **TURN_LABELS}
    print_table(f"langsmith_tracing: per turn ({sent} traces received)", ["what", "p50", "p95", "n"],
                figure_rows(figures, labels))  # fmt: skip
    return Result(NAME, quick, figures)
