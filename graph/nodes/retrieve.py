"""retrieve: hybrid search of the knowledge base for the turn's standalone question, as the caller.

The caller's roles and tenant (`Context`) become the search's `Viewer`: the knowledge base leaves out,
inside both of its signals, every document the caller may not see (`retrievers/access.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from langgraph.runtime import Runtime

from graph.context import Context
from graph.lookup_reuse import reuse_or_fetch
from graph.nodes.child_runs import traced_search
from graph.nodes.common import Node, describe, elapsed_ms
from graph.services import Services
from graph.state import Problem, ProblemKind, State
from retrievers.access import Viewer
from retrievers.knowledge_base.hits import SearchHit
from retrievers.language import Language
from retrievers.turn.deadline import as_timeout, deadline_at, remaining
from retrievers.turn.reuse import normalised

log = logging.getLogger(__name__)

KEYWORD_RESERVE_S = 0.25  # of the turn's budget kept for the keyword search when the vector is late


def viewer_of(ctx: Context) -> Viewer:
    """Who searches, as access control sees them."""
    return Viewer.of(ctx.roles, ctx.tenant)


async def in_language_first(
    services: Services,
    query: str,
    top_k: int,
    category: str | None,
    language: Language,
    found: list[SearchHit],
    viewer: Viewer,
) -> list[SearchHit]:
    """The caller's language first, when the knowledge base has both: a Japanese question answered in
    English (`--lang en`), or an English follow-up to a Japanese question, should be answered from
    the English document, not read out from the Japanese one. The filter is exact and cheap (a
    keyword-index mask; the query vector is cached), and only runs when no hit is in that language."""
    in_language = await services.knowledge_base.search(
        query, top_k=top_k, category=category, filters={"lang": language}, viewer=viewer
    )
    seen = {hit["doc_id"] for hit in in_language}
    return [*in_language, *(hit for hit in found if hit["doc_id"] not in seen)]


async def query_vector_in_time(services: Services, query: str) -> np.ndarray | None:
    """The query's vector, or None when it cannot be had while leaving the keyword search its time.

    On a busy machine a query embedding slows down many times over (measured on 2 cores: a
    100-character Japanese question 0.2 s idle, 1.5-3.3 s with both cores taken by other work), and
    would take the whole turn with it. Then the turn goes on with keywords alone; the embedding
    finishes in the background and is cached for the next turn."""
    budget = remaining() - KEYWORD_RESERVE_S
    embedding = asyncio.ensure_future(services.embeddings.aembed_query(query))
    embedding.add_done_callback(_quietly)
    try:
        return await asyncio.wait_for(asyncio.shield(embedding), timeout=max(budget, 0.0))
    except TimeoutError:
        log.warning("query embedding still running after %.0f ms: searching by keywords alone", budget * 1000)
        return None


def _quietly(task: asyncio.Future[np.ndarray]) -> None:
    """A late embedding nobody awaits any more: its failure is logged, not left unretrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("query embedding failed: %s", describe(task.exception()))  # type: ignore[arg-type]


def _ranked_in_full(result: tuple[list[SearchHit], bool]) -> bool:
    """A search ranked by keywords alone (the vector was late) is not offered to the next run."""
    return not result[1]


def make_retrieve(services: Services) -> Node:
    async def retrieve(state: State, runtime: Runtime[Context]) -> State:
        """Search the knowledge base; a failure is reported in `problems`, never raised."""
        started = time.perf_counter()
        ctx = runtime.context or Context()
        route = state.get("route")
        query = state.get("search_query") or state.get("question", "")
        top_k = ctx.top_k or services.options.top_k
        category = (route["category"] if route else None) or ctx.category
        viewer = viewer_of(ctx)
        language = state.get("language")
        keyword_only = False

        async def search() -> tuple[list[SearchHit], bool]:
            async with asyncio.timeout(as_timeout()):  # shared: it ends by the deadline of the run that started it
                vector = await query_vector_in_time(services, query)
                found = await services.knowledge_base.search(
                    query, top_k=top_k, category=category, query_vector=vector, dense=vector is not None, viewer=viewer
                )
                if language and found and not any(hit["lang"] == language for hit in found):
                    found = await in_language_first(services, query, top_k, category, language, found, viewer)
                return found, vector is None

        async def lookup() -> list[SearchHit]:
            nonlocal keyword_only
            # An earlier run of the same question (a speculative one) may have searched already.
            version = services.knowledge_base.index_version
            key = ("knowledge_base", normalised(query), top_k, category, language, version)
            (found, keyword_only), _ = await reuse_or_fetch(services, ctx, key, search, keep=_ranked_in_full)
            return [SearchHit(**hit) for hit in found]  # each run its own copies

        try:
            with deadline_at(state.get("deadline_at")):
                async with asyncio.timeout(as_timeout()):
                    found = await traced_search(query, lookup())
        except Exception as exc:  # timeouts included: the turn goes on and says what it could not fetch
            kind: ProblemKind = "timeout" if isinstance(exc, TimeoutError) else "unreachable"
            took = elapsed_ms(started)
            log.warning("knowledge base search failed (%s after %.0f ms): %s", kind, took, describe(exc))
            return {
                "documents": [],
                "problems": [Problem(source="knowledge_base", kind=kind)],
                "timings_ms": {"retrieve": took},
            }
        update: State = {"documents": found, "timings_ms": {"retrieve": elapsed_ms(started)}}
        if keyword_only:  # ranked by keywords alone: grading is stricter, the answer degraded
            update["keyword_only"] = True
        return update

    return retrieve
