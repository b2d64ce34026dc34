"""What the tracing benchmarks share (`langsmith_tracing`, `otel_tracing`): a handler class whose
callbacks are timed, and the paired loop of observed turns with and without it.

Each turn is observed (a `TurnObserver`, as every front door runs it) and, in alternating order, the
same turn is run again with the tracer's handler too. Reported per turn: the time spent inside the
handler's callbacks and `turn_finished` (what the turn waits for), and the whole turn with and
without it with their paired difference (noisy: the turn itself varies by more).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

from benchmarks.common import ROOT, Progress, stats
from graph.builder import VoiceGraph
from graph.context import Context
from graph.observer import observing
from graph.tracing import Tracer, turn_config
from graph.turn_record import TurnRecord

SAMPLE_QUESTIONS = ROOT / "tests" / "data" / "sample_kb_questions.jsonl"
CALLER = Context(user_id="C-101518", roles=["member"], tenant="acme", session_id="bench")
CALLBACKS = (
    "on_chain_start", "on_chain_end", "on_chain_error", "on_chat_model_start", "on_llm_start", "on_llm_end",
    "on_llm_new_token", "on_retriever_start", "on_retriever_end", "on_tool_start", "on_tool_end", "turn_finished",
)  # fmt: skip
WARM_UP_TURNS = 5

Handler = Callable[[TurnRecord], BaseCallbackHandler]  # one turn's handler of the tracer measured


class Timed:
    """Subclasses of a handler class whose callbacks add their time to `spent_ns`."""

    def __init__(self) -> None:
        self.spent_ns = 0

    def subclass(self, base: type[BaseCallbackHandler]) -> type[BaseCallbackHandler]:
        def timed(name: str) -> Callable[..., Any]:
            original = getattr(base, name)

            def call(handler: BaseCallbackHandler, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter_ns()
                try:
                    return original(handler, *args, **kwargs)
                finally:
                    self.spent_ns += time.perf_counter_ns() - started

            return call

        methods = {name: timed(name) for name in CALLBACKS if hasattr(base, name)}
        return type(f"Timed{base.__name__}", (base,), methods)


async def turn_ms(graph: VoiceGraph, question: str, context: Context, handler: Handler | None) -> float:
    started = time.perf_counter()
    tracers: list[Tracer] = [lambda record: [handler(record)]] if handler else []
    with observing(TurnRecord.for_context(context, "ask"), []) as observer:
        await graph.ainvoke({"messages": [HumanMessage(question)]}, turn_config(observer, tracers), context=context)
    return (time.perf_counter() - started) * 1000


async def paired_turns(graph: VoiceGraph, handler: Handler, timed: Timed, turns: int) -> dict[str, Any]:
    """`turns` sample questions each asked without and with the handler (alternating which goes
    first), after warm-up turns; the figures, p50/p95."""
    lines = SAMPLE_QUESTIONS.read_text(encoding="utf-8").splitlines()
    asked = [json.loads(line)["question"] for line in lines if line.strip()]
    for question in asked[:WARM_UP_TURNS]:
        await turn_ms(graph, question, CALLER, handler)
    plain_ms, traced_ms, differences, handler_us = [], [], [], []
    progress = Progress("turns", turns)
    for i in range(turns):
        question, context = asked[i % len(asked)], dataclasses.replace(CALLER, turn_id=f"bench-{i}")
        timed.spent_ns = 0
        if i % 2:
            without = await turn_ms(graph, question, context, None)
            with_ = await turn_ms(graph, question, context, handler)
        else:
            with_ = await turn_ms(graph, question, context, handler)
            without = await turn_ms(graph, question, context, None)
        plain_ms.append(without)
        traced_ms.append(with_)
        differences.append(with_ - without)
        handler_us.append(timed.spent_ns / 1000)
        progress(i + 1)
    return {
        "handler_us": stats(handler_us),
        "turn_plain_ms": stats(plain_ms),
        "turn_traced_ms": stats(traced_ms),
        "paired_difference_ms": stats(differences),
    }


def figure_rows(figures: dict[str, Any], labels: dict[str, str]) -> list[list[Any]]:
    """Rows (what, p50, p95, n) of the figures `labels` names, in its order."""
    return [[label, figures[key]["p50"], figures[key]["p95"], figures[key]["n"]] for key, label in labels.items()]


TURN_LABELS = {
    "turn_plain_ms": "observed turn, ms",
    "turn_traced_ms": "observed + traced turn, ms",
    "paired_difference_ms": "paired difference, ms",
}
