"""retrieve: hybrid search of the knowledge base for the turn's standalone question."""

from __future__ import annotations

import asyncio
import logging
import time

from langgraph.runtime import Runtime

from graph.context import Context
from graph.nodes.common import Node, elapsed_ms
from graph.services import Services
from graph.state import State
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
            log.warning("knowledge base search failed: %s", exc or type(exc).__name__)
            return {
                "documents": [],
                "problems": ["knowledge_base"],
                "timings_ms": {"retrieve": elapsed_ms(started)},
            }
        return {"documents": found, "timings_ms": {"retrieve": elapsed_ms(started)}}

    return retrieve
