"""`langgraph dev` serves `voicerag/studio.py:graph` (langgraph.json) and answers from a knowledge base.

One server for the module: a tiny knowledge base is ingested into a temporary data dir with the
`voicerag ingest` command, then `langgraph dev --no-reload` starts from the project root (where
langgraph.json, `dependencies: ["."]` and the graph path are resolved), with analytics, the
version check and LangSmith tracing off. Its chat model is the real `ChatOpenAI` client talking
to the fake OpenAI-compatible server of `tests/fakes` (running in this process), which quotes
the first document of its context, so token streaming, the prompt and the fallback to
extractive answers are all exercised through the server. The server log goes to the temporary
dir, never into the project. Teardown deletes the test's threads (so `.langgraph_api/`, which
`langgraph dev` always writes in its working directory and which is gitignored, does not grow),
kills the server's whole process group, and checks that nothing still listens on its port and
that the project holds no new files.

Run with `-s` to see the measured start-up and answer latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.langsmith_server import FakeLangSmith
from fakes.openai_server import Behaviour, FakeOpenAIServer
from fakes.otlp_receiver import OtlpReceiver
from langgraph_sdk import get_client, get_sync_client

from graph.context import Context
from voicerag.audit import AuditStore
from voicerag.audit.database import sqlite_url
from voicerag.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv running pytest also holds `voicerag` and `langgraph`
GRAPH_ID = "voicerag"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

TINY_KB = [
    {
        "id": "zephyr-warranty-en",
        "title": "Zephyr Z-9 warranty",
        "text": "The Zephyr Z-9 turntable comes with a warranty of 7 years from the date of purchase. "
        "Repairs under warranty are free of charge.",
        "category": "support",
        "lang": "en",
    },
    {
        "id": "nagoya-store-en",
        "title": "Nagoya store opening hours",
        "text": "The Nagoya store is open from 10:00 to 19:00 every day except Wednesday.",
        "category": "general",
        "lang": "en",
    },
    {
        "id": "shipping-fee-en",
        "title": "Shipping fee",
        "text": "Shipping costs 660 yen per order and is free for orders of 5,500 yen or more.",
        "category": "general",
        "lang": "en",
    },
]
WARRANTY_QUESTION = "How long is the warranty of the Zephyr Z-9?"
WARRANTY_FACT = "a warranty of 7 years"
STORE_QUESTION = "When is the Nagoya store open?"
STORE_FACT = "from 10:00 to 19:00"
MODEL_SAYS = "According to the context: "  # how the fake model's answers start
THREAD_METADATA = {"created_by": "tests/integration/test_studio.py"}

# What `langgraph dev` and the tools may create in the project root (all gitignored).
IGNORED_ENTRIES = {".langgraph_api", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
API_URL = re.compile(r"API:\s*(http://[\w.\-]+:(\d+))")


@dataclass
class Server:
    url: str
    port: int
    log: Path
    ready_s: float
    model: FakeOpenAIServer
    langsmith: FakeLangSmith  # the server traces every run to these two, and serves /metrics
    otlp: OtlpReceiver
    metrics_port: int


def user_message(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def quote_first_document(messages: list[dict[str, Any]]) -> str:
    """The fake model's reply: the first sentence of the first context document, or a greeting."""
    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    found = re.search(r"^\[1\] [^\n]*\n([^\n]*?[.。])", system, re.MULTILINE)
    return f"{MODEL_SAYS}{found.group(1)}" if found else "Hello! How can I help?"


