"""Timing-sensitive tests run alone, even on two pytest-xdist workers (`make test`).

A test that asserts a time bound which is behaviour (a filler heard soon after its threshold, sources
run concurrently, an exit within its timeout, retries stopped by the deadline) is `quiet`: while it
runs, the other worker waits between its tests. Every other test runs beside any other. A shared file
lock does it: a quiet test takes it exclusively, any other test shared; with one process (no xdist)
nothing is locked.

Quiet are: the voice tests (`tests/agent/`: fillers and barge-ins are timed), the modules in
`QUIET_MODULES`, and any test marked `@pytest.mark.quiet`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

QUIET_DIRS = ("agent",)
QUIET_MODULES = frozenset(
    {"test_call_apis.py", "test_http_stack.py", "test_busy_machine.py", "test_generate_llm.py", "test_interrupt.py"}
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "quiet: asserts a time bound; runs while no other test does (tests/quiet.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if path.parent.name in QUIET_DIRS or path.name in QUIET_MODULES:
            item.add_marker(pytest.mark.quiet)


@pytest.fixture(autouse=True)
def _quiet_lock(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    lock_path = tmp_path_factory.getbasetemp().parent / "quiet.lock"  # the controller's base temp: shared
    mode = fcntl.LOCK_EX if request.node.get_closest_marker("quiet") else fcntl.LOCK_SH
    with lock_path.open("a") as lock:
        fcntl.flock(lock, mode)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
