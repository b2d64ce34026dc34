"""`voicerag ask` and `chat` account for every turn: one masked record each in the log line and the
audit log — front door, caller, session, route, sources, documents — readable with `voicerag audit`
and verified by `voicerag audit --verify`; on SQLite (the default file in the data dir) and on
PostgreSQL; a dead audit database delays nothing beyond its stated timeout and says what was lost;
Ctrl-C during a turn leaves a record of it marked cancelled. The real commands in subprocesses, on a
tiny knowledge base (offline model, extractive answers: no chat model)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer
from helpers import jsonl, write
from prometheus_client.parser import text_string_to_metric_families
from test_audit_postgres import audit_postgres_url

from graph.turn_record import TurnRecord
from voicerag.audit.wiring import CLOSE_TIMEOUT_S

__all__ = ["audit_postgres_url"]  # a fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

VOICERAG = str(Path(sys.executable).parent / "voicerag")
PHONE, EMAIL = "090-1234-5678", "taro.yamada@example.com"
QUESTION = f"How long is the warranty of the Zephyr Z-9? Call me on {PHONE} or write to {EMAIL}."
FOLLOW_UP = "And when is the Nagoya store open?"
DOCUMENTS = (
    {"id": "zephyr-warranty", "title": "Zephyr warranty", "text": "The Zephyr Z-9 has a warranty of 7 years."},
    {"id": "nagoya-store", "title": "Nagoya store", "text": "The Nagoya store is open from 10:00 to 19:00."},
)
CALLER = ("--user", "C-101518", "--roles", "member,staff", "--tenant", "acme")
EXIT_SLACK_S = 2.0  # interpreter shutdown and a log line on a loaded machine, not a measurement
LOG_LINE_KEYS = {"event", "level", "logger", "timestamp"}  # what the log renderer adds to a record's fields


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def turn_lines(self) -> list[dict[str, Any]]:
        """The per-turn log lines (LOG_FORMAT=json)."""
        lines = [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "voicerag.turns" and line["event"] == "turn"]


@pytest.fixture(scope="module")
def knowledge_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the tiny knowledge base (the audit file each test's own)."""
    data = tmp_path_factory.mktemp("turns") / "data"
    documents = write(data.parent, "docs.jsonl", jsonl(*DOCUMENTS))
    result = voicerag(["ingest", str(documents)], data)
    assert result.code == 0, result.stderr
    return data


def environment(data: Path, **env: str) -> dict[str, str]:
    return {
        **os.environ,
        "VOICERAG_DATA_DIR": str(data),
        "EMBEDDINGS": "use",
        "SOURCES_FILE": "",
        "DATABASE_QUERIES_FILE": "",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        **env,
    }