def server_env(data_dir: Path, model_url: str | None = None) -> dict[str, str]:
    """The caller's environment minus every voicerag setting, plus the test's own.

    Leftover settings (a chat model, CHROMA_URL, COLLECTION...) would make the answers depend on
    the developer's shell. A `.env` in the project root is still read by pydantic-settings (the
    server must run there), but the variables set here take precedence over it.
    """
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        VOICERAG_DATA_DIR=str(data_dir),
        EMBEDDINGS="use",  # the fast offline model
        COLLECTION="studio-test",
        ROUTER="rules",
        GRADER="score",
        LOG_LEVEL="WARNING",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",  # no PyPI request at start-up
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        PYTHONUNBUFFERED="1",
    )
    if model_url:
        env.update(OPENAI_BASE_URL=model_url, OPENAI_API_KEY="test", LLM_MODEL="gpt-4o-mini")
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return "(no log written)"
    text = ANSI.sub("", log.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(text.splitlines()[-lines:])


def live_group_members(pgid: int) -> list[str]:
    """Processes of the group still running, from /proc (Linux; elsewhere only the leader is
    checked). Zombies waiting for a reaper do not count."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            comm_end = text.rindex(")")
            fields = text[comm_end + 2 :].split()
            state, group = fields[0], int(fields[2])
            if group == pgid and state != "Z":
                found.append(f"{stat.parent.name} {text[: comm_end + 1]}")
    return found


def project_entries() -> set[str]:
    """What the project root holds. A server writes relative paths (logs, data dirs, caches) into
    its working directory, the root; the tree below is left out so that files someone edits
    elsewhere while the test runs do not count."""
    return {entry.name for entry in PROJECT_ROOT.iterdir() if entry.name not in IGNORED_ENTRIES}


def ingest_tiny_kb(tmp: Path, env: dict[str, str]) -> None:
    source = tmp / "kb" / "tiny.jsonl"
    source.parent.mkdir()
    source.write_text("\n".join(json.dumps(doc) for doc in TINY_KB) + "\n", encoding="utf-8")
    done = subprocess.run(
        [str(BIN / "voicerag"), "ingest", str(source)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"voicerag ingest failed:\n{done.stdout}\n{done.stderr}"
    assert f"{len(TINY_KB)} added" in done.stdout, done.stdout


def launch(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`langgraph dev` from the project root, its output in `log` (outside the project)."""
    command = [str(BIN / "langgraph"), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"]
    command += ["--port", str(free_port())]
    with log.open("wb") as log_file:
        return subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown kills children too
        )


def wait_until_ready(process: subprocess.Popen[bytes], log: Path, started: float) -> tuple[str, int]:
    """The server's URL once `GET /ok` answers. The port is read from the log: when the
    requested one is busy, `langgraph dev` silently takes another."""
    deadline = started + START_TIMEOUT_S
    url: str | None = None
    port = 0
    while time.monotonic() < deadline:
        code = process.poll()
        assert code is None, f"langgraph dev exited with {code}; log tail:\n{log_tail(log)}"
        if url is None:
            match = API_URL.search(ANSI.sub("", log.read_text(encoding="utf-8", errors="replace")))
            if match:
                url, port = match.group(1), int(match.group(2))
        if url is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ok", timeout=1.0).status_code == 200:
                    return url, port
        time.sleep(0.1)
    pytest.fail(f"langgraph dev not ready after {START_TIMEOUT_S:.0f} s (url: {url}); log tail:\n{log_tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group (the server may have children), SIGKILL if it lingers."""

    def running() -> bool:
        return process.poll() is None or bool(live_group_members(process.pid))

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not running():
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("studio")
    entries_before = project_entries()
    ingest_tiny_kb(tmp, server_env(tmp / "data"))

    with (
        FakeOpenAIServer(Behaviour(reply=quote_first_document, token_delay_s=0.005)) as model,
        FakeLangSmith() as langsmith,
        OtlpReceiver() as otlp,
    ):
        log = tmp / "langgraph-dev.log"
        started = time.monotonic()
        metrics_port = free_port()
        env = server_env(tmp / "data", model.base_url) | {
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_ENDPOINT": langsmith.url,
            "LANGSMITH_API_KEY": "lsv2-test",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "METRICS_PORT": str(metrics_port),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        }
        (tmp / "metrics").mkdir()
        process = launch(env, log)
        url, port = "", 0
        try:
            url, port = wait_until_ready(process, log, started)
            ready_s = time.monotonic() - started
            print(f"\nlanggraph dev ready in {ready_s:.2f} s at {url}")
            yield Server(url, port, log, ready_s, model, langsmith, otlp, metrics_port)
        finally:
            if url and process.poll() is None:
                delete_test_threads(url)
            stop(process)
    left = live_group_members(process.pid)
    assert not left, f"processes of the server left running: {left}"
    assert not (port and listening(port)), f"something still listens on port {port}"
    new_entries = sorted(project_entries() - entries_before)
    assert not new_entries, f"the test left files in the project root: {new_entries}"


def delete_test_threads(url: str) -> None:
    with contextlib.suppress(Exception):  # best effort: the checks that matter come after
        client = get_sync_client(url=url)
        for thread in client.threads.search(metadata=THREAD_METADATA, limit=1000):
            client.threads.delete(thread["thread_id"])


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, list):  # content blocks
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content)


