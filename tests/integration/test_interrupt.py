"""A Chroma server that accepts and never answers hangs nothing: commands fail in one line naming
CHROMA_URL, the voice worker refuses to start, a turn answers degraded within its deadline — and
Ctrl-C works the first time, even in a blocking call (such a server, `input()`): exit code 130."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

VOICERAG = str(Path(sys.executable).parent / "voicerag")
ENDS_WITHIN_S = 10.0  # generous for a busy 2-core machine; the point is "not minutes, not never"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def start(args: list[str], tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    environ = {**os.environ, "VOICERAG_DATA_DIR": str(tmp_path), "EMBEDDINGS": "use", "SOURCES_FILE": "", **env}
    return subprocess.Popen(
        [VOICERAG, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )


def interrupt_and_wait(process: subprocess.Popen[str]) -> tuple[int, float]:
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        code = process.wait(timeout=ENDS_WITHIN_S * 3)
    finally:
        process.kill()
    return code, time.monotonic() - started


def test_ctrl_c_ends_a_chat_waiting_for_input(tmp_path: Path) -> None:
    process = start(["chat"], tmp_path)
    assert process.stderr is not None
    banner = process.stderr.readline()  # printed once the knowledge base is open and warm
    assert "voicerag chat" in banner, banner
    time.sleep(0.3)  # now blocked in input()
    code, took = interrupt_and_wait(process)
    assert code == 130 and took < ENDS_WITHIN_S, (code, took)


def test_ctrl_c_ends_a_search_stuck_on_a_chroma_server_that_never_answers(tmp_path: Path, silent_server: str) -> None:
    process = start(["search", "warranty"], tmp_path, CHROMA_URL=silent_server)
    time.sleep(3.0)  # the model is loaded and the first Chroma call is waiting
    assert process.poll() is None, "the search ended before it could be interrupted"
    code, took = interrupt_and_wait(process)
    assert code == 130 and took < ENDS_WITHIN_S, (code, took)


def one_line_naming_chroma_url(process: subprocess.Popen[str]) -> None:
    try:
        code = process.wait(timeout=ENDS_WITHIN_S * 6)
    finally:
        process.kill()
    assert process.stderr is not None
    lines = [line for line in process.stderr.read().splitlines() if line.strip()]
    assert code == 1, (code, lines)
    assert len(lines) == 1 and lines[0].startswith("error: CHROMA_URL"), lines


@pytest.mark.parametrize("args", [["search", "warranty"], ["ask", "What is the warranty?"]])
def test_a_command_on_a_chroma_server_that_never_answers_fails_naming_it(
    tmp_path: Path, silent_server: str, args: list[str]
) -> None:
    one_line_naming_chroma_url(start(args, tmp_path, CHROMA_URL=silent_server, CHROMA_TIMEOUT_S="2"))


def test_the_voice_worker_refuses_to_start_on_a_chroma_server_that_never_answers(
    tmp_path: Path, silent_server: str
) -> None:
    worker = start(["agent", "console", "--text"], tmp_path, CHROMA_URL=silent_server, CHROMA_TIMEOUT_S="2")
    one_line_naming_chroma_url(worker)
