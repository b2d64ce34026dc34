"""MASK_FOR_LLM: the question and the conversation reach no chat model — router, grader, answer —
with a raw phone number or e-mail address in them. The fake OpenAI-compatible server records every
request body; the control shows the same turn sends them when the option is off."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer, routing_grading_answering
from helpers import services_with_chat_model
from langchain_core.messages import AIMessage, HumanMessage

from graph.builder import build_graph
from graph.context import Context
from graph.services import Services
from retrievers.documents import Document

pytestmark = pytest.mark.integration

PHONE, PHONE_JA, EMAIL = "090-1234-5678", "０３−１２３４−５６７８", "taro.yamada@example.com"
RAW = (PHONE, PHONE_JA, EMAIL, "09012345678", "0312345678")
CONVERSATION = [
    HumanMessage(f"Hi, I'm calling from {PHONE}."),
    AIMessage(f"Thanks, I noted {PHONE} and will use {EMAIL}."),  # an answer that repeated them
    HumanMessage(f"What is the warranty on the KH-300? Mail me at {EMAIL} or call {PHONE_JA}."),
]


model = routing_grading_answering("Two years.")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(Behaviour(reply=model)) as running:
        yield running


@pytest.fixture
async def services(tmp_path: Path, server: FakeOpenAIServer) -> AsyncIterator[Services]:
    warranty = Document(id="w", title="KH-300 warranty", text="The KH-300 has a two-year warranty.", lang="en")
    async with services_with_chat_model(tmp_path, server.base_url, [warranty]) as built:
        yield built


async def bodies(services: Services, server: FakeOpenAIServer, mask_for_llm: bool) -> list[str]:
    services.options = dataclasses.replace(services.options, mask_for_llm=mask_for_llm)
    context = Context(router="llm", grader="llm")
    state = await build_graph(services).ainvoke({"messages": list(CONVERSATION)}, context=context)
    assert state["answer"] == "Two years."
    kinds = [("router" if r.tool_names else "grader" if "numbered" in r.last_user_message else "answer")
             for r in server.chat_requests]  # fmt: skip
    assert kinds == ["router", "grader", "answer"]  # every model of the turn was asked
    return [json.dumps(r.body, ensure_ascii=False) for r in server.chat_requests]


async def test_with_mask_for_llm_no_model_sees_a_phone_number_or_an_e_mail(
    services: Services, server: FakeOpenAIServer
) -> None:
    sent = await bodies(services, server, mask_for_llm=True)
    for body in sent:
        assert not [raw for raw in RAW if raw in body], body
    router, grader, answer = sent
    assert "[PHONE]" in router and "[EMAIL]" in router and "[PHONE]" in grader
    assert answer.count("[PHONE]") >= 3 and "KH-300" in answer  # history and question masked, the rest kept


async def test_without_it_they_are_sent_as_said(services: Services, server: FakeOpenAIServer) -> None:
    router, grader, answer = await bodies(services, server, mask_for_llm=False)  # control
    assert PHONE_JA in router and EMAIL in grader and PHONE in answer and "[PHONE]" not in answer