async def new_thread(server: Server) -> str:
    thread = await get_client(url=server.url).threads.create(metadata=THREAD_METADATA)
    return str(thread["thread_id"])


async def test_graph_is_served_with_narrow_input_and_output_and_a_described_context(server: Server) -> None:
    client = get_client(url=server.url)
    assistants = await client.assistants.search(graph_id=GRAPH_ID)
    assert [a["graph_id"] for a in assistants] == [GRAPH_ID]
    schemas = await client.assistants.get_schemas(assistants[0]["assistant_id"])
    context_schema = schemas["context_schema"]
    assert context_schema is not None, schemas
    assert set(context_schema["properties"]) == {f.name for f in dataclasses.fields(Context)}
    assert all(field.get("description") for field in context_schema["properties"].values()), context_schema
    state_schema = schemas["state_schema"]
    assert state_schema is not None and "messages" in state_schema["properties"], schemas
    assert set(schemas["input_schema"]["properties"]) == {"messages", "question"}
    assert {"answer", "graded", "api_results", "degraded"} <= set(schemas["output_schema"]["properties"])


async def test_run_answers_from_the_knowledge_base(server: Server) -> None:
    client = get_client(url=server.url)
    thread_id = await new_thread(server)
    started = time.perf_counter()
    state = await client.runs.wait(thread_id, GRAPH_ID, input=user_message(WARRANTY_QUESTION))
    print(f"\nruns.wait, first question (cold keyword index): {time.perf_counter() - started:.2f} s")
    assert isinstance(state, dict), f"{state}\nserver log tail:\n{log_tail(server.log)}"
    assert WARRANTY_FACT in state.get("answer", ""), f"{state}\nserver log tail:\n{log_tail(server.log)}"
    assert state["degraded"] is False and state["route"]["kind"] == "lookup"
    assert "zephyr-warranty-en" in [d["doc_id"] for d in state["graded"]]
    assert WARRANTY_FACT in server.model.chat_requests[-1].system_prompt  # the document reached the model

    started = time.perf_counter()
    state = await client.runs.wait(None, GRAPH_ID, input=user_message(STORE_QUESTION))  # a threadless run
    assert isinstance(state, dict), state
    print(f"runs.wait, warm: {time.perf_counter() - started:.2f} s; inside the graph: {state.get('timings_ms')}")
    assert STORE_FACT in state.get("answer", ""), state


async def test_streamed_answer_comes_from_generate_only(server: Server) -> None:
    client = get_client(url=server.url)
    thread_id = await new_thread(server)
    chunks: list[tuple[str, str, str]] = []  # (node, message type, text)
    async for part in client.runs.stream(
        thread_id, GRAPH_ID, input=user_message(WARRANTY_QUESTION), stream_mode="messages-tuple"
    ):
        assert part.event != "error", f"{part.data}\nserver log tail:\n{log_tail(server.log)}"
        if part.event == "messages":
            message, metadata = part.data
            chunks.append((metadata.get("langgraph_node", "?"), message.get("type", "?"), message_text(message)))
    assert {node for node, _, _ in chunks} == {"generate"}, chunks
    assert len([text for _, _, text in chunks if text]) > 3, chunks  # token by token, not one message
    streamed = "".join(text for _, _, text in chunks)
    state = await client.threads.get_state(thread_id)
    values = state["values"]
    assert isinstance(values, dict)
    assert streamed == values["answer"] and WARRANTY_FACT in streamed, (streamed, values["answer"])


