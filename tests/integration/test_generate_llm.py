"""`generate` with a real chat-model client (`ChatOpenAI`, as `build_chat_model` makes it) against a
fake OpenAI-compatible server, over the real compiled graph and a real knowledge base (embedded
Chroma, `EMBEDDINGS=use`): streaming, the prompt the model receives, every way the model can fail,
and when the model must not be called at all.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fakes.openai_server import Behaviour, FakeOpenAIServer, ToolCall, split_tokens
from helpers import PHRASES
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.prompts import ANSWER_SYSTEM, SMALL_TALK_SYSTEM
from graph.services import Services
from retrievers.documents import Document
from voicerag.cli.turn import run_turn
from voicerag.services import build_services
from voicerag.settings import Settings, load_settings

# One event loop for the module: the services (and the chat model's HTTP client) are built once.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

FIRST_TOKEN_TIMEOUT_S = 1.0
LLM_TIMEOUT_S = 2.5
MARGIN_S = 0.75  # route + retrieve + grade on 2 busy cores, and the client closing the stream

WARRANTY = "The Kumo Halo KH-300 headphones have a two-year warranty."
WARRANTY_JA = "KH-300ヘッドホンの保証期間は二年間です。"
SHIPPING = "Orders ship within two business days, and delivery to Okinawa takes five days."
DOCUMENTS = [
    Document(
        id="warranty",
        title="KH-300 warranty",
        text=f"{WARRANTY} Repairs under warranty are free of charge.",
        lang="en",
        category="product",
    ),
    Document(
        id="warranty-ja",
        title="KH-300の保証",
        text=f"{WARRANTY_JA}保証期間中の修理は無料です。",
        lang="ja",
        category="product",
    ),
    Document(id="shipping", title="Shipping", text=SHIPPING, lang="en", category="general"),
    Document(
        id="returns",
        title="Returns",
        text="Products can be returned within 30 days of delivery for a full refund.",
        lang="en",
        category="support",
    ),
]
QUESTION = "How long is the warranty on the KH-300 headphones?"
QUESTION_JA = "KH-300の保証期間は何年ですか？"
UNANSWERABLE = "Do you sell pizza in Paris?"


def settings_for(data_dir: Path, base_url: str | None = None) -> Settings:
    return load_settings(
        _env_file=None,  # hermetic: no developer .env
        voicerag_data_dir=data_dir,
        embeddings="use",
        chroma_url=None,
        router="rules",
        grader="score",
        openai_base_url=base_url,
        openai_api_key="test" if base_url else None,
        llm_model="gpt-4o-mini",
        llm_first_token_timeout_s=FIRST_TOKEN_TIMEOUT_S,
        llm_timeout_s=LLM_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_server(server: FakeOpenAIServer) -> None:
    server.reset()  # each test scripts the model itself and sees only its own requests


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory, server: FakeOpenAIServer) -> AsyncIterator[Services]:
    """Services as the CLI builds them from settings, over a knowledge base ingested once."""
    built = build_services(settings_for(tmp_path_factory.mktemp("kb"), server.base_url))
    assert built.chat_model is not None, "OPENAI_BASE_URL must configure a chat model"
    await built.knowledge_base.index_documents(DOCUMENTS)
    await warm_up(built)  # so timings below measure the model, not the first embedding
    yield built
    await built.aclose()


@pytest.fixture(scope="module")
def graph(services: Services) -> VoiceGraph:
    return build_graph(services)


@dataclass
class Turn:
    state: dict[str, Any]
    pieces: list[str]  # what `on_text` received, in order (what the CLI prints / a voice would say)
    seconds: float
    arrivals: list[float] = field(default_factory=list)

    @property
    def answer(self) -> str:
        return str(self.state["answer"])


async def ask(graph: VoiceGraph, question: str | list[AnyMessage], context: Context | None = None) -> Turn:
    """One turn, streamed the way `voicerag ask` streams it."""
    messages: list[AnyMessage] = [HumanMessage(question)] if isinstance(question, str) else question
    pieces: list[str] = []
    arrivals: list[float] = []

    def on_text(text: str) -> None:
        pieces.append(text)
        arrivals.append(time.monotonic())

    started = time.monotonic()
    state = await run_turn(graph, messages, context or Context(), on_text)
    return Turn(state, pieces, time.monotonic() - started, [t - started for t in arrivals])


async def wait_until_closed(server: FakeOpenAIServer, within_s: float = 1.0) -> None:
    """The client gave up on the request it abandoned (no connection left hanging)."""
    closed = await asyncio.to_thread(server.wait_until_idle, within_s)
    assert closed, "the abandoned model request was never closed"


# ---------------------------------------------------------------------------------- answering


async def test_streamed_tokens_arrive_in_order_as_they_are_sent_and_form_the_answer(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    reply = "The KH-300 warranty lasts two years, and repairs under warranty are free."
    server.set(reply=reply, token_delay_s=0.03)

    turn = await ask(graph, QUESTION)

    assert turn.pieces == split_tokens(reply)  # every delta, in order, nothing added
    assert turn.answer == reply
    assert turn.state["degraded"] is False
    # Streamed, not delivered at the end: the deltas arrived spread over the server's pacing.
    assert turn.arrivals[-1] - turn.arrivals[0] >= 0.5 * 0.03 * (len(turn.pieces) - 1)
    request = server.chat_requests[0]
    assert request.stream is True
    assert request.body["model"] == "gpt-4o-mini"
    assert request.headers["Authorization"] == "Bearer test"
    assert len(server.chat_requests) == 1


async def test_the_model_receives_the_graded_context_and_the_question(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    def quote_first_document(messages: list[dict[str, Any]]) -> str:
        context = str(messages[0]["content"]).split("Context:\n", 1)[1]
        return "Our documents say: " + context.split("\n\n")[0].splitlines()[1]

    server.set(reply=quote_first_document)

    turn = await ask(graph, QUESTION)

    # The answer could only contain the document's text if the context reached the model.
    assert turn.answer.startswith("Our documents say: " + WARRANTY)
    request = server.chat_requests[0]
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert request.last_user_message == QUESTION
    system = request.system_prompt
    assert system.startswith(ANSWER_SYSTEM["en"].format(company="Kumo Audio", context=""))
    graded = turn.state["graded"]
    assert graded and graded[0]["doc_id"] == "warranty"
    for number, doc in enumerate(graded, start=1):
        assert f"[{number}] {doc['title']}\n{doc['text']}" in system
    assert SHIPPING not in system  # only graded documents are given to the model


async def test_a_japanese_question_gets_the_japanese_system_prompt(graph: VoiceGraph, server: FakeOpenAIServer) -> None:
    server.set(reply="KH-300の保証期間は二年間です。")

    turn = await ask(graph, QUESTION_JA)

    assert turn.state["language"] == "ja"
    assert turn.answer == "KH-300の保証期間は二年間です。"
    system = server.chat_requests[0].system_prompt
    assert system.startswith(ANSWER_SYSTEM["ja"].format(company="クモオーディオ", context=""))
    assert WARRANTY_JA in system
    assert server.chat_requests[0].last_user_message == QUESTION_JA


async def test_a_follow_up_sends_the_earlier_turns_to_the_model(graph: VoiceGraph, server: FakeOpenAIServer) -> None:
    server.set(reply="Repairs under warranty are free.")
    history: list[AnyMessage] = [
        HumanMessage(QUESTION),
        AIMessage("It has a two-year warranty."),
        HumanMessage("And are repairs under the KH-300 warranty free?"),
    ]

    await ask(graph, history)

    messages = server.chat_requests[0].messages
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", QUESTION),
        ("assistant", "It has a two-year warranty."),
        ("user", "And are repairs under the KH-300 warranty free?"),
    ]


async def test_small_talk_is_answered_by_the_model_without_a_lookup(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    server.set(reply="Hi there! Ask me anything about Kumo Audio.")

    turn = await ask(graph, "Hello!")

    assert turn.state["route"]["kind"] == "small_talk"
    assert turn.answer == "Hi there! Ask me anything about Kumo Audio."
    assert "".join(turn.pieces) == turn.answer
    assert turn.state["documents"] == [] and "retrieve" not in turn.state["timings_ms"]  # no lookup
    request = server.chat_requests[0]
    assert request.system_prompt == SMALL_TALK_SYSTEM["en"].format(company="Kumo Audio")
    assert request.last_user_message == "Hello!"


async def test_no_relevant_document_says_not_found_and_never_calls_the_model(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    turn = await ask(graph, UNANSWERABLE)

    assert turn.state["route"]["kind"] == "lookup"
    assert turn.state["graded"] == []
    assert turn.answer == PHRASES.not_found["en"]
    assert turn.pieces == [PHRASES.not_found["en"]]
    assert turn.state["degraded"] is False
    assert server.chat_requests == []


async def test_each_turn_of_a_checkpointed_thread_answers_its_own_question(
    services: Services, server: FakeOpenAIServer
) -> None:
    """With a checkpointer, the state of the previous turn is still there when only the new user
    message is sent (LiveKit resends the whole chat every turn); the new question must still be the one answered."""
    graph = build_graph(services, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "caller-1"}}
    server.set(reply=lambda messages: "You asked: " + str(messages[-1]["content"]))
    second = "How long does delivery to Okinawa take?"

    await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config, context=Context())
    state = await graph.ainvoke({"messages": [HumanMessage(second)]}, config, context=Context())

    assert state["question"] == second
    assert state["answer"] == "You asked: " + second
    assert server.chat_requests[1].last_user_message == second
    assert SHIPPING in server.chat_requests[1].system_prompt


# ---------------------------------------------------------------------------------- failures

BEFORE_FIRST_TOKEN = {
    "http_500": (Behaviour(status=500), 0.0),
    "http_429": (Behaviour(status=429, retry_after_s=1), 0.0),
    "hang_before_headers": (Behaviour(hang=True), FIRST_TOKEN_TIMEOUT_S),
    "first_token_too_slow": (Behaviour(first_token_delay_s=FIRST_TOKEN_TIMEOUT_S * 4), FIRST_TOKEN_TIMEOUT_S),
    # Headers and the empty role chunk come at once, then nothing (reasoning models, some proxies):
    # an empty chunk is not a first token.
    "silent_after_role_chunk": (Behaviour(hang=True, role_chunk_first=True), FIRST_TOKEN_TIMEOUT_S),
}


@pytest.mark.parametrize("failure", BEFORE_FIRST_TOKEN.keys())
async def test_a_model_that_fails_before_its_first_token_gives_a_degraded_extractive_answer_in_time(
    graph: VoiceGraph, server: FakeOpenAIServer, failure: str
) -> None:
    behaviour, waits_s = BEFORE_FIRST_TOKEN[failure]
    server.behaviour = behaviour

    turn = await ask(graph, QUESTION)

    assert turn.answer.startswith(PHRASES.fallback_prefix["en"])
    assert WARRANTY in turn.answer
    assert turn.state["degraded"] is True
    assert "".join(turn.pieces) == turn.answer  # the fallback is what was said, and all of it
    assert turn.seconds < waits_s + MARGIN_S, f"took {turn.seconds:.2f} s"
    if waits_s:
        assert turn.seconds >= waits_s * 0.9  # it did give the model its full first-token budget
    assert len(server.chat_requests) == 1  # no retries: a voice turn cannot wait for them
    await wait_until_closed(server)


async def test_a_connection_dropped_mid_stream_keeps_the_partial_answer_and_apologises(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    reply = "The KH-300 warranty lasts two years, and repairs under warranty are free."
    server.set(reply=reply, drop_after_tokens=3)
    said = "".join(split_tokens(reply)[:3])

    turn = await ask(graph, QUESTION)

    assert turn.answer == said + PHRASES.cut_short["en"]
    assert turn.pieces == [*split_tokens(reply)[:3], PHRASES.cut_short["en"]]
    assert turn.state["degraded"] is True
    assert turn.seconds < MARGIN_S


async def test_an_answer_past_the_total_timeout_is_cut_short_with_an_apology(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    reply = "The KH-300 warranty lasts two years, and repairs under warranty are free."
    tokens = split_tokens(reply)
    server.set(reply=reply, token_delay_s=LLM_TIMEOUT_S / (len(tokens) / 2))  # half of it fits

    turn = await ask(graph, QUESTION)

    assert turn.answer.endswith(PHRASES.cut_short["en"])
    said = turn.answer.removesuffix(PHRASES.cut_short["en"])
    assert said and reply.startswith(said) and said != reply
    assert turn.pieces[-1] == PHRASES.cut_short["en"] and "".join(turn.pieces[:-1]) == said
    assert turn.state["degraded"] is True
    assert LLM_TIMEOUT_S * 0.9 <= turn.seconds < LLM_TIMEOUT_S + MARGIN_S
    await wait_until_closed(server)


# ---------------------------------------------------------------------------------- LLM router and grader


async def test_an_llm_router_and_grader_on_the_same_server_are_used_but_never_streamed(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    def keep_the_english_warranty(messages: list[dict[str, Any]]) -> str:
        listing = str(messages[-1]["content"])
        number = re.findall(r"\[(\d+)\] KH-300 warranty\n", listing)[0]
        return f'{{"relevant": [{number}]}}'

    search = ToolCall("search_knowledge_base", {"query": "KH-300 warranty length", "category": "product"})
    server.script(
        Behaviour(reply=[search]),
        Behaviour(reply=keep_the_english_warranty),
        Behaviour(reply="Two years."),
    )

    turn = await ask(graph, "and how long is it for the KH-300?", Context(router="llm", grader="llm"))

    router, grader, answer = server.chat_requests
    assert router.last_user_message == "and how long is it for the KH-300?"
    assert router.tool_names[0] == "search_knowledge_base" and router.stream is False  # native tool calling
    assert turn.state["route"] == {
        "kind": "lookup",
        "sources": ["knowledge_base"],
        "category": "product",
        "reason": "llm",
        "calls": [],
    }
    assert turn.state["search_query"] == "KH-300 warranty length"
    assert {d["category"] for d in turn.state["documents"]} == {"product"}  # the router's category
    assert "Question: KH-300 warranty length" in grader.last_user_message
    assert "[2] " in grader.last_user_message  # the grader had a choice ...
    assert [d["doc_id"] for d in turn.state["graded"]] == ["warranty"]  # ... and its choice was kept
    assert turn.pieces == ["Two", " years."]  # the router's and grader's JSON was not streamed
    assert turn.answer == "Two years."
    assert answer.system_prompt.count("[1] ") == 1 and "[2] " not in answer.system_prompt


async def test_a_failing_llm_router_and_grader_fall_back_to_rules_and_scores(
    graph: VoiceGraph, server: FakeOpenAIServer
) -> None:
    server.script(Behaviour(status=500), Behaviour(status=429), Behaviour(reply="Two years."))

    turn = await ask(graph, QUESTION, Context(router="llm", grader="llm"))

    assert len(server.chat_requests) == 3
    assert turn.state["route"]["reason"] == "rules"
    assert turn.state["graded"][0]["doc_id"] == "warranty"
    assert turn.answer == "Two years."
    assert turn.state["degraded"] is False


# ---------------------------------------------------------------------------------- the fake itself


async def test_the_fake_server_speaks_the_wire_format_of_the_openai_sdk(server: FakeOpenAIServer) -> None:
    """The fake is only useful if the real client accepts it as OpenAI: streamed chunks with usage,
    plain completions, and typed errors."""
    import openai

    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    messages: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    server.set(reply="Hello there, caller.")

    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there, caller."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"

    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert completion.choices[0].message.content == "Hello there, caller."
    assert completion.object == "chat.completion" and completion.usage is not None

    server.script(Behaviour(status=429, retry_after_s=3), Behaviour(status=500))
    with pytest.raises(openai.RateLimitError) as rate_limited:
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert rate_limited.value.code == "rate_limit_exceeded"
    assert rate_limited.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, extra_headers={"Authorization": ""}
        )
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert [r.system_prompt for r in server.chat_requests[:2]] == ["Be brief.", "Be brief."]
    await client.close()
