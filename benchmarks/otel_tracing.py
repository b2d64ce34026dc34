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

import shutil
import sys
import time
from typing import Any

from benchmarks.common import DATA_DIR, ROOT, SAMPLE_KB, Result, bench_settings, print_table, stats
from benchmarks.tracing_cost import TURN_LABELS, Timed, figure_rows, paired_turns
from graph.builder import build_graph, warm_up
from graph.turn_record import TurnRecord
from retrievers.documents import load_documents
from voicerag.services import build_services
from voicerag.tracing.otel import open_otel
from voicerag.tracing.otel_spans import TurnSpans
from voicerag.tracing.otel_writer import FinishedTurn

NAME = "otel_tracing"


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
        writer = otel.writer
        build = writer.write

        def timed_write(finished: FinishedTurn) -> None:  # off the turn's path: the writer's thread
            started = time.perf_counter_ns()
            build(finished)
            writer_us.append((time.perf_counter_ns() - started) / 1000)

        writer.write = timed_write  # type: ignore[method-assign]
        await services.knowledge_base.index_documents(load_documents(sorted(SAMPLE_KB.rglob("*.md"))).documents)
        await warm_up(services)
        timed = Timed()
        handler_class = timed.subclass(TurnSpans)

        def handler(record: TurnRecord) -> TurnSpans:
            return handler_class(writer, record)  # type: ignore[call-arg,return-value]

        figures: dict[str, Any] = await paired_turns(build_graph(services), handler, timed, 40 if quick else 300)
        otel.close(10.0)
        spans = receiver.spans()
    finally:
        receiver.stop()
        await services.aclose()
        shutil.rmtree(folder, ignore_errors=True)
    roots = sum(1 for span in spans if span.name == "voicerag")
    figures |= {
        "writer_us": stats(writer_us),
        "traces_received": roots,
        "spans_per_turn": round(len(spans) / max(roots, 1), 1),
    }
    labels = {
        "handler_us": "span handler on the turn's path, µs",
        "writer_us": "spans built by the writer (its thread), µs",
        **TURN_LABELS,
    }
    print_table(
        f"otel_tracing: per turn ({roots} traces received, {figures['spans_per_turn']} spans each)",
        ["what", "p50", "p95", "n"],
        figure_rows(figures, labels),
    )
    return Result(NAME, quick, figures)
