"""The graph's external-source step: concurrent, bounded by the turn's deadline, always truthful.

The sources here are small test classes of the real `Source` contract with controlled timing and
failures (the HTTP stack and the real sources have tests of their own); the graph, the knowledge
base (embedded Chroma, `use` model) and `run_source` are the real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fakes.sources import TimedSource, named
from fakes.tool_calling import ToolCallingFakeChatModel, tool_calls
from helpers import PHRASES, lingering, offline_services
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.documents import Document
from retrievers.sources.registry import SourceRegistry
from retrievers.sources.unavailable import UnavailableSource

pytestmark = pytest.mark.integration


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """Extractive answers: no chat model, so the answers below are the graph's own sentences."""
    built = offline_services(tmp_path)
    await built.knowledge_base.index_documents(
        [Document(id="w", title="Warranty", text="The KH-300 has a two-year warranty.", lang="en")]
    )
    await warm_up(built)
    yield built
    await built.aclose()


def graph_with(services: Services, *sources: TimedSource, deadline_ms: int = 1500) -> VoiceGraph:
    services.sources = SourceRegistry(sources)
    services.options = dataclasses.replace(services.options, deadline_ms=deadline_ms)
    return build_graph(services)


async def ask(graph: VoiceGraph, question: str) -> dict[str, Any]:
    return await graph.ainvoke({"messages": [HumanMessage(question)]}, context=Context())


async def test_sources_run_concurrently_not_one_after_another(services: Services) -> None:
    a, b, c = named("alpha", delay_s=0.1), named("beta", delay_s=0.2), named("gamma", delay_s=0.3)
    state = await ask(graph_with(services, a, b, c), "alpha beta gamma?")
    assert [r["status"] for r in state["api_results"]] == ["ok", "ok", "ok"]
    assert state["route"]["sources"] == ["knowledge_base", "alpha", "beta", "gamma"]
    assert max(a.started + b.started + c.started) - min(a.started + b.started + c.started) < 0.1
    pre_generation = state["timings_ms"]["pre_generation"]
    assert 300 <= pre_generation < 300 * 1.1 + 40, state["timings_ms"]  # the slowest, not the sum (600)
    assert set(state["timings_ms"]["sources"]) == {"alpha", "beta", "gamma"}


async def test_a_source_past_the_deadline_is_cancelled_and_named_in_the_answer(services: Services) -> None:
    slow = named("alpha", delay_s=10.0)
    started = time.monotonic()
    state = await ask(graph_with(services, slow, deadline_ms=400), "alpha: what is the warranty on the KH-300?")
    elapsed_ms = (time.monotonic() - started) * 1000
    assert elapsed_ms < 400 + 150, elapsed_ms
    assert len(slow.cancelled) == 1
    (result,) = state["api_results"]
    assert result["status"] == "timeout" and result["elapsed_ms"] < 450
    assert state["answer"].startswith("The test source took too long to answer just now")  # not "unreachable"
    assert "two-year warranty" in state["answer"]  # the knowledge base answered what it could
    assert state["degraded"] is True
    assert lingering() == []  # the cancelled lookup is gone, not left running (control: test_voice_session)


async def test_failing_and_crashing_sources_become_results_and_the_turn_still_answers(services: Services) -> None:
    ok, failing, crashing = named("alpha"), named("beta", failure="fetch-error"), named("gamma", failure="crash")
    state = await ask(graph_with(services, ok, failing, crashing), "alpha beta gamma")
    statuses = {r["source"]: r["status"] for r in state["api_results"]}
    assert statuses == {"alpha": "ok", "beta": "error", "gamma": "error"}
    assert "The alpha value is 42." in state["answer"]
    assert "the test source" in state["answer"]  # says what could not be fetched
    assert state["problems"] == [{"source": "beta", "kind": "unreachable"}, {"source": "gamma", "kind": "unreachable"}]


async def test_an_answer_from_a_source_alone_needs_no_document(services: Services) -> None:
    state = await ask(graph_with(services, named("alpha")), "alpha?")
    assert state["graded"] == [] and state["answer"] == "The alpha value is 42."
    assert state["answer"] != PHRASES.not_found["en"]


async def test_a_turn_without_sources_skips_the_step(services: Services) -> None:
    source = named("alpha")
    state = await ask(graph_with(services, source), "What is the warranty on the KH-300?")
    assert state["api_results"] == [] and source.started == []
    assert state["timings_ms"]["call_apis"] == 0.0


async def test_cancelling_the_turn_cancels_the_sources(services: Services) -> None:
    slow = named("alpha", delay_s=10.0)
    task = asyncio.create_task(ask(graph_with(services, slow), "alpha?"))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (time.monotonic() - started) < 0.2  # a barge-in stops the lookups at once, not after 10 s
    assert len(slow.cancelled) == 1 and lingering() == []


