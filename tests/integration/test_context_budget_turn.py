"""LLM_CONTEXT_TOKENS through a real turn: the prompt the fake OpenAI-compatible server receives
is within the budget (by the offline estimate), the conversation's oldest messages went first and
the best document is still there; the control, a roomy budget, sends everything."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer, content_text
from helpers import services_with_chat_model
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from graph.builder import build_graph
from graph.context_budget import MESSAGE_TOKENS, REPLY_TOKENS, estimate_tokens
from graph.services import Services
from retrievers.documents import Document

pytestmark = pytest.mark.integration

CONVERSATION: list[BaseMessage] = [
    HumanMessage("Tell me about your shipping options to Hokkaido, please. " * 8),
    AIMessage("We ship to Hokkaido within three days by standard parcel service. " * 8),
    HumanMessage("What is the warranty on the KH-300 kettle?"),
]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(Behaviour(reply="Two years.")) as running:
        yield running


@pytest.fixture
async def services(tmp_path: Path, server: FakeOpenAIServer) -> AsyncIterator[Services]:
    documents = [
        Document(id="w", title="KH-300 kettle warranty", text="The KH-300 kettle has a two-year warranty. "
                 + "Keep the receipt as proof of purchase. " * 30, lang="en"),
        Document(id="k", title="KH-300 kettle care", text="Descale the KH-300 kettle monthly. " * 30, lang="en"),
    ]  # fmt: skip
    async with services_with_chat_model(tmp_path, server.base_url, documents) as built:
        yield built


async def sent_prompt(services: Services, server: FakeOpenAIServer, budget: int) -> list[dict[str, str]]:
    services.options = dataclasses.replace(services.options, context_tokens=budget)
    state = await build_graph(services).ainvoke({"messages": list(CONVERSATION)})
    assert state["answer"] == "Two years." and len(state["graded"]) == 2, state["graded"]
    (request,) = server.chat_requests[-1:]
    return [{"role": m["role"], "text": content_text(m)} for m in request.messages]


def estimate(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m["text"]) + MESSAGE_TOKENS for m in messages) + REPLY_TOKENS


async def test_the_prompt_sent_stays_within_the_budget_in_the_stated_order(
    services: Services, server: FakeOpenAIServer
) -> None:
    roomy = await sent_prompt(services, server, 100_000)  # control: everything is sent
    assert [m["role"] for m in roomy] == ["system", "user", "assistant", "user"]
    assert "Descale" in roomy[0]["text"] and "two-year warranty" in roomy[0]["text"]

    without_history = estimate([roomy[0], roomy[-1]])
    budget = without_history - 50  # the history must go, then some of the documents
    tight = await sent_prompt(services, server, budget)
    assert [m["role"] for m in tight] == ["system", "user"]
    assert estimate(tight) <= budget < estimate(roomy)
    assert "two-year warranty" in tight[0]["text"]  # the best document's start is kept
    assert "Descale" not in tight[0]["text"]  # the lower-scored one went before any cut to the best
    assert tight[-1]["text"] == roomy[-1]["text"]  # the question is never cut
