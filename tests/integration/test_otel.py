"""OpenTelemetry from the text front doors (`voicerag/tracing/otel.py`, `otel_spans.py`): with
OTEL_EXPORTER_OTLP_ENDPOINT, an `ask` turn is one trace at a local OTLP/HTTP receiver — root
`voicerag`, a span per node, the knowledge-base retrieval, the sample database source as a tool
call, each chat-model call with its usage — and no caller's personal data in any of it; a turn cut
short ends every span it opened, marked cancelled; a collector that hangs or refuses never holds
the command's exit past the tracing close timeout.

The real command in subprocesses (offline embedding model, the sample database seeded in the data
dir), the chat model faked (`fakes.openai_server`), the collector faked (`fakes.otlp_receiver`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer, routing_grading_answering
from fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from helpers import SAMPLE_PII, jsonl, services_with_chat_model, write
from ingest_driver import free_port
from langchain_core.messages import HumanMessage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from graph.builder import build_graph
from graph.context import Context
from retrievers.documents import Document
from voicerag.cli.turn import observed_turn
from voicerag.tracing import CLOSE_TIMEOUT_S
from voicerag.tracing.otel_spans import span_handlers
from voicerag.tracing.otel_writer import SpanWriter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

VOICERAG = str(Path(sys.executable).parent / "voicerag")
PHONE, EMAIL = SAMPLE_PII["mobile phone"], SAMPLE_PII["e-mail"]
QUESTION = f"Is the Kumo Halo in stock? Call me on {PHONE} or write to {EMAIL}."
USER = "C-101518"
ANSWER = "Yes: the Shibuya store has the Kumo Halo in stock."
DOCUMENT = {"id": "kh300", "title": "Kumo Halo KH-300", "text": "The Kumo Halo KH-300 has a 2-year warranty."}
NODES = ("route_query", "retrieve", "call_apis", "grade_context", "generate")
EXIT_SLACK_S = 2.0  # interpreter shutdown and a log line on a loaded machine, not a measurement


@dataclass
class Asked:
    code: int
    stdout: str
    stderr: str
    ended: float  # time.time() when the process had exited
    spans: list[ReceivedSpan] = field(default_factory=list)  # what the collector received
    requests: int = 0  # export requests the collector got (answered or not)

    def turn_line(self) -> dict[str, Any]:
        lines = [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]
        (line,) = [line for line in lines if line.get("logger") == "voicerag.turns"]
        return line

    def exit_delay_s(self) -> float:
        """From the turn's log line to the process's exit."""
        return self.ended - datetime.fromisoformat(self.turn_line()["timestamp"]).timestamp()


def ask(data: Path, chat: FakeOpenAIServer, endpoint: str) -> Asked:
    env = {
        **os.environ,
        "VOICERAG_DATA_DIR": str(data),
        "EMBEDDINGS": "use",
        "SOURCES_FILE": "",  # the sample database source only (its queries file and seeded SQLite: defaults)
        "OPENAI_BASE_URL": chat.base_url,
        "OPENAI_API_KEY": "test",
        "GRADER": "llm",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "voicerag-test",
    }
    args = [VOICERAG, "ask", QUESTION, "--json", "--user", USER, "--tenant", "acme"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=240)
    return Asked(done.returncode, done.stdout, done.stderr, time.time())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("otel")
    documents = write(folder, "docs.jsonl", jsonl(DOCUMENT))
    env = {**os.environ, "VOICERAG_DATA_DIR": str(folder / "data"), "EMBEDDINGS": "use"}
    done = subprocess.run([VOICERAG, "ingest", str(documents)], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    return folder / "data"


@pytest.fixture(scope="module")
def chat() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(Behaviour(reply=routing_grading_answering(ANSWER))) as server:
        yield server


@pytest.fixture(scope="module")
def asked(data: Path, chat: FakeOpenAIServer) -> dict[str, Asked]:
    """The same `ask` at once with a working collector, a hanging one and none listening (the
    same load on each: their exit delays compare)."""
    with OtlpReceiver() as working, OtlpReceiver() as hanging:
        hanging.hang = True
        endpoints = {"working": working.url, "hanging": hanging.url, "refusing": f"http://127.0.0.1:{free_port()}"}
        with ThreadPoolExecutor(len(endpoints)) as pool:
            runs = dict(zip(endpoints, pool.map(lambda url: ask(data, chat, url), endpoints.values()), strict=True))
        runs["working"].spans, runs["working"].requests = working.spans(), working.requests
        runs["hanging"].requests = hanging.requests
    return runs


def children(parent: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id]


def test_an_ask_turn_is_one_trace_of_nodes_retrieval_source_and_model_calls(asked: dict[str, Asked]) -> None:
    run = asked["working"]
    assert run.code == 0 and json.loads(run.stdout)["answer"] == ANSWER, run.stderr
    spans = run.spans  # all exported before the command exited (its tracing close)
    assert len({s.trace_id for s in spans}) == 1, "one trace per turn"
    (root,) = [s for s in spans if not s.parent_id]
    assert root.name == "voicerag" and root.service == "voicerag-test" and root.status == "unset"
    turn = run.turn_line()
    attributes = root.attributes
    assert attributes["voicerag.turn_id"] == turn["turn_id"] and attributes["voicerag.session_id"] == turn["session_id"]
    assert attributes["voicerag.front_door"] == "ask" and attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert attributes["enduser.pseudo.id"].startswith("u-") and attributes["voicerag.tenant"] == "acme"
    assert attributes["voicerag.route"] == "lookup" and attributes["voicerag.degraded"] is False
    assert attributes["voicerag.question"] == "Is the Kumo Halo in stock? Call me on [PHONE] or write to [EMAIL]."
    assert attributes["voicerag.documents.ids"] == ["kh300"]
    assert attributes["voicerag.tokens.input"] == turn["tokens"]["input"] > 0
    assert attributes["voicerag.llm_calls"] == 2  # grader, answer (the rules route)

    nodes = {s.name: s for s in children(root, spans)}
    assert set(nodes) == set(NODES)
    (retrieval,) = children(nodes["retrieve"], spans)
    assert retrieval.name == "retrieval knowledge_base" and retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    assert retrieval.attributes["voicerag.documents.ids"] == ["kh300"]
    (tool,) = children(nodes["call_apis"], spans)
    assert tool.name == "execute_tool database_query"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "database_query"
    assert tool.attributes["voicerag.source.status"] == "ok" and tool.attributes["voicerag.source.elapsed_ms"] > 0
    assert "product_code" in tool.attributes["voicerag.source.params"]
    calls = [s for node in ("grade_context", "generate") for s in children(nodes[node], spans)]
    assert [c.name for c in calls] == ["chat gpt-4o-mini"] * 2
    for call in calls:
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert call.attributes["gen_ai.usage.input_tokens"] > 0 and call.attributes["gen_ai.usage.output_tokens"] > 0
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == turn["tokens"]["input"]

    # No personal data reaches the collector; the control: the command was given it, and said it.
    assert PHONE in QUESTION and EMAIL in QUESTION
    exported = json.dumps([(s.name, s.attributes, s.status_message) for s in spans], ensure_ascii=False)
    assert PHONE not in exported and EMAIL not in exported and USER not in exported


async def test_a_turn_cut_short_ends_every_span_it_opened_marked_cancelled(tmp_path: Path) -> None:
    """The answer model never answers and the turn is cancelled (a barge-in, Ctrl-C): the root,
    `generate` and its model call end as cancelled; the nodes before it ended fine."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    writer = SpanWriter(provider.get_tracer("test"))
    with FakeOpenAIServer(Behaviour(hang=True)) as model:
        async with services_with_chat_model(tmp_path, model.base_url, [Document(**DOCUMENT, lang="en")]) as services:
            turn = asyncio.create_task(
                observed_turn(
                    build_graph(services), [HumanMessage("How long is the KH-300's warranty?")], Context(), "ask", [],
                    tracers=[span_handlers(writer)],
                )
            )  # fmt: skip
            for _ in range(1000):  # bounded: 10 s for the answer's request to arrive
                if model.in_flight:
                    break
                await asyncio.sleep(0.01)
            assert model.in_flight, "the answer model was never called"
            turn.cancel()
            with pytest.raises(asyncio.CancelledError):
                await turn

    assert writer.close(5.0)  # the turn's spans built
    spans = {s.name: s for s in exporter.get_finished_spans()}
    attributes = {name: dict(s.attributes or {}) for name, s in spans.items()}
    assert {"voicerag", *(n for n in NODES if n != "call_apis"), "chat gpt-4o-mini"} <= set(spans)
    for name in ("voicerag", "generate", "chat gpt-4o-mini"):
        assert spans[name].status.status_code is StatusCode.ERROR and spans[name].status.description == "cancelled"
        assert attributes[name]["error.type"] == "cancelled"
    assert attributes["voicerag"]["voicerag.cancelled"] is True
    assert spans["route_query"].status.status_code is StatusCode.UNSET  # control: what finished is not marked
    assert len({s.context.trace_id for s in spans.values()}) == 1


def test_a_hanging_or_refusing_collector_never_holds_the_exit(asked: dict[str, Asked]) -> None:
    """Each command exits within the tracing close timeout of the working run's exit (from its
    turn's log line), with a warning that spans were dropped when the collector hangs."""
    working = asked["working"]
    assert asked["hanging"].requests >= 1  # control: the export was attempted, and got no answer
    for name in ("hanging", "refusing"):
        run = asked[name]
        assert run.code == 0 and json.loads(run.stdout)["answer"] == ANSWER, run.stderr
        bound = working.exit_delay_s() + CLOSE_TIMEOUT_S + EXIT_SLACK_S
        assert run.exit_delay_s() <= bound, (name, run.exit_delay_s(), working.exit_delay_s())
    assert "spans not exported within" in asked["hanging"].stderr
    assert "spans not exported" not in working.stderr
