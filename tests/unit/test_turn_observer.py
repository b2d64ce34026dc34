"""The turn observer on direct graph runs: one `TurnRecord` per turn from the run's callbacks — route,
sources, documents, first token, node times — emitted once however the run ends (answered, failed,
cancelled), masked wherever it is written. The real graph on embedded Chroma with the offline
model; the chat model is LangChain's own streaming fake; test sources have controlled delays."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from fakes.sources import named
from helpers import lingering, offline_services
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk

from graph.builder import build_graph, warm_up
from graph.context import Context
from graph.observer import TurnObserver, observing
from graph.services import Services
from graph.tracing import ROOT_RUN_NAME, TurnTraceHandler, turn_config
from graph.turn_record import TurnRecord, log_turn
from retrievers.documents import Document
from retrievers.sources.registry import SourceRegistry

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]  # embedded Chroma and a model

WARRANTY = "The Zephyr Z-9 turntable has a warranty of 7 years."
QUESTION = "How long is the warranty of the Zephyr Z-9?"
PHONE, EMAIL = "090-1234-5678", "taro.yamada@example.com"
SENSITIVE = f"{QUESTION} Call me back on {PHONE} or write to {EMAIL}."
CALLER = Context(user_id="C-101518", roles=["member"], tenant="acme", turn_id="turn-1", session_id="session-1")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base_services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    services = offline_services(tmp_path_factory.mktemp("observer"))
    docs = [
        Document(id="zephyr-warranty", title="Zephyr warranty", text=WARRANTY, lang="en", category="support"),
        Document(id="shipping", title="Shipping", text="Shipping costs 660 yen per order.", lang="en"),
    ]
    await services.knowledge_base.index_documents(docs)
    await warm_up(services)
    yield services
    await services.aclose()


@pytest.fixture
def services(base_services: Services) -> Services:
    """The module's services with a source registry of their own (test sources do not leak)."""
    return dataclasses.replace(base_services, sources=SourceRegistry(list(base_services.sources)))


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


def record_for(context: Context = CALLER) -> TurnRecord:
    return TurnRecord.for_context(context, "ask")


async def run(services: Services, question: str, sinks: list[Any], context: Context = CALLER) -> dict[str, Any]:
    graph = build_graph(services)
    with observing(record_for(context), sinks) as observer:
        return await graph.ainvoke({"messages": [HumanMessage(question)]}, {"callbacks": [observer]}, context=context)


async def test_a_lookup_turn_is_recorded_from_the_callbacks(services: Services) -> None:
    services.sources.register(named("stock", delay_s=0.05))
    records: list[TurnRecord] = []
    state = await run(services, f"{QUESTION} And the stock?", [records.append])

    (record,) = records  # emitted once
    assert (record.turn_id, record.session_id, record.user_id, record.tenant, record.roles) == (
        "turn-1", "session-1", "C-101518", "acme", ["member"],
    )  # fmt: skip
    assert record.front_door == "ask" and record.route == "lookup" and record.language == "en"
    assert record.question == state["question"] and record.answer == state["answer"]
    assert record.documents == [d["doc_id"] for d in state["graded"]] and "zephyr-warranty" in record.documents
    assert record.sources["stock"]["status"] == "ok" and record.sources["stock"]["elapsed_ms"] >= 50
    assert set(record.nodes_ms) == {"route_query", "retrieve", "call_apis", "grade_context", "generate"}
    assert record.nodes_ms["call_apis"] >= 50  # the source's delay, seen from the node's callbacks
    assert record.timings_ms == state["timings_ms"]
    assert record.first_token_ms is not None and 0 < record.first_token_ms <= record.total_ms  # type: ignore[operator]
    assert record.degraded == state["degraded"] and not (record.cancelled or record.failed or record.rate_limited)


class PacedModel(GenericFakeChatModel):
    """LangChain's streaming fake, one word every `PACE_S`."""

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in super()._astream(*args, **kwargs):
            yield chunk
            await asyncio.sleep(PACE_S)


PACE_S = 0.03


async def test_the_first_token_is_the_speaking_models_first_chunk(services: Services) -> None:
    """With a streaming chat model the first token is its first chunk, not the node's end."""
    said = "The warranty lasts seven years and repairs under warranty are free of charge."
    services.chat_model = PacedModel(messages=iter([AIMessage(said)]))
    records: list[TurnRecord] = []
    await run(services, QUESTION, [records.append])
    (record,) = records
    assert record.answer == said
    words = len(said.split())
    assert record.first_token_ms is not None and record.total_ms is not None
    assert record.total_ms - record.first_token_ms >= (words - 2) * PACE_S * 1000  # the rest of the stream


