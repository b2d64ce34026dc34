"""GraphLLM, the voice session's LLM step: speaks only the speaking node, builds context per turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PHRASES, offline_services
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from livekit.agents import Agent, AgentSession
from livekit.agents.llm import ChatContext
from livekit.plugins.langchain import LLMAdapter

from agent.llm import RECENT_MESSAGES, GraphLLM
from graph.builder import SPEAKING_NODE, build_graph
from graph.context import Context
from graph.state import State
from retrievers.documents import Document

LEAK = "ROUTERLEAK"


def leaky_graph(seen_contexts: list[Context]) -> Any:
    """A graph whose first node streams model tokens and returns a message: both would be spoken
    by the stock adapter. The speaking node answers with the turn's user id."""

    async def route_query(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        seen_contexts.append(runtime.context)
        model = GenericFakeChatModel(messages=iter([AIMessage(f"{LEAK} tokens")]))
        await model.ainvoke("route this")
        return {"messages": [AIMessage(f"{LEAK} message")]}

    async def generate(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return {"messages": [AIMessage(f"Hello {runtime.context.user_id}.")]}

    builder = StateGraph(State, context_schema=Context)
    builder.add_node("route_query", route_query)
    builder.add_node(SPEAKING_NODE, generate)
    builder.add_edge(START, "route_query")
    builder.add_edge("route_query", SPEAKING_NODE)
    builder.add_edge(SPEAKING_NODE, END)
    return builder.compile()


async def spoken_replies(llm: Any, *inputs: str) -> list[str]:
    async with AgentSession(llm=llm) as session:
        await session.start(Agent(instructions="You are a test agent."))
        replies = []
        for text in inputs:
            result = await session.run(user_input=text)
            event = result.expect.next_event().is_message(role="assistant")
            result.expect.no_more_events()
            replies.append(event.event().item.text_content)
        return replies


async def test_stock_adapter_speaks_the_leak_so_the_check_below_can_fail() -> None:
    replies = await spoken_replies(LLMAdapter(leaky_graph([]), context=Context(user_id="u1")), "hi")
    assert LEAK in replies[0]


async def test_only_the_speaking_node_is_spoken() -> None:
    replies = await spoken_replies(GraphLLM(leaky_graph([]), phrases=PHRASES), "hi", "again")
    assert replies == ["Hello anonymous.", "Hello anonymous."]


async def test_context_is_built_for_every_turn() -> None:
    seen: list[Context] = []
    calls: list[ChatContext] = []

    def per_turn(chat_ctx: ChatContext) -> Context:
        calls.append(chat_ctx)
        return Context(user_id="caller-7", roles=["customer"], turn_id=f"turn-{len(calls)}")

    replies = await spoken_replies(GraphLLM(leaky_graph(seen), phrases=PHRASES, context_factory=per_turn), "one", "two")
    assert replies == ["Hello caller-7.", "Hello caller-7."]
    assert [c.turn_id for c in seen] == ["turn-1", "turn-2"]
    assert all(c.roles == ["customer"] for c in seen)


@pytest.fixture
async def real_graph(tmp_path: Path) -> AsyncIterator[Any]:
    services = offline_services(tmp_path)
    await services.knowledge_base.index_documents(
        [Document(id="w", title="KH-300 warranty", text="The KH-300 has a two-year warranty.", lang="en")]
    )
    yield build_graph(services)
    await services.aclose()


@pytest.mark.integration  # embedded Chroma and a model
async def test_the_real_graph_answers_in_a_session_without_duplicating_history(real_graph: Any) -> None:
    inputs: list[list[str]] = []

    def record(chat_ctx: ChatContext) -> Context:
        inputs.append([f"{m.role}:{m.text_content}" for m in chat_ctx.messages()])
        return Context()

    replies = await spoken_replies(
        GraphLLM(real_graph, phrases=PHRASES, context_factory=record),
        "What is the warranty on the KH-300?",
        "thank you",
    )
    assert replies[0].startswith(PHRASES.extractive_prefix["en"]) and "two-year warranty" in replies[0]
    assert replies[1].startswith("You're welcome")
    # The second turn sees each earlier message exactly once.
    assert inputs[1] == [
        "system:You are a test agent.",
        "user:What is the warranty on the KH-300?",
        f"assistant:{replies[0]}",
        "user:thank you",
    ]


async def test_the_graph_gets_the_instructions_and_only_the_recent_turns() -> None:
    chat_ctx = ChatContext.empty()
    chat_ctx.add_message(role="system", content="You are a test agent.")
    for turn in range(30):
        chat_ctx.add_message(role="user", content=f"question {turn}")
        chat_ctx.add_message(role="assistant", content=f"answer {turn}")
    stream = GraphLLM(leaky_graph([]), phrases=PHRASES).chat(chat_ctx=chat_ctx)
    try:
        messages = stream._chat_ctx_to_state()["messages"]
    finally:
        await stream.aclose()
    assert messages[0].content == "You are a test agent."
    assert [m.content for m in messages[1:]][-2:] == ["question 29", "answer 29"]
    assert len(messages) == 1 + RECENT_MESSAGES and messages[1].content == "question 22"
