"""Tokens and cost per turn: the router, grader and answer calls' usage — as the fake
OpenAI-compatible server reported it (`stream_options.include_usage`) — summed into the
`TurnRecord`, priced from the `LLM_PRICES` table; a model the table does not know costs null."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer, routing_grading_answering
from helpers import offline_services
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from graph.builder import build_graph, warm_up
from graph.context import Context
from graph.services import Services
from graph.turn_record import TurnRecord
from graph.usage import DEFAULT_PRICES, price_for, price_metadata
from retrievers.documents import Document
from voicerag.cli.turn import observed_turn, turn_json

pytestmark = pytest.mark.integration


model = routing_grading_answering("The KH-300 has a two-year warranty.")
# Budgets no loaded CI machine reaches: these tests count the calls a turn makes, and a router that
# used up the 1.5 s turn deadline would leave the search no time, the grader no documents, one call fewer.
GENEROUS = {"turn_deadline_ms": 30_000, "llm_router_timeout_s": 15.0}


def reported(server: FakeOpenAIServer) -> tuple[int, int]:
    """What the server reported for each request it answered, summed (its own usage formula)."""
    input_tokens = output_tokens = 0
    for request in server.chat_requests:
        reply = model(request.messages)
        text = reply if isinstance(reply, str) else "".join(call.arguments_json for call in reply)
        usage = server._usage(request.messages, text)
        input_tokens, output_tokens = input_tokens + usage["prompt_tokens"], output_tokens + usage["completion_tokens"]
    return input_tokens, output_tokens


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(Behaviour(reply=model)) as running:
        yield running


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    built = offline_services(tmp_path)
    await built.knowledge_base.index_documents(
        [Document(id="w", title="KH-300 warranty", text="The KH-300 has a two-year warranty.", lang="en")]
    )
    built.options = dataclasses.replace(
        built.options, deadline_ms=GENEROUS["turn_deadline_ms"], router_timeout_s=GENEROUS["llm_router_timeout_s"]
    )
    await warm_up(built)
    yield built
    await built.aclose()


async def turn(services: Services, server: FakeOpenAIServer, name: str) -> tuple[TurnRecord, dict[str, Any]]:
    services.chat_model = ChatOpenAI(
        base_url=server.base_url, api_key="test", model=name, stream_usage=True,
        metadata=price_metadata(name, DEFAULT_PRICES),
    )  # fmt: skip
    records: list[TurnRecord] = []
    context = Context(router="llm", grader="llm")
    state = await observed_turn(
        build_graph(services), [HumanMessage("What is the warranty on the KH-300?")], context, "ask", [records.append]
    )
    assert len(records) == 1
    return records[0], state


async def test_the_record_sums_every_model_call_as_the_server_reported_it_and_prices_it(
    services: Services, server: FakeOpenAIServer
) -> None:
    record, state = await turn(services, server, "gpt-4o-mini")
    assert len(server.chat_requests) == 3 and record.llm_calls == 3  # router, grader, answer
    assert all(r.body.get("stream_options") == {"include_usage": True} for r in server.chat_requests if r.stream)
    input_tokens, output_tokens = reported(server)
    assert input_tokens > 0 and output_tokens > 0
    assert record.tokens == {"input": input_tokens, "output": output_tokens, "total": input_tokens + output_tokens}
    expected = (input_tokens * 0.15 + output_tokens * 0.60) / 1_000_000
    assert record.cost_usd == pytest.approx(expected)
    usage = json.loads(json.dumps(turn_json(state)))["usage"]  # `ask --json`
    assert usage == {"tokens": record.tokens, "cost_usd": record.cost_usd, "llm_calls": 3}
    assert record.masked()["tokens"] == record.tokens and record.masked()["cost_usd"] == record.cost_usd


async def test_a_model_without_a_price_costs_null_not_zero(services: Services, server: FakeOpenAIServer) -> None:
    record, state = await turn(services, server, "some-local-model")
    assert record.tokens["total"] > 0  # control: the usage was counted
    assert record.cost_usd is None and turn_json(state)["usage"]["cost_usd"] is None


def test_a_dated_snapshot_takes_its_base_models_price() -> None:
    assert price_for("gpt-4o-mini-2024-07-18", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("gpt-4o-2024-08-06", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o"]
    assert price_for("gpt-4o-minimal", DEFAULT_PRICES) is None  # a prefix is not a snapshot
    assert price_metadata("llama3", DEFAULT_PRICES) == {}


async def test_ask_json_and_the_log_line_carry_the_usage_from_settings(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    """The wiring from settings: LLM_MODEL's price from LLM_PRICES, usage asked of the server."""
    from test_turn_records import voicerag

    data = tmp_path / "data"
    built = offline_services(data)  # the CLI's own knowledge base (EMBEDDINGS=use), indexed in-process
    await built.knowledge_base.index_documents(
        [Document(id="w", title="KH-300 warranty", text="The KH-300 has a two-year warranty.", lang="en")]
    )
    await built.aclose()
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test", "LLM_MODEL": "my-model",
           "LLM_PRICES": '{"my-model": {"input": 1.0, "output": 3.0}}', "ROUTER": "llm", "GRADER": "llm",
           **{name.upper(): str(value) for name, value in GENEROUS.items()}}  # fmt: skip
    result = await asyncio.to_thread(voicerag, ["ask", "What is the warranty on the KH-300?", "--json"], data, **env)
    assert result.code == 0, result.stderr
    usage = json.loads(result.stdout)["usage"]
    input_tokens, output_tokens = reported(server)
    assert usage["tokens"] == {"input": input_tokens, "output": output_tokens, "total": input_tokens + output_tokens}
    assert usage["llm_calls"] == len(server.chat_requests) == 3
    assert usage["cost_usd"] == pytest.approx((input_tokens * 1.0 + output_tokens * 3.0) / 1_000_000)
    (line,) = result.turn_lines()
    assert line["tokens"] == usage["tokens"] and line["cost_usd"] == usage["cost_usd"]


async def test_an_answer_cut_short_makes_the_cost_unknown(services: Services, server: FakeOpenAIServer) -> None:
    """The answer's stream stops at the total timeout, before the server's usage chunk: the call was
    billed, so its cost is unknown (null), not 0; the control above shows a whole call is priced."""
    services.options = dataclasses.replace(services.options, llm_timeout_s=0.6)
    server.set(reply="The KH-300 has a two-year warranty, as the documents say.", token_delay_s=0.15)
    services.chat_model = ChatOpenAI(
        base_url=server.base_url, api_key="test", model="gpt-4o-mini", stream_usage=True,
        metadata=price_metadata("gpt-4o-mini", DEFAULT_PRICES),
    )  # fmt: skip
    records: list[TurnRecord] = []
    state = await observed_turn(
        build_graph(services), [HumanMessage("What is the warranty on the KH-300?")], Context(), "ask", [records.append]
    )
    assert state["degraded"] and records[0].answer.startswith("The KH-300")  # cut short, then apologised
    assert records[0].llm_calls == 1 and records[0].cost_usd is None