def voicerag(args: list[str], data: Path, stdin: str | None = None, **env: str) -> Ran:
    started = time.monotonic()
    done = subprocess.run(
        [VOICERAG, *args], input=stdin, capture_output=True, text=True, env=environment(data, **env), timeout=240
    )
    return Ran(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def audit_records(data: Path, **env: str) -> list[dict[str, Any]]:
    result = voicerag(["audit", "--json", "--limit", "100"], data, **env)
    assert result.code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def stored_bytes(data: Path) -> bytes:
    return b"".join(path.read_bytes() for path in data.glob("audit.sqlite*"))


@pytest.fixture
def data(knowledge_base: Path) -> Path:
    for path in knowledge_base.glob("audit.sqlite*"):  # each test starts with an empty audit log
        path.unlink()
    return knowledge_base


def test_ask_and_chat_turns_are_in_the_audit_log_masked_and_verified(data: Path) -> None:
    asked = voicerag(["ask", QUESTION, *CALLER], data)
    chatted = voicerag(["chat", *CALLER], data, stdin=f"{QUESTION}\n{FOLLOW_UP}\n")
    assert asked.code == 0 and chatted.code == 0, asked.stderr + chatted.stderr
    assert "7 years" in asked.stdout and "10:00 to 19:00" in chatted.stdout

    ask_record, *chat_records = audit_records(data)
    assert len(chat_records) == 2
    for record in (ask_record, *chat_records):
        assert (record["user_id"], record["roles"], record["tenant"]) == ("C-101518", ["member", "staff"], "acme")
        assert record["route"] == "lookup" and record["latency_ms"] > 0
    assert ask_record["front_door"] == "ask" and {r["front_door"] for r in chat_records} == {"chat"}
    assert ask_record["documents"][0] == "zephyr-warranty" and "nagoya-store" in chat_records[1]["documents"]
    sessions = {ask_record["session_id"], chat_records[0]["session_id"], chat_records[1]["session_id"]}
    assert len(sessions) == 2 and chat_records[0]["session_id"] == chat_records[1]["session_id"]  # one per chat
    assert len({r["turn_id"] for r in (ask_record, *chat_records)}) == 3
    masked = "How long is the warranty of the Zephyr Z-9? Call me on [PHONE] or write to [EMAIL]."
    assert ask_record["question"] == masked and chat_records[0]["question"] == masked

    # Nothing raw anywhere the product wrote: the audit file, the log, the terminal. The control: the
    # commands were given the raw values (the log lines are the ones of these very turns).
    assert PHONE in QUESTION and EMAIL in QUESTION
    written = stored_bytes(data).decode("utf-8", "replace") + asked.stdout + asked.stderr
    written += chatted.stdout + chatted.stderr
    assert PHONE not in written and EMAIL not in written
    assert [line["turn_id"] for line in asked.turn_lines()] == [ask_record["turn_id"]]
    assert [line["question"] for line in chatted.turn_lines()] == [masked, FOLLOW_UP]

    verified = voicerag(["audit", "--verify"], data)
    assert verified.code == 0 and "intact: 3 record(s)" in verified.stdout, verified.stdout + verified.stderr
    with sqlite3.connect(data / "audit.sqlite") as database:  # someone with the file: triggers dropped, an edit
        for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            database.execute(f"DROP TRIGGER {name}")
        database.execute("UPDATE audit_records SET answer = 'edited' WHERE seq = 2")
    broken = voicerag(["audit", "--verify"], data)
    assert broken.code == 1 and "record 2" in broken.stdout + broken.stderr, broken.stdout + broken.stderr


def test_every_front_door_writes_the_same_record(data: Path, tmp_path: Path) -> None:
    """The log line of `ask` and of `chat` carry the fields of one `TurnRecord` (voice, Studio and
    direct runs are checked against the same type in their own tests), and with METRICS_PORT both
    turns are in the metrics: `chat` serves `/metrics` while it runs; `ask`, which ends at once,
    counts its turn in the multiprocess directory it shares with the serving process."""
    fields = set(TurnRecord(turn_id="t", session_id="s", user_id="u", front_door="ask").masked())
    port, shared = free_port(), str(tmp_path / "metrics")
    metrics_env = {"METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": shared}
    os.mkdir(shared)
    asked = voicerag(["ask", QUESTION], data, **metrics_env)
    chat = subprocess.Popen(
        [VOICERAG, "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(data, **metrics_env),
    )  # fmt: skip
    assert chat.stdin is not None and chat.stdout is not None
    chat.stdin.write(f"{QUESTION}\n")
    chat.stdin.flush()
    assert "7 years" in chat.stdout.readline()  # the answer: the turn is over, the chat still runs
    served = turns_served(port)
    stdout, stderr = chat.communicate("", timeout=60)
    chatted = Ran(chat.returncode, stdout, stderr, 0.0)
    (ask_line,) = asked.turn_lines()
    (chat_line,) = chatted.turn_lines()
    assert set(ask_line) - LOG_LINE_KEYS == fields == set(chat_line) - LOG_LINE_KEYS
    assert (ask_line["front_door"], chat_line["front_door"]) == ("ask", "chat")
    assert ask_line["first_token_ms"] is not None and ask_line["nodes_ms"].keys() >= {"route_query", "generate"}
    assert served == {("ask", "lookup"): 1.0, ("chat", "lookup"): 1.0}


def turns_served(port: int) -> dict[tuple[str, str], float]:
    """`voicerag_turns_total` from a running process's `/metrics`, by front door and route."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.labels["front_door"], sample.labels["route"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "voicerag_turns_total"
    }


def test_the_default_caller_is_the_least_privileged(data: Path) -> None:
    assert voicerag(["ask", "When is the Nagoya store open?"], data).code == 0
    (record,) = audit_records(data)
    assert (record["user_id"], record["roles"], record["tenant"]) == ("anonymous", [], None)


def test_the_audit_log_on_postgresql(data: Path, audit_postgres_url: str) -> None:
    url = audit_postgres_url
    asked = voicerag(["ask", QUESTION, *CALLER], data, AUDIT_DATABASE_URL=url)
    chatted = voicerag(["chat", *CALLER], data, stdin=f"{FOLLOW_UP}\n", AUDIT_DATABASE_URL=url)
    assert asked.code == 0 and chatted.code == 0, asked.stderr + chatted.stderr
    records = audit_records(data, AUDIT_DATABASE_URL=url)
    assert [(r["front_door"], r["documents"][0]) for r in records] == [
        ("ask", "zephyr-warranty"),
        ("chat", "nagoya-store"),
    ]
    assert "[PHONE]" in records[0]["question"] and PHONE not in json.dumps(records)
    assert not list(data.glob("audit.sqlite*"))  # nothing went to the default file
    verified = voicerag(["audit", "--verify"], data, AUDIT_DATABASE_URL=url)
    assert verified.code == 0 and "intact: 2 record(s)" in verified.stdout, verified.stdout + verified.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.quiet  # a time bound (tests/quiet.py)
def test_a_dead_audit_database_delays_the_exit_no_more_than_its_timeout(data: Path) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/audit"  # nothing listens: connections refused
    alive = voicerag(["ask", "When is the Nagoya store open?"], data)
    asked = voicerag(["ask", "When is the Nagoya store open?"], data, AUDIT_DATABASE_URL=dead)
    assert alive.code == 0 and asked.code == 0 and "10:00 to 19:00" in asked.stdout, asked.stderr
    assert asked.seconds <= alive.seconds + CLOSE_TIMEOUT_S + EXIT_SLACK_S, (asked.seconds, alive.seconds)
    lost = [json.loads(line) for line in asked.stderr.splitlines() if '"voicerag.audit"' in line]
    assert any("1 record(s) not written" in line["event"] for line in lost), asked.stderr
    assert "not written" not in alive.stderr  # control: the working database loses nothing


def test_ctrl_c_during_a_turn_leaves_a_cancelled_record(data: Path) -> None:
    """A chat turn waiting on a model that never answers, interrupted: the command ends (130), its
    turn is in the audit log and its log line says cancelled."""
    with FakeOpenAIServer(Behaviour(hang=True)) as model:
        env = environment(
            data, OPENAI_BASE_URL=model.base_url, OPENAI_API_KEY="test", LLM_MODEL="gpt-4o-mini",
            LLM_FIRST_TOKEN_TIMEOUT_S="60", LLM_TIMEOUT_S="60",
        )  # fmt: skip
        process = subprocess.Popen(
            [VOICERAG, "chat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert process.stdin is not None
        process.stdin.write(f"{QUESTION}\n")
        process.stdin.flush()
        deadline = time.monotonic() + 120
        while not model.chat_requests:  # the turn is waiting for the model's first token
            assert process.poll() is None and time.monotonic() < deadline, "the turn never reached the model"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 130, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (turn,) = [line for line in lines if line.get("logger") == "voicerag.turns"]
    assert turn["cancelled"] is True and turn["failed"] is None and turn["route"] == "lookup"
    (record,) = audit_records(data)
    assert record["turn_id"] == turn["turn_id"] and record["front_door"] == "chat" and record["answer"] == ""
    assert PHONE not in stdout + stderr
