"""The voice session honours the turn's admission: LiveKit's `AgentSession` over the real graph (the
harness of test_voice_session.py) speaks the persona's sentence when a caller is over their rate
limit or asks something far too long, and the graph then looks nothing up and asks no model."""

from __future__ import annotations

import pytest
from fakes.open_meteo import OpenMeteoServer
from fakes.openai_server import FakeOpenAIServer
from helpers import PHRASES
from test_voice_session import Call

from agent.identity import Caller
from graph.services import Services
from retrievers.turn.admission import TurnAdmission

on_module_loop = pytest.mark.asyncio(loop_scope="module")

MEMBER = Caller(identity="C-101518", attributes={"roles": "member"})


@on_module_loop
async def test_a_caller_over_the_limit_hears_the_refusal_and_nothing_is_looked_up(
    services: Services, chat_server: FakeOpenAIServer, meteo: OpenMeteoServer
) -> None:
    services.admission = TurnAdmission(max_question_chars=1000, per_user="2/minute")
    async with Call(services, caller=lambda: MEMBER) as call:
        first = await call.ask("What is the warranty on the Kumo Halo?")
        second = await call.ask("What's the weather in Sapporo?")
        requests, forecasts = len(chat_server.chat_requests), meteo.count("/v1/forecast")
        third = await call.ask("What's the weather in Osaka?")

    assert "2-year warranty" in first.said and "Sapporo" in second.said  # control: admitted turns answered
    assert forecasts == 1
    assert third.said == PHRASES.rate_limited["en"]
    assert len(chat_server.chat_requests) == requests and meteo.count("/v1/forecast") == 1  # no model, no source
    assert [r.context.user_id for r in call.graph.runs] == ["C-101518"] * 3


@on_module_loop
async def test_an_anonymous_call_is_limited_on_its_own_and_hears_the_refusal_in_japanese(
    services: Services, chat_server: FakeOpenAIServer
) -> None:
    services.admission = TurnAdmission(max_question_chars=1000, per_user="1/minute")
    async with Call(services) as call:
        first = await call.ask("KH-300の保証期間は？")
        requests = len(chat_server.chat_requests)
        second = await call.ask("送料はいくらですか？")
    assert first.said != PHRASES.rate_limited["ja"]
    assert second.said == PHRASES.rate_limited["ja"]
    assert len(chat_server.chat_requests) == requests


@on_module_loop
async def test_a_question_too_long_is_refused_in_the_call(services: Services, chat_server: FakeOpenAIServer) -> None:
    async with Call(services) as call:
        turn = await call.ask("Tell me about the warranty of the Kumo Halo. " * 40)  # 1,800 characters
    assert turn.said == PHRASES.question_too_long["en"]
    assert chat_server.chat_requests == []