async def test_a_failed_turn_is_recorded_once_as_failed(services: Services) -> None:
    services.sources.register(named("broken", failure="extract-crash"))  # route_query itself fails
    records: list[TurnRecord] = []
    with pytest.raises(RuntimeError):
        await run(services, "Is the broken thing fine?", [records.append])
    (record,) = records
    assert record.failed == "RuntimeError" and record.degraded and record.route is None and not record.cancelled
    assert record.error and "extraction" in record.error and record.question == "Is the broken thing fine?"


async def test_a_cancelled_turn_is_recorded_once_and_nothing_runs_on(services: Services) -> None:
    slow = named("slowstock", delay_s=30)
    services.sources.register(slow)
    records: list[TurnRecord] = []
    turn = asyncio.create_task(run(services, f"{QUESTION} slowstock?", [records.append]))
    await until(lambda: bool(slow.started))
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    await asyncio.sleep(0.05)  # the shielded root-error callback, had it emitted again, would be in by now
    (record,) = records
    assert record.cancelled and record.failed is None and record.route == "lookup"
    assert "route_query" in record.nodes_ms and "generate" not in record.nodes_ms  # how far it got
    assert slow.cancelled
    await until(lambda: lingering() == [])  # (a late query vector may finish: it is kept for the next turn)


async def test_an_unowned_observer_emits_when_the_run_ends(services: Services) -> None:
    """Studio's way: the observer attached with `with_config`, nobody closes it."""
    records: list[TurnRecord] = []
    graph = build_graph(services).with_config(callbacks=[TurnObserver(record_for(), [records.append])])
    await graph.ainvoke({"question": QUESTION}, context=CALLER)
    assert len(records) == 1 and records[0].route == "lookup" and records[0].question == QUESTION


async def test_a_sink_that_fails_never_reaches_the_turn(services: Services) -> None:
    def broken(record: TurnRecord) -> None:
        raise OSError(f"disk full while writing {PHONE}")

    records: list[TurnRecord] = []
    state = await run(services, QUESTION, [broken, records.append])
    assert WARRANTY in state["answer"] and len(records) == 1  # the turn answered; the next sink still ran


async def test_the_log_line_is_masked(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    records: list[TurnRecord] = []
    with caplog.at_level(logging.INFO, logger="voicerag.turns"):
        await run(services, SENSITIVE, [records.append, log_turn])
    assert PHONE in records[0].question and EMAIL in records[0].question  # control: what was asked
    (line,) = [r for r in caplog.records if r.name == "voicerag.turns" and r.getMessage() == "turn"]
    fields = {k: v for k, v in vars(line).items() if k in records[0].masked()}
    assert fields["turn_id"] == "turn-1" and fields["route"] == "lookup" and "[PHONE]" in fields["question"]
    assert PHONE not in json.dumps(fields) and EMAIL not in json.dumps(fields)


async def test_a_tracer_sees_the_named_run_and_gets_the_finished_record(services: Services) -> None:
    """`turn_config`: the root run is `voicerag`, each tracer's handlers watch it, and a
    `TurnTraceHandler` is told the complete record once, after the owner closed the turn."""

    class Tracing(TurnTraceHandler):
        def __init__(self, record: TurnRecord) -> None:
            self.record, self.roots, self.finished = record, [], []  # type: ignore[var-annotated]

        def on_chain_start(self, serialized: Any, inputs: Any, *, parent_run_id: Any = None, **kw: Any) -> None:
            if parent_run_id is None:
                self.roots.append(kw.get("name"))

        def turn_finished(self, record: TurnRecord) -> None:
            self.finished.append((record.route, record.total_ms))

    handlers: list[Tracing] = []

    def tracer(record: TurnRecord) -> list[BaseCallbackHandler]:
        handlers.append(Tracing(record))
        return list(handlers)

    records: list[TurnRecord] = []
    sinks: list[Any] = [records.append]
    with observing(record_for(), sinks) as observer:
        await build_graph(services).ainvoke({"question": QUESTION}, turn_config(observer, [tracer]), context=CALLER)
        assert handlers[0].finished == []  # the owner has not closed the turn yet
    (handler,) = handlers
    assert handler.record is records[0] and handler.roots == [ROOT_RUN_NAME]
    assert handler.finished == [("lookup", records[0].total_ms)]
    assert sinks == [records.append]  # the caller's sinks are not changed by the tracer's
