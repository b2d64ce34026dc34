"""The session's hermetic rules hold, and their guards can fail (tests/hermetic.py, tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
import pytest_socket
from hermetic import GUARD, OutsideNetworkError, clear_outside_world, points_outside

from voicerag.settings import ENV_FILE_VARIABLE, load_settings

NON_LOOPBACK_IP = "192.0.2.1"  # TEST-NET-1: never routed, so even an unguarded attempt goes nowhere
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket")  # pytest-socket warns as it refuses


def test_a_lookup_of_an_outside_name_is_refused_and_recorded() -> None:
    with pytest.raises(OutsideNetworkError, match=r"status\.kumo-audio\.example"):
        socket.getaddrinfo("status.kumo-audio.example", 443)
    with pytest.raises(OutsideNetworkError):
        socket.gethostbyname("api.openai.com")
    assert GUARD.take() == ["DNS lookup of 'status.kumo-audio.example'", "DNS lookup of 'api.openai.com'"]


def test_a_connect_beyond_loopback_is_refused_by_pytest_socket_and_recorded() -> None:
    with pytest.raises(pytest_socket.SocketConnectBlockedError):
        socket.create_connection((NON_LOOPBACK_IP, 443), timeout=1)
    assert GUARD.take() == [f"connect to ({NON_LOOPBACK_IP!r}, 443)"]


async def test_an_attempt_the_code_swallows_still_fails_the_test() -> None:
    """The OpenAI client turns any transport failure into a quiet fallback: the record remains, and
    the check every test ends with (`no_outside_network` in conftest.py) fails on it."""
    async with httpx.AsyncClient(timeout=2) as client:
        for url in ("https://api.openai.com/v1/models", f"http://{NON_LOOPBACK_IP}/"):
            with contextlib.suppress(Exception):  # swallowed, as a resilient caller would
                await client.get(url)
        with contextlib.suppress(Exception):
            await asyncio.open_connection(NON_LOOPBACK_IP, 80)
    with pytest.raises(pytest.fail.Exception, match=r"api\.openai\.com.*192\.0\.2\.1.*192\.0\.2\.1"):
        GUARD.check()
    GUARD.check()  # control: nothing left once reported


@pytest.mark.integration  # a server, if a tiny one
def test_loopback_stays_reachable() -> None:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for host in ("127.0.0.1", "localhost"):
            assert httpx.get(f"http://{host}:{server.server_port}/", timeout=5).text == "hello"
    finally:
        server.shutdown()
        server.server_close()
    assert socket.getaddrinfo(socket.gethostname(), None)  # this machine's own name is not the outside
    assert GUARD.take() == []


def test_watching_sees_socket_use_in_any_thread_and_nothing_else() -> None:
    with GUARD.watching() as quiet:
        sum(range(1000))
    with GUARD.watching() as busy:
        thread = threading.Thread(target=socket.getaddrinfo, args=("localhost", 80))
        thread.start()
        thread.join(timeout=5)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
    assert quiet == []
    assert busy == ["socket.getaddrinfo 'localhost'", "socket.__new__"]


# ------------------------------------------------------------------------------ the environment


def test_variables_pointing_outside_are_cleared_for_the_session_and_its_subprocesses() -> None:
    assert not [name for name in os.environ if points_outside(name)]
    assert os.environ[ENV_FILE_VARIABLE] == ""
    script = "import os, hermetic; print([k for k in os.environ if hermetic.points_outside(k)], os.environ[%r])"
    child = subprocess.run(
        [sys.executable, "-c", script % ENV_FILE_VARIABLE],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert child.stdout == "[] \n"


def test_clearing_removes_keys_urls_and_tracing_and_keeps_the_rest() -> None:
    environ = {
        "OPENAI_API_KEY": "sk-real",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": "http://127.0.0.1:9",
        "LANGCHAIN_TRACING_V2": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "LIVEKIT_API_SECRET": "s",
        "CRM_CLIENT_SECRET": "s",
        "DATABASE_URL": "postgresql://prod/db",
        "AUDIT_DATABASE_URL": "postgresql://prod/audit",
        "https_proxy": "http://proxy:3128",
        "PATH": "/usr/bin",
        "EMBEDDINGS": "use",
    }
    removed = clear_outside_world(environ)
    assert len(removed) == 11
    assert environ == {
        "PATH": "/usr/bin",
        "EMBEDDINGS": "use",
        "VOICERAG_ENV_FILE": "",
        "ANONYMIZED_TELEMETRY": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
    }


def test_no_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-a-developer-dotenv\nTOP_K=9\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.openai_api_key is None and settings.top_k == 5
    monkeypatch.setenv("VOICERAG_ENV_FILE", ".env")  # control: the same file is read when asked for
    assert load_settings().top_k == 9
