"""The command line as a careless new user and a hostile document meet it: one clear line for every
mistake, the right exit code, nothing raw reaches the terminal, and the small things work."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import jsonl, write

pytestmark = pytest.mark.integration

VOICERAG = str(Path(sys.executable).parent / "voicerag")


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "EMBEDDINGS": "use", "SOURCES_FILE": "", **(env or {})}
    return subprocess.run([VOICERAG, *args], capture_output=True, text=True, env=environ, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("voicerag ") and result.stdout.strip()[-1].isdigit()


def test_agent_mode_help_is_livekits_help_for_that_mode() -> None:
    console = run("agent", "console", "--help")
    assert console.returncode == 0 and "--text" in console.stdout, console.stdout + console.stderr
    ours = run("agent", "--help")
    assert ours.returncode == 0 and "console [--text], dev or start" in ours.stdout
    assert run("agent").returncode == 2


def test_a_database_queries_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    result = run("ask", "hello", env={"VOICERAG_DATA_DIR": str(tmp_path), "DATABASE_QUERIES_FILE": "/nonexistent.yaml"})
    assert result.returncode == 2 and "DATABASE_QUERIES_FILE" in one_line_error(result)


def test_a_sources_file_that_is_not_yaml_is_named_never_echoed(tmp_path: Path) -> None:
    secret = write(tmp_path, "notes.txt", "password: [hunter2-very-secret\nkey = sk-live-123\n")
    result = run("ask", "hello", env={"VOICERAG_DATA_DIR": str(tmp_path / "data"), "SOURCES_FILE": str(secret)})
    line = one_line_error(result)
    assert result.returncode == 2 and str(secret) in line
    assert "hunter2" not in result.stderr and "sk-live" not in result.stderr


def test_a_data_dir_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    blocker = write(tmp_path, "a-file", "not a folder")
    result = run("search", "warranty", env={"VOICERAG_DATA_DIR": str(blocker / "data")})
    assert result.returncode == 2 and "VOICERAG_DATA_DIR" in one_line_error(result)


def test_clearing_the_cache_with_redis_down_fails_and_says_so() -> None:
    result = run("cache", "clear", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, timeout=60)
    assert result.returncode == 1 and "REDIS_URL" in one_line_error(result) and "removed" not in result.stdout


def test_escape_sequences_in_documents_never_reach_the_terminal(tmp_path: Path) -> None:
    hostile = "Refunds take 5 days.\x1b[2J\x1b]52;c;aGVsbG8=\x07 Store credit is instant.\x9b31m"
    documents = write(tmp_path, "docs.jsonl", jsonl({"id": "refund", "title": "Refunds \x1b[31mred", "text": hostile}))
    env = {"VOICERAG_DATA_DIR": str(tmp_path / "data"), "DATABASE_QUERIES_FILE": ""}
    assert run("ingest", str(documents), env=env).returncode == 0
    for args in (("search", "refund"), ("search", "refund", "--json"), ("ask", "How long do refunds take?")):
        result = run(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x9b" not in result.stdout and "\x07" not in result.stdout, args
    answer = run("ask", "How long do refunds take?", "--json", env=env)
    assert json.loads(answer.stdout)["documents"][0]["doc_id"] == "refund"


def test_ask_json_keeps_japanese_readable(tmp_path: Path) -> None:
    documents = write(tmp_path, "docs.jsonl", jsonl({"id": "w", "title": "保証", "text": "保証期間は2年間です。"}))
    env = {"VOICERAG_DATA_DIR": str(tmp_path / "data"), "DATABASE_QUERIES_FILE": ""}
    assert run("ingest", str(documents), env=env).returncode == 0
    result = run("ask", "保証期間は？", "--json", env=env)
    assert result.returncode == 0 and "保証期間" in result.stdout and "\\u4fdd" not in result.stdout
