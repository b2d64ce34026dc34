"""Refused turns through the real graph and the real front doors: over a rate limit or too long, a
turn searches nothing, calls no source and no model, and says the persona's sentence.

Real parts: the compiled graph over embedded Chroma (`use` model), a counting test source, the
chat model's real client against the fake OpenAI-compatible server, `voicerag ask|chat` as
subprocesses, a real `redis-server` shared by two processes; a Redis that is gone (a closed port) and
one that hangs (a TCP server that accepts and never answers).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ingest_driver
import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer
from fakes.redis_server import free_port
from fakes.sources import named
from helpers import PHRASES, offline_services
from langchain_core.messages import HumanMessage

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.documents import Document
from retrievers.sources.registry import SourceRegistry
from retrievers.turn.admission import TurnAdmission
from voicerag.cli.turn import run_turn
from voicerag.services import build_chat_model
from voicerag.settings import load_settings

pytestmark = pytest.mark.integration

VOICERAG = str(Path(sys.executable).parent / "voicerag")
WARRANTY = "The KH-300 has a two-year warranty."
QUESTION, QUESTION_JA = "What is the warranty on the KH-300?", "KH-300の保証期間は？"
LONG_QUESTION = ("What is the warranty on the KH-300 headphones? " * 600)[:28_000]
REDIS_BOUND_S = 0.2  # TurnAdmission's default: what a dead or hanging Redis may cost one turn
SLACK_S = 0.15  # a loaded machine


class CountingSearch:
    """Wraps the knowledge base's search: how many searches the graph made."""

    def __init__(self, services: Services) -> None:
        self.calls = 0
        self._search = services.knowledge_base.search

        async def search(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await self._search(*args, **kwargs)

        services.knowledge_base.search = search  # type: ignore[method-assign]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    built = offline_services(tmp_path)
    await built.knowledge_base.index_documents(
        [
            Document(id="w", title="Warranty", text=WARRANTY, lang="en"),
            Document(id="w-ja", title="保証", text="KH-300の保証期間は二年間です。", lang="ja"),
        ]
    )
    await warm_up(built)
    yield built
    await built.aclose()


def limited(services: Services, **limits: Any) -> TurnAdmission:
    """Replace the services' admission (built from settings, without limits) by one with `limits`."""
    assert services.admission is not None and services.admission.max_question_chars == 1000  # wired from settings
    services.admission = TurnAdmission(max_question_chars=1000, **limits)
    return services.admission


async def ask(graph: VoiceGraph, question: str, context: Context | None = None) -> tuple[dict[str, Any], str]:
    """One turn as `voicerag ask` runs it; returns the final state and what was streamed."""
    streamed: list[str] = []
    state = await run_turn(graph, [HumanMessage(question)], context or Context(), streamed.append)
    return state, "".join(streamed)


# ---------------------------------------------------------------------------------- the graph


@pytest.fixture
def chat_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(Behaviour(reply="The warranty is two years.")) as server:
        yield server


@pytest.mark.parametrize(("question", "language"), [(QUESTION, "en"), (QUESTION_JA, "ja")])
async def test_over_the_limit_a_turn_looks_nothing_up_and_says_so_in_the_callers_language(
    services: Services, question: str, language: str
) -> None:
    limited(services, per_user="2/minute")
    source = named("KH-300")  # called by every question naming the KH-300
    services.sources = SourceRegistry([source])
    searches = CountingSearch(services)
    graph = build_graph(services)
    caller = Context(user_id="C-101518")

    for _ in range(2):  # control: admitted turns do search and call the source
        state, _ = await ask(graph, question, caller)
        assert state["route"]["kind"] == "lookup"
    assert (searches.calls, len(source.started)) == (2, 2)

    state, streamed = await ask(graph, question, caller)
    assert state["route"] == {"kind": "refused", "sources": [], "category": None, "reason": "rate_limited"}
    assert state["answer"] == streamed == PHRASES.rate_limited[language]  # streamed like every fixed sentence
    assert state["degraded"] is False and state["documents"] == [] and state["api_results"] == []
    assert (searches.calls, len(source.started)) == (2, 2)  # nothing more was looked up

    other, _ = await ask(graph, question, Context(user_id="C-2"))  # another caller is not affected
    assert other["route"]["kind"] == "lookup"


async def test_a_tenant_over_its_limit_is_refused_for_every_caller_of_it(services: Services) -> None:
    limited(services, per_tenant="2/minute")
    graph = build_graph(services)
    kinds = [
        (await ask(graph, QUESTION, Context(user_id=f"u{n}", tenant="acme")))[0]["route"]["kind"] for n in range(3)
    ]
    assert kinds == ["lookup", "lookup", "refused"]
    state, _ = await ask(graph, QUESTION, Context(user_id="u9", tenant="globex"))
    assert state["route"]["kind"] == "lookup"


async def test_a_question_too_long_is_refused_at_once_without_search_or_model(
    services: Services, chat_server: FakeOpenAIServer
) -> None:
    services.chat_model = build_chat_model(
        load_settings(_env_file=None, openai_base_url=chat_server.base_url, openai_api_key="test")
    )
    searches = CountingSearch(services)
    graph = build_graph(services)

    started = time.monotonic()
    state, streamed = await ask(graph, LONG_QUESTION)
    elapsed_s = time.monotonic() - started
    assert state["route"]["kind"] == "refused" and state["route"]["reason"] == "question_too_long"
    assert state["answer"] == streamed == PHRASES.question_too_long["en"]
    assert searches.calls == 0 and chat_server.chat_requests == []
    assert elapsed_s < 1.0, elapsed_s  # behaviour, not a figure: no embedding, no search, no model
    print(f"\n28,000-character question refused in {elapsed_s * 1000:.1f} ms")

    state, _ = await ask(graph, "KH-300の保証期間は？" * 100, Context(router="llm"))  # 1,300 characters, in Japanese
    assert state["answer"] == PHRASES.question_too_long["ja"]
    assert searches.calls == 0 and chat_server.chat_requests == []  # not even the LLM router was asked

    state, _ = await ask(graph, QUESTION)  # control: a normal question searches and asks the model
    assert state["route"]["kind"] == "lookup" and searches.calls == 1 and len(chat_server.chat_requests) == 1


# ---------------------------------------------------------------------------------- Redis down or hanging


@pytest.fixture
def hanging_redis() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.quiet  # a time bound (tests/quiet.py)
@pytest.mark.parametrize("redis", ["dead", "hanging"])
async def test_a_redis_that_is_down_or_hangs_costs_a_turn_at_most_the_bound_and_limits_still_hold(
    services: Services, hanging_redis: str, caplog: pytest.LogCaptureFixture, redis: str
) -> None:
    url = hanging_redis if redis == "hanging" else f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    admission = limited(services, per_user="2/minute", redis_url=url)
    graph = build_graph(services)
    caplog.set_level(logging.WARNING, logger="retrievers.turn.admission")

    checks_s: list[float] = []  # how long each turn's admission took
    refusal = admission.refusal

    async def timed_refusal(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await refusal(*args, **kwargs)
        finally:
            checks_s.append(time.monotonic() - started)

    admission.refusal = timed_refusal  # type: ignore[method-assign]
    first, second, third = [(await ask(graph, QUESTION, Context(user_id="C-1")))[0] for _ in range(3)]
    assert WARRANTY in first["answer"] and WARRANTY in second["answer"]  # admitted (fail open) ...
    assert third["route"]["reason"] == "rate_limited"  # ... and counted in this process meanwhile
    assert checks_s[0] < REDIS_BOUND_S + SLACK_S, checks_s  # the one turn that tried Redis
    assert admission.redis_errors == 1  # then Redis was left alone: no turn waited on it again
    warnings = [r.getMessage() for r in caplog.records if r.name == "retrievers.turn.admission"]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0] and url not in warnings[0]
    print(f"\n{redis} Redis: admission took {', '.join(f'{s * 1000:.1f}' for s in checks_s)} ms in the 3 turns")


# ---------------------------------------------------------------------------------- front doors


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base on disk for the commands below, built once."""
    folder = tmp_path_factory.mktemp("kb")

    async def build() -> None:
        built = offline_services(folder)
        await built.knowledge_base.index_documents([Document(id="w", title="Warranty", text=WARRANTY, lang="en")])
        await built.aclose()

    asyncio.run(build())
    return folder


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any voicerag setting, plus the test's own (the fast offline model)."""
    return ingest_driver.cli_env(data_dir, **{"EMBEDDINGS": "use", **extra})


def voicerag_ask(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICERAG, "ask", *args], env=cli_env(data_dir, **env), capture_output=True, text=True, timeout=120
    )


