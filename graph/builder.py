"""build_graph(services): the one compiled graph every front door runs.

    START → route_query ─┬─ lookup ─┬─► retrieve ──┬─► grade_context ─┬─► generate → END
                         │          └─► call_apis ─┘                   │
                         └─ small talk, refused ───────────────────────┘

`retrieve` and `call_apis` run in the same step, concurrently; `grade_context` waits for both.

The Studio / `langgraph dev` entry point (a module-level `graph`) is `voicerag/studio.py`: it
needs settings, and the graph package does not read settings.
"""

from __future__ import annotations

import asyncio

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from graph.context import Context
from graph.nodes.call_apis import make_call_apis
from graph.nodes.generate import make_generate
from graph.nodes.grade import make_grade_context
from graph.nodes.retrieve import make_retrieve
from graph.nodes.route import example_vectors, make_route_query
from graph.services import Services
from graph.state import InputState, OutputState, State

SPEAKING_NODE = "generate"  # the only node whose messages are meant for the user


def after_route(state: State) -> list[str]:
    route = state.get("route")
    return [SPEAKING_NODE] if route and route["kind"] in ("small_talk", "refused") else ["retrieve", "call_apis"]


VoiceGraph = CompiledStateGraph[State, Context, InputState, OutputState]


def build_graph(services: Services, *, checkpointer: Checkpointer = None) -> VoiceGraph:
    # Studio shows InputState as the run's form, OutputState as its result, Context as its context form.
    builder = StateGraph(State, context_schema=Context, input_schema=InputState, output_schema=OutputState)
    builder.add_node("route_query", make_route_query(services))
    builder.add_node("retrieve", make_retrieve(services))
    builder.add_node("call_apis", make_call_apis(services))
    builder.add_node("grade_context", make_grade_context(services))
    builder.add_node(SPEAKING_NODE, make_generate(services))
    builder.add_edge(START, "route_query")
    builder.add_conditional_edges("route_query", after_route, ["retrieve", "call_apis", SPEAKING_NODE])
    builder.add_edge(["retrieve", "call_apis"], "grade_context")  # waits for both
    builder.add_edge("grade_context", SPEAKING_NODE)
    builder.add_edge(SPEAKING_NODE, END)
    return builder.compile(checkpointer=checkpointer, name="voicerag")


async def warm_up(services: Services) -> None:
    """Load what the first turn would otherwise wait for: the keyword index, the model, the
    router's example vectors; start the sources' background work (real-time feeds)."""
    await services.sources.start()
    await services.knowledge_base.keyword_index()
    await services.embeddings.aembed_query("warm up")
    await asyncio.to_thread(example_vectors, services.embeddings)
