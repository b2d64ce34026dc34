"""Early lookups: a run that repeats an earlier run's question reuses its lookups (graph/lookup_reuse.py).

LiveKit's preemptive generation runs the graph on the stable transcript and runs it again, cancelling
the first, when the final transcript differs even in case or punctuation. Here the graph is run the
same way — a speculative run, discarded or finished, then the final one — over the real knowledge base
(embedded Chroma, `use` model) and a `TimedSource`, and the lookups are counted where they happen.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from fakes.sources import TimedSource, named
from helpers import lingering, offline_services
from langchain_core.messages import HumanMessage

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.documents import Document
from retrievers.sources.registry import SourceRegistry
from retrievers.turn.admission import TurnAdmission
from retrievers.turn.reuse import LookupReuse, normalised

pytestmark = pytest.mark.integration
on_module_loop = pytest.mark.asyncio(loop_scope="module")  # the loop the module's services live on

CALL = Context(user_id="u1", roles=["member"], tenant="acme", session_id="room-1", shares_lookups=True)
QUESTION = "Is the stock fine for the KH-300?"
SPECULATIVE = "is the stock fine for the kh300"  # the same question, as a preflight transcript has it


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base_services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    built = offline_services(tmp_path_factory.mktemp("early"))
    await built.knowledge_base.index_documents(
        [Document(id="w", title="Warranty", text="The KH-300 has a two-year warranty.", lang="en")]
    )
    await warm_up(built)
    yield built
    await built.aclose()


@dataclasses.dataclass
class Lookups:
    """The graph over the module's services, with its own registry and reuse cache, counting searches."""

    graph: VoiceGraph
    services: Services
    stock: TimedSource
    searches: list[str]

    async def ask(self, question: str, ctx: Context = CALL) -> dict[str, Any]:
        return await self.graph.ainvoke({"messages": [HumanMessage(question)]}, context=ctx)


@pytest_asyncio.fixture(loop_scope="module")
async def lookups(base_services: Services, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Lookups]:
    stock = named("stock", delay_s=0.3)
    services = dataclasses.replace(
        base_services, sources=SourceRegistry([stock]), lookups=LookupReuse(10.0, orphan_grace_s=0.05)
    )
    searches: list[str] = []
    search: Callable[..., Awaitable[Any]] = services.knowledge_base.search

    async def counted(query: str, **kwargs: Any) -> Any:
        searches.append(query)
        return await search(query, **kwargs)

    monkeypatch.setattr(services.knowledge_base, "search", counted)
    yield Lookups(build_graph(services), services, stock, searches)
    assert lingering() == []


async def discarded(run: asyncio.Task[Any], after_s: float) -> None:
    """Cancel `run` after `after_s`, as LiveKit discards a speculative generation."""
    await asyncio.sleep(after_s)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run


def test_a_question_is_the_same_however_it_was_transcribed() -> None:
    assert normalised(QUESTION) == normalised(SPECULATIVE) == normalised(" IS the stock, fine for the ＫＨ－３００ ?!")
    assert normalised("KH-300の保証は？") == normalised("kh300 の 保証は") != normalised("KH-300の価格は？")


@on_module_loop
async def test_a_discarded_speculative_run_still_pays_for_the_final_one(lookups: Lookups) -> None:
    """The first run is cancelled while its source and search are in flight; the final run awaits them."""
    speculative = asyncio.create_task(lookups.ask(SPECULATIVE))
    await discarded(speculative, after_s=0.1)
    assert len(lookups.stock.started) == 1 and lookups.stock.cancelled == []  # still running for the next run

    state = await lookups.ask(QUESTION)

    assert len(lookups.stock.started) == 1 and lookups.stock.cancelled == []  # fetched once, never cut
    assert lookups.searches == [SPECULATIVE]  # the knowledge base searched once, by the first run
    (result,) = state["api_results"]
    assert result["status"] == "ok" and result["cached"] is True  # from the speculative run's call
    assert "The stock value is 42." in state["answer"]
    assert [d["doc_id"] for d in state["documents"]] == ["w"] and not state["keyword_only"]
    assert lookups.services.lookups is not None
    assert lookups.services.lookups.reused == 4  # admission, route, search, stock


