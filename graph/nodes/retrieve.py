"""retrieve: hybrid search of the knowledge base for the turn's standalone question."""

from __future__ import annotations

import asyncio
import logging
import time

from langgraph.runtime import Runtime

from graph.context import Context
from graph.nodes.common import Node, describe, elapsed_ms
from graph.services import Services
from graph.state import Problem, ProblemKind, State
from retrievers.knowledge_base.hits import SearchHit
from retrievers.language import Language
from retrievers.turn.deadline import as_timeout, deadline_at

log = logging.getLogger(__name__)


async def in_language_first(
    services: Services, query: str, top_k: int, category: str | None, language: Language, found: list[SearchHit]
) -> list[SearchHit]:
    """The caller's language first, when the knowledge base has both: a Japanese question answered in
    English (`--lang en`), or an English follow-up to a Japanese question, should be answered from
    the English document, not read out from the Japanese one. The filter is exact and cheap (a
    keyword-index mask; the query vector is cached), and only runs when no hit is in that language."""
    in_language = await services.knowledge_base.search(
        query, top_k=top_k, category=category, filters={"lang": language}
    )
    seen = {hit["doc_id"] for hit in in_language}
    return [*in_language, *(hit for hit in found if hit["doc_id"] not in seen)]


def make_retrieve(services: Services) -> Node:
    async def retrieve(state: State, runtime: Runtime[Context]) -> State:
        """Search the knowledge base; a failure is reported in `problems`, never raised."""
        started = time.perf_counter()
        ctx = runtime.context or Context()
        route = state.get("route")
        query = state.get("search_query") or state.get("question", "")
        top_k = ctx.top_k or services.options.top_k
        category = (route["category"] if route else None) or ctx.category
        try:
            with deadline_at(state.get("deadline_at")):
                async with asyncio.timeout(as_timeout()):
                    found = await services.knowledge_base.search(query, top_k=top_k, category=category)
                    language = state.get("language")
                    if language and found and not any(hit["lang"] == language for hit in found):
                        found = await in_language_first(services, query, top_k, category, language, found)
        except Exception as exc:  # timeouts included: the turn goes on and says what it could not fetch
            kind: ProblemKind = "timeout" if isinstance(exc, TimeoutError) else "unreachable"
            took = elapsed_ms(started)
            log.warning("knowledge base search failed (%s after %.0f ms): %s", kind, took, describe(exc))
            return {
                "documents": [],
                "problems": [Problem(source="knowledge_base", kind=kind)],
                "timings_ms": {"retrieve": took},
            }
        return {"documents": found, "timings_ms": {"retrieve": elapsed_ms(started)}}

    return retrieve
