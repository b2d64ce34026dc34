"""`voicerag ingest` runs at a lower CPU priority (every thread of it), so that calls answered on the
same machine keep their latency. The real CLI in a subprocess, embedding through a slow local
OpenAI-compatible server so that it is caught mid-ingest; its threads' niceness read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.openai_server import FakeOpenAIServer
from helpers import jsonl, write
from ingest_driver import cli_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread priorities from /proc (Linux)"),
]

VOICERAG = str(Path(sys.executable).parent / "voicerag")
BASE_NICE = os.getpriority(os.PRIO_PROCESS, 0)  # what a child starts with


@pytest.fixture
def slow_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        server.set(first_token_delay_s=1.0)  # each embeddings request takes a second
        yield server


def thread_niceness(pid: int) -> dict[int, int]:
    """Niceness of each thread of `pid` (field 19 of /proc/<pid>/task/<tid>/stat)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread just ended
            continue
        found[int(task.name)] = int(stat.rsplit(")", 1)[1].split()[16])
    return found


def ingest_mid_run(tmp_path: Path, server: FakeOpenAIServer, *args: str, **env: str) -> dict[int, int]:
    """Start an ingest, wait until it is embedding (its first request reached the server), and return
    its threads' niceness then; the run must then finish well."""
    corpus = write(tmp_path, "kb.jsonl", jsonl(*({"id": f"d{i}", "text": f"Document {i}."} for i in range(3))))
    settings = {"EMBEDDINGS": "openai", "OPENAI_BASE_URL": server.base_url, **env}
    environment = cli_env(tmp_path / "data", **settings)
    if "INGEST_NICE" not in env:
        del environment["INGEST_NICE"]  # the product's default, not the test suite's
    process = subprocess.Popen(
        [VOICERAG, "ingest", str(corpus), *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not server.embedding_requests:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the ingest never called the embeddings endpoint"
            time.sleep(0.02)
        niceness = thread_niceness(process.pid)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "3 added" in out
    return niceness


def test_ingest_lowers_the_priority_of_every_thread_by_default(tmp_path: Path, slow_server: FakeOpenAIServer) -> None:
    niceness = ingest_mid_run(tmp_path, slow_server)
    assert len(niceness) > 1  # the main thread and the ones embedding, loading, writing
    assert set(niceness.values()) == {min(19, BASE_NICE + 10)}, niceness


def test_nice_option_sets_how_much(tmp_path: Path, slow_server: FakeOpenAIServer) -> None:
    niceness = ingest_mid_run(tmp_path, slow_server, "--nice", "3")
    assert set(niceness.values()) == {min(19, BASE_NICE + 3)}, niceness


def test_nice_zero_keeps_normal_priority(tmp_path: Path, slow_server: FakeOpenAIServer) -> None:
    niceness = ingest_mid_run(tmp_path, slow_server, "--nice", "0")
    assert set(niceness.values()) == {BASE_NICE}, niceness


def test_the_setting_is_the_default(tmp_path: Path, slow_server: FakeOpenAIServer) -> None:
    niceness = ingest_mid_run(tmp_path, slow_server, INGEST_NICE="5")
    assert set(niceness.values()) == {min(19, BASE_NICE + 5)}, niceness


def test_an_out_of_range_nice_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [VOICERAG, "ingest", str(tmp_path), "--nice", "25"],
        cwd=tmp_path,
        env=cli_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "less than or equal to 19" in done.stderr  # typer's message (in a box: no exact option text)
