"""A voice turn is one OpenTelemetry trace (and, in the console, one LangSmith trace too): LiveKit's
spans and the graph's, on the provider the worker makes (`voicerag/tracing/otel.py`, given to
LiveKit as the worker does), exported over OTLP/HTTP to a local receiver. The graph's root span
`voicerag` hangs from LiveKit's turn: it shares the trace of LiveKit's `agent_turn` and descends
from it through `llm_node`; LiveKit's transcripts (unmasked) are withheld, the graph's texts are
masked.

LiveKit's `AgentSession` drives the `Assistant` over the real graph (typed turn, fake chat model:
`conftest.py`)."""

from __future__ import annotations

import ctypes.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.langsmith_server import FakeLangSmith
from fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from helpers import SAMPLE_PII, write
from livekit.agents import AgentSession, telemetry
from livekit.agents.voice.run_result import RunResult
from opentelemetry import trace as trace_api
from test_console_smoke import VOICERAG, Terminal, clean_env

from agent.assistant import Assistant
from graph.builder import build_graph
from graph.services import Services
from voicerag.settings import load_settings
from voicerag.tracing import open_tracing

pytestmark = pytest.mark.integration

PHONE, EMAIL = SAMPLE_PII["mobile phone"], SAMPLE_PII["e-mail"]
QUESTION = f"What is the warranty on the Kumo Halo? Call me on {PHONE} or write to {EMAIL}."


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def subtree(root: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if root in OtlpReceiver.ancestors(s, spans)]


@pytest.mark.asyncio(loop_scope="module")
async def test_the_graphs_spans_descend_from_livekits_turn_span(
    services: Services, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    settings = load_settings(
        _env_file=None, voicerag_data_dir=tmp_path, otel_exporter_otlp_endpoint=receiver.url,
        otel_service_name="voice-test",
    )  # fmt: skip
    tracing = open_tracing(settings)
    assert tracing.otel is not None
    tracing.otel.use_for_livekit()  # what voicerag/worker.py's prewarm does
    try:
        assistant = Assistant(
            build_graph(services), persona=services.persona, session_id="room-7", tracers=tracing.tracers
        )
        async with AgentSession() as session:
            await session.start(assistant)
            result: RunResult[None] = await session.run(user_input=QUESTION)
            said = result.expect.next_event().is_message(role="assistant").event().item.text_content or ""
        assert "2-year warranty" in said
    finally:
        tracing.close(2.0)
        telemetry.set_tracer_provider(trace_api.NoOpTracerProvider())  # LiveKit's spans off again

    spans = receiver.spans()
    (root,) = receiver.named("voicerag")
    assert root.service == "voice-test" and root.attributes["voicerag.front_door"] == "voice"
    assert root.attributes["voicerag.turn_id"] == assistant.turns[-1]["turn_id"]
    assert root.attributes["voicerag.session_id"] == "room-7"
    assert root.parent_id, "the graph's root must hang from LiveKit's turn"
    lineage = [s.name for s in OtlpReceiver.ancestors(root, receiver.trace(root.trace_id))]
    assert "llm_node" in lineage and "agent_turn" in lineage, lineage
    turn = next(s for s in receiver.trace(root.trace_id) if s.name == "agent_turn")
    assert turn.scope == "livekit-agents" and root.trace_id == turn.trace_id

    graph = subtree(root, spans)
    assert {"route_query", "retrieve", "grade_context", "generate", "retrieval knowledge_base"} <= {
        s.name for s in graph
    }
    assert all(s.trace_id == root.trace_id for s in graph)
    assert "[PHONE]" in root.attributes["voicerag.question"]
    exported = json.dumps([(s.attributes, s.status_message) for s in spans], ensure_ascii=False)
    assert PHONE not in exported and EMAIL not in exported  # LiveKit's transcripts withheld, ours masked


def test_a_console_turn_is_one_trace_in_opentelemetry_and_in_langsmith(tmp_path: Path, receiver: OtlpReceiver) -> None:
    """`voicerag agent console --text` (the worker's prewarm, in tmux as `test_console_smoke.py` runs
    it) with OTEL_EXPORTER_OTLP_ENDPOINT and LANGSMITH_TRACING: a small-talk turn's graph spans
    reach the collector inside LiveKit's `agent_turn`, and the same turn is one LangSmith trace,
    front door `voice`; both exported while the console runs (it is killed: no exit flush)."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (`make test` installs it: scripts/system-deps.sh)")
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("libportaudio2 is not installed (`make test` installs it: scripts/system-deps.sh)")
    with FakeLangSmith() as langsmith:
        env = clean_env(
            tmp_path / "data",
            SOURCES_FILE=str(write(tmp_path, "sources.yaml", "")),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            LANGSMITH_TRACING="true",
            LANGSMITH_ENDPOINT=langsmith.url,
            LANGSMITH_API_KEY="lsv2-test",
        )
        console = Terminal(env)
        try:
            console.start([VOICERAG, "agent", "console", "--text"], tmp_path)
            pane = console.wait_for(lambda text: "Type to talk" in text, 60)
            assert "Type to talk" in pane, f"no prompt within 60 s:\n{pane}"
            console.ask("thank you")  # small talk: a whole turn of the graph
            (root,) = receiver.wait_for("voicerag", 20)
            receiver.wait_for("agent_turn", 20)
            langsmith.wait_for(lambda s: any(r.get("end_time") for r in s.roots()), 20)
        finally:
            console.close()
        (traced,) = langsmith.roots()
    assert root.service == "voicerag" and root.attributes["voicerag.front_door"] == "voice"
    lineage = OtlpReceiver.ancestors(root, receiver.trace(root.trace_id))
    assert [s.name for s in lineage if s.scope == "livekit-agents"][:4] == [
        "llm_request_run", "llm_request", "llm_node", "agent_turn",
    ]  # fmt: skip
    assert {"route_query", "generate"} <= {s.name for s in subtree(root, receiver.spans())}
    metadata = traced["extra"]["metadata"]
    assert traced["name"] == "voicerag" and metadata["front_door"] == "voice" and metadata["route"] == "small_talk"
    assert metadata["turn_id"] == root.attributes["voicerag.turn_id"]  # the same turn in both