async def test_a_failing_model_falls_back_to_the_documents(server: Server) -> None:
    requests = len(server.model.chat_requests)
    server.model.script(Behaviour(status=500))  # the next request fails
    state = await get_client(url=server.url).runs.wait(None, GRAPH_ID, input=user_message(WARRANTY_QUESTION))
    assert isinstance(state, dict), state
    assert len(server.model.chat_requests) == requests + 1  # asked once (no retries), then fell back
    assert state["degraded"] is True
    assert WARRANTY_FACT in state["answer"] and not state["answer"].startswith(MODEL_SAYS), state["answer"]


async def test_context_reaches_the_graph(server: Server) -> None:
    state = await get_client(url=server.url).runs.wait(
        None, GRAPH_ID, input=user_message(WARRANTY_QUESTION), context={"user_id": "studio-test", "language": "ja"}
    )
    assert isinstance(state, dict), state
    assert state["language"] == "ja"  # Context.language overrides the question's language
    prompt = server.model.chat_requests[-1].system_prompt
    assert "コンテキスト" in prompt and WARRANTY_FACT in prompt, prompt  # the Japanese answer prompt


async def test_second_question_on_the_same_thread_gets_its_own_answer(server: Server) -> None:
    """Studio threads are checkpointed: the previous turn's state is there when the next one starts."""
    client = get_client(url=server.url)
    thread_id = await new_thread(server)
    await client.runs.wait(thread_id, GRAPH_ID, input=user_message(WARRANTY_QUESTION))
    state = await client.runs.wait(thread_id, GRAPH_ID, input=user_message(STORE_QUESTION))
    assert isinstance(state, dict), state
    assert STORE_FACT in state.get("answer", ""), state.get("answer")
    assert [m["type"] for m in state["messages"]] == ["human", "ai", "human", "ai"]


async def test_each_turn_on_a_thread_starts_its_own_clock(server: Server) -> None:
    client = get_client(url=server.url)
    thread_id = await new_thread(server)
    await client.runs.wait(thread_id, GRAPH_ID, input=user_message(WARRANTY_QUESTION))
    first = (await client.threads.get_state(thread_id))["values"]
    second = await client.runs.wait(thread_id, GRAPH_ID, input=user_message(STORE_QUESTION))
    assert isinstance(second, dict)
    assert "started_at" not in second  # the run's output is the narrow OutputState ...
    kept = (await client.threads.get_state(thread_id))["values"]  # ... the thread keeps the whole State
    assert isinstance(first, dict) and isinstance(kept, dict)
    assert kept["started_at"] > first["started_at"]


async def test_each_run_is_one_masked_turn_record_in_the_audit_log(server: Server) -> None:
    """A Studio run is a turn like any other: its record (front door `studio`, the run's context as
    the caller, the thread as the session) reaches the audit log in the data dir, masked."""
    phone, email = "090-1234-5678", "taro.yamada@example.com"
    client = get_client(url=server.url)
    thread_id = await new_thread(server)
    context = {"user_id": "C-101518", "roles": ["member"], "tenant": "acme", "turn_id": "studio-turn-1"}
    question = f"{WARRANTY_QUESTION} Call me on {phone} or write to {email}."
    state = await client.runs.wait(thread_id, GRAPH_ID, input=user_message(question), context=context)
    assert isinstance(state, dict) and phone in state["question"], state  # control: the raw question got in

    audit = server.log.parent / "data" / "audit.sqlite"
    store = AuditStore(sqlite_url(audit))
    deadline = time.monotonic() + 15
    while not (records := [r for r in await store.read(limit=1000) if r.turn_id == "studio-turn-1"]):
        assert time.monotonic() < deadline, f"no audit record\nserver log tail:\n{log_tail(server.log)}"
        await asyncio.sleep(0.1)
    await store.close()
    (record,) = records
    assert (record.front_door, record.user_id, record.roles, record.tenant, record.session_id) == (
        "studio", "C-101518", ["member"], "acme", thread_id,
    )  # fmt: skip
    assert record.route == "lookup" and "zephyr-warranty-en" in record.documents and WARRANTY_FACT in record.answer
    assert "[PHONE]" in record.question and "[EMAIL]" in record.question
    kept = b"".join(path.read_bytes() for path in audit.parent.glob("audit.sqlite*")) + server.log.read_bytes()
    assert phone.encode() not in kept and email.encode() not in kept


