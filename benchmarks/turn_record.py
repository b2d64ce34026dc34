"""turn_record: what the per-turn record costs a turn — the observer on the run's callbacks, and its
sinks (the masked log line, the audit log) — issue 9 item 6 / issue 10 item 1.

The compiled graph on the sample knowledge base (no chat model: extractive answers), after warm-up
turns, on the sample questions, each asked twice in a row in alternating order: plain
(`graph.ainvoke`) and observed (a `TurnObserver` in the run's callbacks, its record emitted to the
sinks). Reported, p50/p95 per turn:
- the time spent inside the observer's callbacks (timed around each one, summed per turn);
- each sink: the log line (`log_turn`: masking + structlog's JSON rendering, to /dev/null) and the
  audit sink (`audit_record` with its masking + `AuditWriter.write`, SQLite in a temporary folder);
- the whole turn, plain and observed, and their paired difference (noisy: the turn itself varies by
  more than what is measured; the figures above are the precise ones).
Target (issue 9): writing the audit adds ≤ 1 ms p95 to a turn.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from benchmarks.common import DATA_DIR, SAMPLE_KB, Progress, Result, bench_settings, print_table, stats
from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.observer import TurnObserver
from graph.turn_record import Sink, TurnRecord, log_turn
from retrievers.documents import load_documents
from voicerag.audit import AuditStore, AuditWriter
from voicerag.audit.database import sqlite_url
from voicerag.audit.turns import audit_sink
from voicerag.logs import configure_logging
from voicerag.services import build_services

NAME = "turn_record"
SAMPLE_QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "sample_kb_questions.jsonl"
CALLBACKS = ("on_chain_start", "on_chain_end", "on_chain_error", "on_chat_model_start", "on_llm_new_token")
CALLER = Context(user_id="C-101518", roles=["member"], tenant="acme", session_id="bench")


class TimedObserver(TurnObserver):
    """The observer, with the time spent in its callbacks added up."""

    spent_ns = 0


def _timed(name: str) -> Callable[..., Any]:
    original = getattr(TurnObserver, name)

    def timed(self: TimedObserver, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return original(self, *args, **kwargs)
        finally:
            self.spent_ns += time.perf_counter_ns() - started

    return timed


for _name in CALLBACKS:
    setattr(TimedObserver, _name, _timed(_name))


def timed_sink(sink: Sink, costs: list[float]) -> Sink:
    def run(record: TurnRecord) -> None:
        started = time.perf_counter_ns()
        sink(record)
        costs.append((time.perf_counter_ns() - started) / 1000)

    return run


def questions() -> list[str]:
    lines = SAMPLE_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


async def plain(graph: VoiceGraph, question: str, context: Context) -> float:
    started = time.perf_counter()
    await graph.ainvoke({"messages": [HumanMessage(question)]}, context=context)
    return (time.perf_counter() - started) * 1000


async def observed(graph: VoiceGraph, question: str, context: Context, sinks: list[Sink]) -> tuple[float, float]:
    """The turn's ms, and the µs spent in the observer's callbacks (as `observing` runs a turn)."""
    started = time.perf_counter()
    observer = TimedObserver(TurnRecord.for_context(context, "ask"), sinks, hold=True)
    try:
        await graph.ainvoke({"messages": [HumanMessage(question)]}, {"callbacks": [observer]}, context=context)
    finally:
        observer.close()
    return (time.perf_counter() - started) * 1000, observer.spent_ns / 1000


async def run(quick: bool) -> Result:
    folder = DATA_DIR / NAME
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: ASYNC230, SIM115 (closed below)
    services = build_services(bench_settings(folder / "data", embeddings="use"))
    writer = AuditWriter(AuditStore(sqlite_url(folder / "audit.sqlite")))
    try:
        await services.knowledge_base.index_documents(load_documents(sorted(SAMPLE_KB.rglob("*.md"))).documents)
        await warm_up(services)
        graph = build_graph(services)
        configure_logging("INFO", "json")
        logging.getLogger().handlers[0].setStream(devnull)  # type: ignore[attr-defined]  # rendered, not shown
        asked = questions()
        turns = 40 if quick else 300
        for question in asked[:5]:  # warm-up turns (keyword index, caches)
            await plain(graph, question, CALLER)
        log_costs: list[float] = []
        audit_costs: list[float] = []
        sinks = [timed_sink(log_turn, log_costs), timed_sink(audit_sink(writer), audit_costs)]
        plain_ms, observed_ms, differences, callbacks_us = [], [], [], []
        progress = Progress("turns", turns)
        for i in range(turns):
            question = asked[i % len(asked)]
            context = dataclasses.replace(CALLER, turn_id=f"bench-{i}")
            if i % 2:  # alternate the order: neither kind always runs on a warmer cache
                without = await plain(graph, question, context)
                with_, spent = await observed(graph, question, context, sinks)
            else:
                with_, spent = await observed(graph, question, context, sinks)
                without = await plain(graph, question, context)
            plain_ms.append(without)
            observed_ms.append(with_)
            differences.append(with_ - without)
            callbacks_us.append(spent)
            progress(i + 1)
    finally:
        lost = await writer.aclose(timeout_s=60)
        root.handlers, root.level = handlers, level
        devnull.close()
        await services.aclose()
        shutil.rmtree(folder, ignore_errors=True)
    assert lost == 0, f"{lost} audit records lost"
    both = [a + b for a, b in zip(log_costs, audit_costs, strict=True)]
    figures = {
        "callbacks_us": stats(callbacks_us),
        "log_line_us": stats(log_costs),
        "audit_sink_us": stats(audit_costs),
        "sinks_us": stats(both),
        "observer_and_sinks_us": stats([a + b for a, b in zip(callbacks_us, both, strict=True)]),
        "turn_plain_ms": stats(plain_ms),
        "turn_observed_ms": stats(observed_ms),
        "paired_difference_ms": stats(differences),
    }
    print_table(
        "turn_record: on the turn's path, µs per turn (target: audit ≤ 1000 µs p95)",
        ["what", "p50", "p95", "n"],
        [
            [label, figures[key]["p50"], figures[key]["p95"], figures[key]["n"]]
            for key, label in (
                ("callbacks_us", "observer callbacks"),
                ("log_line_us", "sink: log line (masked, JSON)"),
                ("audit_sink_us", "sink: audit (masked, queued)"),
                ("observer_and_sinks_us", "observer + both sinks"),
            )
        ],
    )
    print_table(
        "turn_record: whole turns, ms (extractive, sample KB)",
        ["what", "p50", "p95", "n"],
        [
            [label, figures[key]["p50"], figures[key]["p95"], figures[key]["n"]]
            for key, label in (
                ("turn_plain_ms", "plain ainvoke"),
                ("turn_observed_ms", "observed + sinks"),
                ("paired_difference_ms", "paired difference"),
            )
        ],
    )
    return Result(NAME, quick, figures)