async def test_an_llm_router_chooses_sources_and_their_arguments(services: Services) -> None:
    decision = tool_calls(
        ("search_knowledge_base", {"query": "alpha?"}),
        ("alpha", {"word": "from-the-router"}),
        ("no-such-source", {}),  # dropped: not a tool it was offered
    )
    services.router_model = ToolCallingFakeChatModel(messages=iter([decision]))
    graph = graph_with(services, named("alpha"))
    state = await graph.ainvoke({"messages": [HumanMessage("tell me alpha")]}, context=Context(router="llm"))
    assert state["route"]["reason"] == "llm" and state["route"]["sources"] == ["knowledge_base", "alpha"]
    (result,) = state["api_results"]
    assert result["data"] == {"word": "from-the-router"} and result["status"] == "ok"


def test_tool_schemas_are_generated_from_the_sources() -> None:
    schema = named("alpha").tool_schema()
    assert schema["function"]["name"] == "alpha"
    assert schema["function"]["parameters"]["properties"] == {"word": {"title": "Word", "type": "string"}}
    assert schema["function"]["parameters"]["required"] == ["word"]


async def test_a_new_turn_on_a_thread_forgets_the_last_turns_problems_and_timings(services: Services) -> None:
    """Checkpointed threads (Studio) keep the state between turns: each turn starts from nothing."""
    services.sources = SourceRegistry([named("alpha"), named("beta", failure="fetch-error", delay_s=0.05)])
    graph = build_graph(services, checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    first = await graph.ainvoke({"messages": [HumanMessage("beta?")]}, thread, context=Context())
    assert first["problems"] == [{"source": "beta", "kind": "unreachable"}]
    assert "beta" in first["timings_ms"]["sources"]
    second = await graph.ainvoke({"messages": [HumanMessage("alpha?")]}, thread, context=Context())
    assert second["problems"] == [] and "couldn't reach" not in second["answer"]
    assert set(second["timings_ms"]["sources"]) == {"alpha"}


async def test_each_failure_is_said_as_what_it_was(services: Services) -> None:
    """Unreachable is not slow is not switched off: the caller hears which one it was."""
    services.sources = SourceRegistry(
        [
            named("beta", failure="fetch-error"),
            named("gamma", delay_s=5.0),
            UnavailableSource(
                {"name": "parcels", "labels": {"en": "parcel tracking"}, "keywords": {"en": ["parcel"]}}, "KEY not set"
            ),
        ]
    )
    services.options = dataclasses.replace(services.options, deadline_ms=1000)
    state = await ask(build_graph(services), "beta gamma parcel?")
    # The knowledge base may itself be late on a loaded machine (said truthfully too): not this test's subject.
    kinds = {p["source"]: p["kind"] for p in state["problems"] if p["source"] != "knowledge_base"}
    assert kinds == {"beta": "unreachable", "gamma": "timeout", "parcels": "unavailable"}
    answer = state["answer"]
    assert "I couldn't reach the test source just now" in answer
    assert "The test source took too long to answer" in answer
    assert "Parcel tracking isn't available right now." in answer


class RunRecorder(BaseCallbackHandler):
    """What a tracer sees of a turn's child runs: retrievals and tool calls, with their parents."""

    def __init__(self) -> None:
        self.started: dict[UUID, tuple[str, str, UUID | None]] = {}  # run -> (type, name, parent)
        self.ended: dict[UUID, Any] = {}
        self.failed: dict[UUID, BaseException] = {}

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, **kw: Any) -> None:
        self.started[run_id] = ("retriever", kw.get("name", ""), kw.get("parent_run_id"))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kw: Any) -> None:
        self.ended[run_id] = documents

    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID, **kw: Any) -> None:
        self.started[run_id] = ("tool", kw.get("name", ""), kw.get("parent_run_id"))

    def on_tool_end(self, output: Any, *, run_id: UUID, **kw: Any) -> None:
        self.ended[run_id] = output

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.failed[run_id] = error


async def test_retrieval_and_each_source_call_are_child_runs_a_tracer_sees(services: Services) -> None:
    recorder = RunRecorder()
    graph = graph_with(services, named("alpha", delay_s=0.01), named("beta", delay_s=5.0), deadline_ms=300)
    state = await graph.ainvoke(
        {"messages": [HumanMessage("alpha beta: what is the warranty on the KH-300?")]},
        {"callbacks": [recorder]},
        context=Context(),
    )
    kinds = sorted((kind, name) for kind, name, _ in recorder.started.values())
    assert kinds == [("retriever", "knowledge_base"), ("tool", "alpha"), ("tool", "beta")]
    assert all(parent is not None for *_, parent in recorder.started.values())  # inside their node's run
    (retrieval,) = [run for run, (kind, *_) in recorder.started.items() if kind == "retriever"]
    (document,) = recorder.ended[retrieval]
    assert document.id == "w" and document.metadata["title"] == "Warranty"
    assert "two-year warranty" in document.page_content and document.metadata["score"] == state["documents"][0]["score"]
    outcomes = {recorder.started[run][1]: output for run, output in recorder.ended.items() if run != retrieval}
    assert outcomes["alpha"]["status"] == "ok" and outcomes["beta"]["status"] == "timeout"  # a result, not an error
    assert not recorder.failed