@on_module_loop
async def test_a_restarted_run_counts_once_against_the_rate_limit(lookups: Lookups) -> None:
    """Two turns a minute: the speculative run and its restart are one turn, so a second question is
    still answered; the third is refused. Another caller's limit is their own."""
    lookups.services.admission = TurnAdmission(max_question_chars=1000, per_user="2/minute")
    speculative = asyncio.create_task(lookups.ask(SPECULATIVE))
    await discarded(speculative, after_s=0.1)
    first = await lookups.ask(QUESTION)
    second = await lookups.ask("How long is the warranty of the KH-300?")
    third = await lookups.ask("And the stock in Osaka?")

    assert [s["route"]["kind"] for s in (first, second)] == ["lookup", "lookup"]
    assert third["route"]["kind"] == "refused"


@on_module_loop
async def test_a_finished_run_repeated_reuses_its_lookups(lookups: Lookups) -> None:
    first = await lookups.ask(SPECULATIVE)
    second = await lookups.ask(QUESTION)

    assert len(lookups.stock.started) == 1 and len(lookups.searches) == 1
    assert [r["cached"] for r in first["api_results"] + second["api_results"]] == [False, True]
    assert first["answer"] == second["answer"] and first["documents"] == second["documents"]


@on_module_loop
@pytest.mark.parametrize(
    ("ctx", "question"),
    [
        (dataclasses.replace(CALL, user_id="u2"), QUESTION),  # another caller in the same room
        (dataclasses.replace(CALL, roles=["staff"]), QUESTION),  # other roles
        (dataclasses.replace(CALL, tenant="other"), QUESTION),  # another tenant
        (dataclasses.replace(CALL, session_id="room-2"), QUESTION),  # another call
        (dataclasses.replace(CALL, session_id=""), QUESTION),  # no conversation named: never shared
        (dataclasses.replace(CALL, shares_lookups=False), QUESTION),  # a text door: never shared
    ],
    ids=["user", "roles", "tenant", "session", "no-session", "not-shared"],
)
async def test_nothing_is_reused_across_callers_calls_or_questions(
    lookups: Lookups, ctx: Context, question: str
) -> None:
    await lookups.ask(QUESTION, CALL if ctx.session_id and ctx.shares_lookups else ctx)
    state = await lookups.ask(question, ctx)

    assert len(lookups.stock.started) == 2 and len(lookups.searches) == 2
    assert [caller.user_id for caller in lookups.stock.callers] == [CALL.user_id, ctx.user_id]
    assert state["api_results"][0]["cached"] is False


@on_module_loop
async def test_another_question_searches_again_but_shares_an_identical_source_call(lookups: Lookups) -> None:
    """A source's answer depends on its parameters, the caller and the language, not on the wording:
    the same call is the same lookup. The search is of the question, so another question searches."""
    await lookups.ask(QUESTION)
    other = await lookups.ask("Is the stock fine for the KH-500?")

    assert lookups.searches == [QUESTION, "Is the stock fine for the KH-500?"]
    assert len(lookups.stock.started) == 1 and other["api_results"][0]["cached"] is True


@on_module_loop
async def test_a_failed_lookup_is_fetched_again(lookups: Lookups) -> None:
    lookups.stock.failure = "fetch-error"
    failed = await lookups.ask(QUESTION)
    lookups.stock.failure = None
    state = await lookups.ask(QUESTION)

    assert failed["api_results"][0]["status"] == "error" and state["api_results"][0]["status"] == "ok"
    assert len(lookups.stock.started) == 2 and len(lookups.searches) == 1  # the search succeeded: reused


@on_module_loop
async def test_a_lookup_nobody_comes_back_for_is_cancelled(lookups: Lookups) -> None:
    """A speculative run discarded for another question ("Is the stock" → "Is the stock fine?"):
    its lookups stop soon after, not at their own timeout."""
    speculative = asyncio.create_task(lookups.ask("Is the stock"))
    await discarded(speculative, after_s=0.1)
    await asyncio.sleep(0.1)  # the grace (0.05 s here) has passed

    assert len(lookups.stock.started) == 1 and len(lookups.stock.cancelled) == 1
    assert lookups.services.lookups is not None and len(lookups.services.lookups) < 4  # the cancelled one dropped
    state = await lookups.ask("Is the stock fine?")
    assert state["api_results"][0]["status"] == "ok" and len(lookups.stock.started) == 2
