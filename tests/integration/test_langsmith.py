"""LangSmith traces (`LANGSMITH_TRACING=true`), recorded by a local fake LangSmith API
(`fakes/langsmith_server.py`): `voicerag ask` and `chat` as subprocesses send one trace per turn,
root run `voicerag` with the turn's metadata (a pseudonymous user id; the session as the thread),
the retriever run's documents and the chat models' token usage, every string masked; LangChain adds
no unmasked tracer of its own; a LangSmith that hangs or refuses connections delays the exit by no
more than its close timeout."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.langsmith_server import FakeLangSmith
from fakes.openai_server import Behaviour, FakeOpenAIServer, routing_grading_answering
from helpers import SAMPLE_PII, jsonl, write
from test_turn_records import environment

from voicerag.tracing.pseudonyms import pseudonymizer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

VOICERAG = str(Path(sys.executable).parent / "voicerag")
PHONE, EMAIL, CARD = SAMPLE_PII["mobile phone"], SAMPLE_PII["e-mail"], SAMPLE_PII["card"]
QUESTION = f"How long is the warranty of the Zephyr Z-9? Call me on {PHONE}, write to {EMAIL}, card {CARD}."
ANSWER = "The Zephyr Z-9 has a warranty of 7 years."
DOCUMENTS = ({"id": "zephyr-warranty", "title": "Zephyr warranty", "text": ANSWER},)
USER, KEY = "C-101518", "a-test-key-for-pseudonyms-0123456789"
CALLER = ("--user", USER, "--roles", "member", "--tenant", "acme")
EXIT_BOUND_S = 2.0  # answer on stdout → process gone, whatever LangSmith does


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("langsmith") / "data"
    documents = write(data.parent, "docs.jsonl", jsonl(*DOCUMENTS))
    done = subprocess.run([VOICERAG, "ingest", str(documents)], env=environment(data), capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return data


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(Behaviour(reply=routing_grading_answering(ANSWER))) as server:
        yield server


@pytest.fixture
def langsmith() -> Iterator[FakeLangSmith]:
    with FakeLangSmith() as server:
        yield server


def traced(data: Path, endpoint: str, model: FakeOpenAIServer, **env: str) -> dict[str, str]:
    return environment(
        data, LANGSMITH_TRACING="true", LANGSMITH_ENDPOINT=endpoint, LANGSMITH_API_KEY="ls-test",
        LANGSMITH_PROJECT="voicerag-tests", TRACE_USER_ID_KEY=KEY, OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY="test", LLM_MODEL="gpt-4o-mini", ROUTER="llm", GRADER="llm", **env,
    )  # fmt: skip


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VOICERAG, *args], input=stdin, env=env, capture_output=True, text=True, timeout=240)


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    return dict((run.get("extra") or {}).get("metadata") or {})


def assert_nothing_raw(server: FakeLangSmith) -> None:
    sent = "\n".join(server.bodies)
    assert sent, "nothing was sent"
    for value in (PHONE, EMAIL, CARD, USER):
        assert value not in sent and json.dumps(value)[1:-1] not in sent, value


def test_ask_sends_one_masked_trace_with_the_turns_metadata(
    data: Path, model: FakeOpenAIServer, langsmith: FakeLangSmith
) -> None:
    done = run(["ask", QUESTION, *CALLER], traced(data, langsmith.url, model))
    assert done.returncode == 0 and "7 years" in done.stdout, done.stderr
    langsmith.wait_for(lambda s: any(r.get("end_time") for r in s.roots()))

    (root,) = langsmith.roots()  # one trace: nothing else (no default LangChain tracer) sent a root
    assert set(langsmith.traces()) == {root["trace_id"]}
    assert root["name"] == "voicerag" and root["session_name"] == "voicerag-tests" and root["end_time"]
    meta = metadata(root)
    assert meta["user_id"] == pseudonymizer(KEY.encode())(USER) != USER
    assert meta["thread_id"] == meta["session_id"] and meta["session_id"]
    assert (meta["front_door"], meta["tenant"], meta["route"], meta["degraded"]) == ("ask", "acme", "lookup", False)
    assert meta["language"] == "en" and meta["llm_calls"] == 3 and meta["turn_id"]
    assert "[PHONE]" in json.dumps(root["inputs"]) and "7 years" in json.dumps(root["outputs"])

    runs = list(langsmith.runs().values())
    assert all(metadata(r)["session_id"] == meta["session_id"] for r in runs)  # threads count child runs too
    (retriever,) = [r for r in runs if r["run_type"] == "retriever"]
    assert retriever["name"] == "knowledge_base"
    documents = retriever["outputs"]["documents"]
    assert documents[0]["page_content"] == ANSWER and documents[0]["metadata"]["id"] == "zephyr-warranty"
    models = [r for r in runs if r["run_type"] == "llm"]
    assert len(models) == 3 and all(metadata(r)["usage_metadata"]["total_tokens"] > 0 for r in models)
    assert {r["name"] for r in runs if r["run_type"] == "chain"} >= {"voicerag", "route_query", "generate"}
    # The runs are built after the turn (off its path), with the times their events happened:
    nodes = {r["name"]: r for r in runs if r["run_type"] == "chain"}
    assert at(nodes["route_query"], "end_time") <= at(retriever, "start_time") <= at(nodes["generate"], "start_time")
    took_ms = (at(root, "end_time") - at(root, "start_time")).total_seconds() * 1000
    assert abs(took_ms - meta["total_ms"]) < 50, (took_ms, meta["total_ms"])
    assert_nothing_raw(langsmith)


def test_a_chat_session_is_one_thread_of_one_trace_per_turn(
    data: Path, model: FakeOpenAIServer, langsmith: FakeLangSmith
) -> None:
    done = run(["chat", *CALLER], traced(data, langsmith.url, model), stdin=f"{QUESTION}\nAnd the warranty again?\n")
    assert done.returncode == 0, done.stderr
    langsmith.wait_for(lambda s: sum(1 for r in s.roots() if r.get("end_time")) == 2)
    roots = langsmith.roots()
    assert len(roots) == 2 and len(langsmith.traces()) == 2
    sessions = {metadata(r)["session_id"] for r in roots}
    turns = {metadata(r)["turn_id"] for r in roots}
    assert len(sessions) == 1 and len(turns) == 2 and all(metadata(r)["front_door"] == "chat" for r in roots)
    assert_nothing_raw(langsmith)


def at(run: dict[str, Any], key: str) -> datetime:
    value = run[key]
    return datetime.fromisoformat(value) if isinstance(value, str) else datetime.fromtimestamp(value / 1000, UTC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answer_to_exit(env: dict[str, str]) -> tuple[float, str, str]:
    """`voicerag ask`: seconds from its answer on stdout to its exit."""
    process = subprocess.Popen(
        [VOICERAG, "ask", QUESTION, *CALLER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    try:
        answered = None
        for line in process.stdout:
            if "7 years" in line:
                answered = time.monotonic()
                break
        assert answered is not None, process.stderr.read() if process.stderr else ""
        rest, stderr = process.communicate(timeout=60)
        return time.monotonic() - answered, rest, stderr
    finally:
        process.kill()


@pytest.mark.quiet  # a time bound (tests/quiet.py)
@pytest.mark.parametrize("backend", ["hangs", "refuses connections"])
def test_a_langsmith_that_is_down_delays_the_exit_by_at_most_two_seconds(
    backend: str, data: Path, model: FakeOpenAIServer, langsmith: FakeLangSmith
) -> None:
    if backend == "hangs":
        langsmith.hang()
        endpoint = langsmith.url
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    seconds, _, stderr = answer_to_exit(traced(data, endpoint, model))
    assert seconds <= EXIT_BOUND_S, (seconds, stderr)
    if backend == "hangs":
        assert langsmith.requests, "the client never reached the hanging server"  # control
