"""`METRICS_PORT` end to end: `voicerag agent console --text` (in tmux, as `test_console_smoke.py`
runs it) serves `/metrics`; one typed question moves the voice turn counters of a real scrape.
Without METRICS_PORT nothing listens (the control)."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import SAMPLE_PERSONA, write
from prometheus_client.parser import text_string_to_metric_families
from test_console_smoke import ROOT, VOICERAG, Terminal, agent_replies, clean_env

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def voice_turns(port: int) -> float | None:
    """voicerag_turns_total of voice turns in a scrape of the console's /metrics; None: no answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "voicerag_turns_total" and sample.labels.get("front_door") == "voice"
    )


@pytest.fixture
def console_with_metrics(tmp_path: Path) -> Iterator[tuple[Terminal, int]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (`make test` installs it: scripts/system-deps.sh)")
    sources = write(tmp_path, "sources.yaml", "")
    port = free_port()
    env = clean_env(
        tmp_path / "data",
        SOURCES_FILE=str(sources),
        DATABASE_QUERIES_FILE=str(ROOT / "data" / "database.yaml"),
        DATABASE_SEED_FILE=str(ROOT / "data" / "seed.sql"),
        METRICS_PORT=str(port),
        TMPDIR=str(tmp_path),  # the metrics directory `voicerag agent` makes (the console is killed: no atexit)
    )
    terminal = Terminal(env)
    try:
        terminal.start([VOICERAG, "agent", "console", "--text"], tmp_path)
        yield terminal, port
    finally:
        terminal.close()


def test_the_console_serves_metrics_that_count_its_turns(console_with_metrics: tuple[Terminal, int]) -> None:
    console, port = console_with_metrics
    pane = console.wait_for(lambda text: "Type to talk" in text, 60)
    assert "Type to talk" in pane, f"no prompt within 60 s:\n{pane}"
    assert voice_turns(port) == 0  # served, nothing counted yet
    assert voice_turns(free_port()) is None  # control: a port nobody serves

    console.ask("thank you")  # small talk: a whole turn of the graph, no knowledge base needed
    pane = console.wait_for(lambda text: len(agent_replies(text)) >= 1, 30)
    assert agent_replies(pane)[0] == SAMPLE_PERSONA.small_talk.reply("thanks", "en"), pane
    deadline = time.monotonic() + 10  # the record is emitted as the turn ends
    while voice_turns(port) != 1:
        assert time.monotonic() < deadline, f"voice turns on /metrics: {voice_turns(port)}"
        time.sleep(0.2)
