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
from retrievers.turn.deadline import as_timeout, deadline_at

log = logging.getLogger(__name__)


def make_retrieve(services: Services) -> Node:
    async def retrieve(state: State, runtime: Runtime[Context]) -> State:
        """Search the knowledge base; a failure is reported in `problems`, never raised."""
        started = time.perf_counter()
        ctx = runtime.context or Context()
        route = state.get("route")
        query = state.get("search_query") or state.get("question", "")
        try:
            with deadline_at(state.get("deadline_at")):
                async with asyncio.timeout(as_timeout()):
                    found = await services.knowledge_base.search(
                        query,
                        top_k=ctx.top_k or services.options.top_k,
                        category=(route["category"] if route else None) or ctx.category,
                    )
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
