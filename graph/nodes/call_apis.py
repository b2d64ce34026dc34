"""call_apis: the turn's external sources, all at once, under the turn's deadline.

Runs in parallel with `retrieve` (both follow `route_query`), so a lookup costs the slowest of
them, not their sum. Each source runs through `run_source`: its own timeout, capped by what is
left of the turn's deadline; what misses it is cancelled and reported as a timeout. Every outcome
is a `SourceResult`; the names of the sources that failed go to `problems`, so the answer can
say what could not be fetched. Nothing raises out of this node.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel

from graph.context import Context
from graph.lookup_reuse import reuse_or_fetch
from graph.nodes.child_runs import traced_source_call
from graph.nodes.common import Node, elapsed_ms
from graph.services import Services
from graph.state import Problem, SourceCall, State
from retrievers.language import Language
from retrievers.sources.base import NEEDS_CALLER, UNAVAILABLE, Source, SourceContext, SourceResult, run_source
from retrievers.turn.deadline import deadline_at


async def _call(services: Services, call: SourceCall, ctx: SourceContext, turn: Context) -> SourceResult:
    source = services.sources.get(call["source"])
    if source is None:
        return SourceResult(
            source=call["source"], status="skipped", data=None, summary="", elapsed_ms=0.0, cached=False
        )
    try:
        params = source.params_model.model_validate(call["params"])
    except ValueError as exc:  # an LLM router may produce arguments the source refuses
        return SourceResult(
            source=source.name, status="error", data={"error": str(exc)}, summary="", elapsed_ms=0.0, cached=False
        )
    return await traced_source_call(source.name, call["params"], _shared(services, source, params, ctx, turn))


async def _shared(
    services: Services, source: Source[Any], params: BaseModel, ctx: SourceContext, turn: Context
) -> SourceResult:
    """The call, or an earlier run's identical one (a speculative run of this question): that run's
    result, fetched once. Sources are read-only, so a discarded run's call has no effect but its result."""
    started = time.perf_counter()
    # id(source): a source replaced in the registry (a reloaded file) is another lookup.
    key = ("source", source.name, id(source), params.model_dump_json(), ctx.language)
    result, reused = await reuse_or_fetch(
        services, turn, key, lambda: run_source(source, params, ctx), keep=lambda r: r["status"] == "ok"
    )
    if not reused:
        return result
    # Not fetched by this run: what it waited, and not counted again in the source's latency.
    return SourceResult(**{**result, "elapsed_ms": elapsed_ms(started), "cached": True})


def problem_of(result: SourceResult) -> Problem | None:
    """What the answer must say about a source that gave nothing (None: it answered, or the caller
    may not use it — then it is simply not consulted). A lookup bound to the caller's identity that
    this caller cannot have is said (the persona's needs_verified_caller), the same sentence whether
    or not the record exists."""
    data = result["data"]
    if result["status"] == "skipped" and isinstance(data, dict) and data.get("error") == NEEDS_CALLER:
        return Problem(source=result["source"], kind="needs_caller", what=str(data.get("what") or ""))
    if result["status"] == "timeout":
        return Problem(source=result["source"], kind="timeout")
    if result["status"] == "error":
        return Problem(source=result["source"], kind="unreachable")
    if (
        result["status"] == "skipped"
        and isinstance(result["data"], dict)
        and result["data"].get("error") == UNAVAILABLE
    ):
        return Problem(source=result["source"], kind="unavailable")
    return None


def source_context(ctx: Context, language: Language) -> SourceContext:
    """Who is calling, as sources see it: from the run's context (the front door), never the state."""
    return SourceContext(user_id=ctx.user_id, roles=tuple(ctx.roles), tenant=ctx.tenant, language=language)


def make_call_apis(services: Services) -> Node:
    async def call_apis(state: State, runtime: Runtime[Context]) -> State:
        """Call every source the route chose, concurrently; report each outcome."""
        started = time.perf_counter()
        route = state.get("route")
        calls = route.get("calls", []) if route else []
        if not calls:
            return {"api_results": [], "timings_ms": {"call_apis": 0.0, "sources": {}}}
        ctx = runtime.context or Context()
        source_ctx = source_context(ctx, state.get("language", "en"))
        with deadline_at(state.get("deadline_at")):
            results = list(await asyncio.gather(*(_call(services, call, source_ctx, ctx) for call in calls)))
        for result in results:
            if result["status"] in ("ok", "error", "timeout") and not result["cached"]:
                services.sources.observe(result["source"], result["elapsed_ms"])
        return {
            "api_results": results,
            "problems": [problem for result in results if (problem := problem_of(result)) is not None],
            "timings_ms": {
                "call_apis": elapsed_ms(started),
                "sources": {r["source"]: r["elapsed_ms"] for r in results},
            },
        }

    return call_apis