def voicerag_chat(data_dir: Path, questions: list[str], *args: str, **env: str) -> list[str]:
    """What `voicerag chat` said, one entry per question."""
    done = subprocess.run(
        [VOICERAG, "chat", *args],
        input="".join(q + "\n" for q in questions),
        env=cli_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [line.split("agent> ", 1)[1].strip() for line in done.stdout.splitlines() if "agent> " in line]


def test_chat_refuses_the_third_question_of_a_caller_over_the_limit(data_dir: Path) -> None:
    said = voicerag_chat(data_dir, [QUESTION] * 3, RATE_LIMIT_PER_USER="2/minute")
    assert len(said) == 3
    assert WARRANTY in said[0] and WARRANTY in said[1]
    assert said[2] == PHRASES.rate_limited["en"]


def test_a_long_question_through_ask_is_refused_at_once(data_dir: Path) -> None:
    started = time.monotonic()
    done = voicerag_ask(data_dir, LONG_QUESTION)
    elapsed_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == PHRASES.question_too_long["en"]
    print(f"\nvoicerag ask, 28,000 characters: exit 0 in {elapsed_s:.2f} s (process, model load included)")


def test_ask_limits_span_invocations_only_when_redis_shares_them(data_dir: Path, redis_url: str) -> None:
    user = f"C-{time.monotonic_ns()}"  # a caller of its own on the session's Redis
    with ThreadPoolExecutor(2) as pool:
        # Control, meanwhile: without Redis each process counts from zero (in memory), so the limit never bites.
        alone = pool.map(
            lambda _: voicerag_ask(data_dir, QUESTION, "--user", user, RATE_LIMIT_PER_USER="1/minute"), range(2)
        )
        shared = [voicerag_ask(data_dir, QUESTION, "--user", user, RATE_LIMIT_PER_USER="2/minute", REDIS_URL=redis_url)
                  for _ in range(3)]  # fmt: skip
        alone_runs = list(alone)
    assert [d.returncode for d in shared] == [0, 0, 0], [d.stderr for d in shared]
    assert [PHRASES.rate_limited["en"] in d.stdout for d in shared] == [False, False, True]
    assert all(WARRANTY in d.stdout for d in alone_runs), [d.stdout for d in alone_runs]


def test_two_processes_share_one_limit_through_redis(data_dir: Path, redis_url: str) -> None:
    user = f"C-{time.monotonic_ns()}"
    env = {"RATE_LIMIT_PER_USER": "4/minute", "REDIS_URL": redis_url}
    with ThreadPoolExecutor(2) as pool:  # at the same time
        said = list(pool.map(lambda _: voicerag_chat(data_dir, [QUESTION] * 3, "--user", user, **env), range(2)))
    refused = [s == PHRASES.rate_limited["en"] for chat in said for s in chat]
    assert len(refused) == 6
    assert refused.count(False) == 4 and refused.count(True) == 2, said  # together: 4 answered, then refused
    pattern = [["refused" if s == PHRASES.rate_limited["en"] else "answered" for s in chat] for chat in said]
    print(f"\ntwo chat processes, one caller, 4/minute in Redis: {pattern}")
