"""The session's rules, then shared fixtures.

Rules (tests/hermetic.py), applied here at session start, before the product is imported:
- the variables that point the product outside (keys, URLs, tracing) are removed from
  `os.environ`, so subprocesses inherit a clean environment too, and no `.env` is read
  (`VOICERAG_ENV_FILE=""`); a test that needs one sets it itself;
- only loopback is reachable: pytest-socket refuses other `connect()`s (`--allow-hosts` in
  pyproject.toml), `hermetic.GUARD` refuses lookups of other names; any attempt fails the test
  that made it, even when the code under test swallowed the error;
- a test that starts a server, or Chroma and a model, is `integration`: marked in its file, or
  here when it uses one of `SERVER_FIXTURES`.

Fixtures: offline embedding models loaded once per session, knowledge bases in tmp dirs. Tests use
the fast offline model (`use`) unless they measure the default one; both are real models shipped in
their wheels, nothing is downloaded.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_socket
from hermetic import GUARD, clear_outside_world, outside_network_failure

clear_outside_world(os.environ)
GUARD.install()
# leak_scan: nothing the product writes holds a test's secret or a caller's PII; quiet: timed tests run alone.
pytest_plugins = ["leak_scan", "quiet"]

from retrievers.embeddings import Embeddings, UseModel, VectorCache  # noqa: E402  (after the environment is clean)
from retrievers.knowledge_base import KnowledgeBaseManager, make_chroma_client  # noqa: E402

# Fixtures that start a server, or embedded Chroma with a model: their tests are `integration`.
SERVER_FIXTURES = frozenset(
    {"kb", "api_server", "fake_openai_server", "redis_url", "redis_server", "postgres_admin_url", "postgresql_url"}
    | {"meteo", "company_apis", "chat_server", "base_services"}  # tests/agent/conftest.py
)


@pytest.fixture(autouse=True)
def no_outside_network() -> Iterator[None]:
    """Fail the test if it (or a fixture set up for it) tried to reach beyond loopback."""
    pytest_guard = socket.socket.connect
    recording = GUARD.recording_connect(pytest_guard, pytest_socket.SocketConnectBlockedError)
    socket.socket.connect = recording  # type: ignore[method-assign]
    try:
        yield
    finally:
        if socket.socket.connect is recording:
            socket.socket.connect = pytest_guard  # type: ignore[method-assign]
    GUARD.check()


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test using a fixture that starts a server is `integration`, whatever its file says."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    failure = outside_network_failure(GUARD.take())  # in a session fixture's teardown, after every test
    if failure:
        print(f"\nsession teardown {failure}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def use_model() -> UseModel:
    return UseModel(threads=2)


@pytest.fixture
def embeddings(use_model: UseModel, tmp_path: Path) -> Embeddings:
    return Embeddings(use_model, VectorCache(tmp_path / "vectors.sqlite"))


@pytest.fixture
async def kb(embeddings: Embeddings, tmp_path: Path) -> AsyncIterator[KnowledgeBaseManager]:
    manager = KnowledgeBaseManager(
        make_chroma_client(tmp_path / "data", None),
        "test-kb",
        embeddings,
        chunk_size=400,
        chunk_overlap=40,
        index_dir=tmp_path / "keyword-index",
    )
    yield manager
    await manager.close()
