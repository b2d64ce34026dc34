"""Only `generate` produces spoken text.

The graph is streamed through livekit-plugins-langchain's stock `LLMAdapter` in `messages` mode
(which speaks every chat-model token and every message any node returns, see STACK_NOTES §1),
with fake router and grader chat models enabled (`Context(router="llm", grader="llm")`). Their
replies carry marker tokens; none may be spoken, while the test proves they really ran and that
their decisions were used. Driven both through an `AgentSession` (as a voice session is) and by
reading the adapter's `LLMStream` chunks directly. A control test shows the same harness does
catch a node whose model tokens leak, so the assertions can fail.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio
from fakes.tool_calling import ToolCallingFakeChatModel, tool_calls
from helpers import PHRASES
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, LLMResult
from langgraph.graph import END, START, MessagesState, StateGraph
from livekit.agents import Agent, AgentSession
from livekit.agents.llm import ChatContext
from livekit.plugins.langchain import LLMAdapter

from graph.builder import build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.documents import Document
from voicerag.services import build_services
from voicerag.settings import load_settings

# One event loop for the module: the knowledge base and its embedding model are built once.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]  # embedded Chroma and a model

ROUTER_REPLY = tool_calls(("search_knowledge_base", {"query": "ROUTERTOKEN warranty"}))  # native tool calling
GRADER_REPLY = '{"relevant": [1]} GRADERTOKEN'
MARKERS = ("ROUTERTOKEN", "GRADERTOKEN", "search_knowledge_base", '"relevant"')
ANSWER = "The warranty is two years."
ANSWER_2 = "Repairs under warranty are free of charge."
QUESTION = "What is the warranty on the KH-300 headphones?"
WARRANTY = "The Kumo Halo KH-300 headphones have a two-year warranty."
INSTRUCTIONS = "You are the Kumo Audio voice assistant."
LLM_CONTEXT = Context(router="llm", grader="llm")

DOCUMENTS = [
    Document(
        id="warranty",
        title="KH-300 warranty",
        text=f"{WARRANTY} Repairs under warranty are free of charge.",
        lang="en",
        category="product",
    ),
    Document(
        id="shipping",
        title="Shipping",
        text="Orders ship within two business days, and delivery to Okinawa takes five days.",
        lang="en",
    ),
    Document(
        id="returns",
        title="Returns",
        text="Products can be returned within 30 days of delivery for a full refund.",
        lang="en",
        category="support",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    """A real knowledge base (embedded Chroma, EMBEDDINGS=use) and no chat model."""
    settings = load_settings(
        _env_file=None,
        voicerag_data_dir=Path(tmp_path_factory.mktemp("kb")),
        embeddings="use",
        chroma_url=None,
        openai_api_key=None,
        openai_base_url=None,
    )
    services = build_services(settings)
    await services.knowledge_base.index_documents(DOCUMENTS)
    await warm_up(services)
    yield services
    await services.aclose()


# ---------------------------------------------------------------------------------- fakes


@dataclass
class Call:
    tags: list[str]
    node: str | None
    prompt: str
    output: str = ""
    tokens: list[str] = field(default_factory=list)


class CallRecorder(BaseCallbackHandler):
    """Records each call of the chat model it is attached to: where it ran, how it was tagged,
    the prompt, and every token it produced."""

    run_inline = True

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._runs: dict[UUID, Call] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt = "\n".join(str(m.content) for m in messages[0])
        call = Call(tags=list(tags or []), node=(metadata or {}).get("langgraph_node"), prompt=prompt)
        self.calls.append(call)
        self._runs[run_id] = call

    def on_llm_new_token(
        self, token: str, *, chunk: ChatGenerationChunk | None = None, run_id: UUID, **kwargs: Any
    ) -> None:
        if run_id in self._runs and token:
            self._runs[run_id].tokens.append(token)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self._runs:
            generation = response.generations[0][0]
            message = getattr(generation, "message", None)
            calls = getattr(message, "tool_calls", None) or []
            self._runs[run_id].output = generation.text + "".join(json.dumps(call["args"]) for call in calls)


def fake_model(*replies: str | AIMessage) -> tuple[GenericFakeChatModel, CallRecorder]:
    """A fake chat model answering `replies` in order (it fails if called once more); it takes
    tools, as the LLM router binds them."""
    recorder = CallRecorder()
    messages = iter([r if isinstance(r, AIMessage) else AIMessage(r) for r in replies])
    model = ToolCallingFakeChatModel(messages=messages, callbacks=[recorder])
    return model, recorder


class BreaksMidStream(GenericFakeChatModel):
    """Streams the first `keep` tokens of its reply, then the connection breaks."""

    keep: int = 2

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        sent = 0
        async for chunk in super()._astream(*args, **kwargs):
            if sent == self.keep:
                raise ConnectionError("stream dropped")
            sent += bool(chunk.text)
            yield chunk


@dataclass
class Fakes:
    services: Services
    router: CallRecorder
    grader: CallRecorder
    answer: CallRecorder


def with_models(base: Services, answers: list[str], *, routes: list[AIMessage] | None = None) -> Fakes:
    """The shared knowledge base with fake router, grader and answer models, one reply per turn."""
    router, router_calls = fake_model(*(routes or [ROUTER_REPLY] * len(answers)))
    grader, grader_calls = fake_model(*[GRADER_REPLY] * len(answers))
    answer, answer_calls = fake_model(*answers)
    services = Services(
        knowledge_base=base.knowledge_base,
        embeddings=base.embeddings,
        options=base.options,
        persona=base.persona,
        chat_model=answer,
        router_model=router,
        grader_model=grader,
    )
    return Fakes(services, router_calls, grader_calls, answer_calls)


# ---------------------------------------------------------------------------------- drivers


async def session_replies(graph: Any, context: Context, *questions: str) -> tuple[list[str], list[str]]:
    """Each question as one turn of an `AgentSession` on the stock adapter. Returns the assistant
    message of each turn, and every assistant message in the session's history at the end."""
    replies: list[str] = []
    async with AgentSession(llm=LLMAdapter(graph, context=context)) as session:
        await session.start(Agent(instructions=INSTRUCTIONS))
        for question in questions:
            result = await session.run(user_input=question)
            event = result.expect.next_event().is_message(role="assistant")
            result.expect.no_more_events()  # one assistant message per turn, nothing else
            replies.append(event.event().item.text_content or "")
        history = [item.text_content or "" for item in session.history.messages() if item.role == "assistant"]
    return replies, history