async def test_a_studio_run_is_one_masked_trace_in_langsmith_and_opentelemetry_and_counted(server: Server) -> None:
    """The server's runs are turns like any other front door's: with LANGSMITH_TRACING,
    OTEL_EXPORTER_OTLP_ENDPOINT and METRICS_PORT each is one LangSmith trace (root `voicerag`, the
    thread as the session, documents), one OpenTelemetry trace, and counted in the server's /metrics."""
    phone = "090-1234-5678"
    thread_id = await new_thread(server)
    context = {"user_id": "C-101518", "turn_id": "studio-traced-1"}
    question = f"{WARRANTY_QUESTION} Call me on {phone}."
    state = await get_client(url=server.url).runs.wait(
        thread_id, GRAPH_ID, input=user_message(question), context=context
    )
    assert isinstance(state, dict) and WARRANTY_FACT in state["answer"], state

    def traced(run: dict[str, Any]) -> bool:
        return bool(run.get("end_time")) and run_metadata(run).get("turn_id") == "studio-traced-1"

    server.langsmith.wait_for(lambda s: any(traced(r) for r in s.roots()), timeout_s=15)
    (root,) = [r for r in server.langsmith.roots() if traced(r)]  # one trace: no tracer of the server's own
    assert root["name"] == "voicerag" and run_metadata(root)["front_door"] == "studio"
    assert run_metadata(root)["session_id"] == thread_id and run_metadata(root)["user_id"] != "C-101518"
    runs = [r for r in server.langsmith.runs().values() if r.get("trace_id") == root["trace_id"]]
    (retriever,) = [r for r in runs if r["run_type"] == "retriever"]
    assert retriever["outputs"]["documents"][0]["metadata"]["id"] == "zephyr-warranty-en"
    sent = "\n".join(server.langsmith.bodies)
    assert phone not in sent and "[PHONE]" in sent

    deadline = time.monotonic() + 15
    while not (
        roots := [s for s in server.otlp.named("voicerag") if s.attributes.get("voicerag.turn_id") == "studio-traced-1"]
    ):
        assert time.monotonic() < deadline, f"no span\nserver log tail:\n{log_tail(server.log)}"
        await asyncio.sleep(0.1)
    (span,) = roots
    names = {s.name for s in server.otlp.trace(span.trace_id)}
    assert {"retrieve", "generate"} <= names and any(n.startswith("retrieval") for n in names), names
    assert span.parent_id == "" and span.attributes["voicerag.front_door"] == "studio"
    assert "C-101518" not in repr(server.otlp.trace(span.trace_id)) and "C-101518" not in sent  # pseudonyms only

    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10)).text
    assert re.search(r'voicerag_turns_total\{[^}]*front_door="studio"[^}]*\} [1-9]', metrics), metrics[:2000]


def run_metadata(run: dict[str, Any]) -> dict[str, Any]:
    return dict((run.get("extra") or {}).get("metadata") or {})


def test_a_bad_setting_stops_the_server_with_a_message_naming_it(tmp_path: Path) -> None:
    log = tmp_path / "langgraph-dev.log"
    process = launch({**server_env(tmp_path / "data"), "EMBEDDINGS": "bogus"}, log)
    try:
        code = process.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"langgraph dev kept running with EMBEDDINGS=bogus; log tail:\n{log_tail(log)}")
    finally:
        stop(process)
    assert code != 0
    assert "Graph 'voicerag' failed to load" in log_tail(log, 400), log_tail(log)
    assert "EMBEDDINGS: Input should be 'e5', 'use' or 'openai' (got 'bogus')" in log_tail(log, 400), log_tail(log)
