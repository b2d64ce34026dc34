"""Ctrl-C works the first time: a command stuck in a blocking call (a server that never answers,
`input()`) still ends promptly with exit code 130."""

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