async def stream_chunks(graph: Any, context: Context, question: str) -> list[tuple[str, str]]:
    """(chunk id, text) of every chunk the adapter's LLMStream yields for one user turn."""
    chat_ctx = ChatContext.empty()
    chat_ctx.add_message(role="system", content=INSTRUCTIONS)
    chat_ctx.add_message(role="user", content=question)
    chunks: list[tuple[str, str]] = []
    async with LLMAdapter(graph, context=context).chat(chat_ctx=chat_ctx) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                chunks.append((chunk.id, chunk.delta.content))
    return chunks


def assert_router_and_grader_ran_muted(fakes: Fakes, turns: int = 1) -> None:
    """They ran (once per turn, in their nodes, tagged `nostream`), produced their marker tokens,
    and their decisions were used: the grader saw the router's rewritten query, and the answer
    model saw only the document the grader kept, out of several retrieved."""
    muted = ((fakes.router, "route_query", "ROUTERTOKEN"), (fakes.grader, "grade_context", "GRADERTOKEN"))
    for recorder, node, marker in muted:
        assert len(recorder.calls) == turns, f"{node} ran {len(recorder.calls)} times"
        for call in recorder.calls:
            assert call.node == node
            assert "nostream" in call.tags
            assert marker in call.output
    for grader_call, answer_call in zip(fakes.grader.calls, fakes.answer.calls, strict=True):
        assert "Question: ROUTERTOKEN warranty" in grader_call.prompt
        assert "[2]" in grader_call.prompt  # more than one candidate was graded ...
        assert "[1] KH-300 warranty" in answer_call.prompt
        assert "[2]" not in answer_call.prompt  # ... and only the one the grader kept was used


def assert_nothing_leaked(text: str) -> None:
    for marker in MARKERS:
        assert marker not in text


# ---------------------------------------------------------------------------------- tests


async def test_an_agent_session_speaks_only_the_answer_model(base: Services) -> None:
    fakes = with_models(base, [ANSWER])

    replies, history = await session_replies(build_graph(fakes.services), LLM_CONTEXT, QUESTION)

    assert replies == [ANSWER]
    assert history == [ANSWER]
    assert_nothing_leaked(replies[0])
    assert_router_and_grader_ran_muted(fakes)


async def test_the_adapter_stream_yields_only_the_answer_models_tokens(base: Services) -> None:
    fakes = with_models(base, [ANSWER])

    chunks = await stream_chunks(build_graph(fakes.services), LLM_CONTEXT, QUESTION)

    spoken = "".join(text for _, text in chunks)
    assert spoken == ANSWER
    assert [text for _, text in chunks] == fakes.answer.calls[0].tokens  # token by token, in order
    assert len({chunk_id for chunk_id, _ in chunks}) == 1  # all of one message: the answer model's
    assert_nothing_leaked(spoken)
    assert_router_and_grader_ran_muted(fakes)


async def test_two_turns_in_one_session_repeat_nothing(base: Services) -> None:
    fakes = with_models(base, [ANSWER, ANSWER_2])

    replies, history = await session_replies(
        build_graph(fakes.services), LLM_CONTEXT, QUESTION, "And are repairs under that warranty free?"
    )

    assert replies == [ANSWER, ANSWER_2]
    assert history == [ANSWER, ANSWER_2]
    # The second turn's model saw the first answer once, as history, and not as a duplicate.
    assert fakes.answer.calls[1].prompt.count(ANSWER) == 1
    assert_router_and_grader_ran_muted(fakes, turns=2)


async def test_small_talk_routed_by_the_llm_speaks_only_the_answer_model(base: Services) -> None:
    small_talk = AIMessage("ROUTERTOKEN")  # no tool call: small talk
    fakes = with_models(base, ["Hello! How can I help?"], routes=[small_talk])

    replies, _ = await session_replies(build_graph(fakes.services), LLM_CONTEXT, "Well hello there, friend")

    assert replies == ["Hello! How can I help?"]
    assert_nothing_leaked(replies[0])
    assert len(fakes.router.calls) == 1 and "ROUTERTOKEN" in fakes.router.calls[0].output
    assert fakes.grader.calls == []  # small talk skips retrieval and grading


async def test_a_stream_cut_short_speaks_the_partial_answer_once_then_the_apology(base: Services) -> None:
    fakes = with_models(base, [ANSWER])
    answer_calls = CallRecorder()
    fakes.services.chat_model = BreaksMidStream(messages=iter([AIMessage(ANSWER)]), callbacks=[answer_calls])

    replies, _ = await session_replies(build_graph(fakes.services), LLM_CONTEXT, QUESTION)

    partial = "".join(answer_calls.calls[0].tokens)
    assert partial and ANSWER.startswith(partial) and partial != ANSWER
    assert replies == [partial + PHRASES.cut_short["en"]]  # the partial text is not repeated by the node's output


async def test_without_any_model_the_extractive_answer_is_spoken_and_nothing_else(base: Services) -> None:
    services = Services(
        knowledge_base=base.knowledge_base, embeddings=base.embeddings, options=base.options, persona=base.persona
    )
    graph = build_graph(services)
    expected = (await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=LLM_CONTEXT))["answer"]

    replies, history = await session_replies(graph, LLM_CONTEXT, QUESTION)

    assert expected.startswith(PHRASES.extractive_prefix["en"]) and WARRANTY in expected
    assert replies == [expected]
    assert history == [expected]


async def test_the_harness_catches_a_node_whose_model_tokens_leak() -> None:
    """Control: a router called without `nostream` is spoken by the stock adapter, so the
    assertions above would fail if a node of ours leaked."""
    router, _ = fake_model("ROUTERTOKEN warranty")  # text, so that a careless stream has tokens to leak
    answer, _ = fake_model(ANSWER)

    async def route(state: MessagesState) -> dict[str, Any]:
        await router.ainvoke(state["messages"])  # result unused, as a careless router might
        return {}

    async def generate(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await answer.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("route", route)
    builder.add_node("generate", generate)
    builder.add_edge(START, "route")
    builder.add_edge("route", "generate")
    builder.add_edge("generate", END)

    replies, _ = await session_replies(builder.compile(), Context(), QUESTION)

    assert "ROUTERTOKEN" in replies[0]
    assert replies[0].endswith(ANSWER)
