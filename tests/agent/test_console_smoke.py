"""`voicerag agent console --text` in a real terminal (tmux), typed at like a person would, no keys.

A tiny knowledge base is ingested with the real CLI, then the console runs in a detached tmux
session on a private socket (`tmux -L`, so no other tmux server is touched); the test types two
questions and reads the agent's answers from the pane. Also: the CLI's refusals before anything
starts (missing LIVEKIT_URL, missing OPENAI_API_KEY for voice, no mode).

The console runs in a tmp working directory (with DATABASE_* pointing at the project's data/), so
a developer's `.env` in the project root cannot hand it a real key.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import SAMPLE_PERSONA, write

from voicerag.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VOICERAG = str(Path(sys.executable).parent / "voicerag")
FACT = "41 hours"
DOCUMENT = f"# Zephyr Lamp ZL-9 battery\n\nThe Zephyr Lamp ZL-9 runs for {FACT} on one charge of its battery.\n"


def clean_env(cwd_data: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without voicerag settings or OpenAI / LiveKit variables."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in settings and not k.upper().startswith(("OPENAI_", "LIVEKIT_")) and k != "FORCE_COLOR"
    }
    env.update(VOICERAG_DATA_DIR=str(cwd_data), EMBEDDINGS="use", **extra)
    return env


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICERAG, *args], cwd=cwd, env=clean_env(cwd / "data", **env), capture_output=True, text=True, timeout=120
    )


# --------------------------------------------------------------------------------------------
# Refusals: one line naming what is missing, exit 2, nothing started.


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_dev_without_livekit_url_names_it(tmp_path: Path) -> None:
    line = refusal(run_cli(tmp_path, "agent", "dev", OPENAI_API_KEY="dummy"))
    assert "LIVEKIT_URL" in line


def test_voice_console_without_openai_key_names_it(tmp_path: Path) -> None:
    line = refusal(run_cli(tmp_path, "agent", "console"))
    assert "OPENAI_API_KEY" in line and "--text" in line


def test_no_mode_is_refused_with_the_usage(tmp_path: Path) -> None:
    """No mode: the command's usage (which names the modes), exit 2 (voicerag/cli/agent.py)."""
    done = run_cli(tmp_path, "agent")
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr, done.stderr
    usage = " ".join(done.stdout.split())  # however the terminal width wrapped it
    assert "Usage: voicerag agent" in usage and "console [--text], dev or start" in usage


def test_an_unknown_mode_names_it(tmp_path: Path) -> None:
    line = refusal(run_cli(tmp_path, "agent", "serve"))
    assert line.startswith("error: MODE:") and "'serve'" in line


# --------------------------------------------------------------------------------------------
# The text console in tmux.


class Terminal:
    """A tmux server of its own (private socket, no config file) with one detached session."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"voicerag-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.pane_pid: int | None = None
        self.socket_path: str | None = None

    def start(self, command: list[str], cwd: Path) -> None:
        # remain-on-exit: if the console dies, its last words stay readable. A wide pane keeps
        # the answers on their own lines next to LiveKit's log lines.
        self.tmux(
            *("-f", "/dev/null", "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";"),
            *("new-session", "-d", "-s", "main", "-x", "220", "-y", "60", "-c", str(cwd), *command),
        )
        pane_pid, self.socket_path = self.tmux(
            "display-message", "-p", "-t", "main", "#{pane_pid} #{socket_path}"
        ).split()
        self.pane_pid = int(pane_pid)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-u", "-L", self.socket, *args], env=self.env, capture_output=True, text=True, timeout=10
        )  # -u: UTF-8 whatever the locale
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def text(self) -> str:
        """Everything the pane showed (history included), wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "main")

    def ask(self, line: str, timeout_s: float = 30) -> None:
        """Type `line` and press Enter until the console shows it as the user's turn. LiveKit's
        console drops an Enter pressed before its session has started, just after the prompt
        appears (the typed text stays in the input line), and on a loaded machine also one pressed
        just after the agent's reply (the text is then cleared: it is typed again)."""
        before = len(headers(self.text(), "You"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.typed(line):
                self.tmux("send-keys", "-t", "main", "-l", line)
                self.wait_for(lambda pane: self.typed(line, pane), 2)
            self.tmux("send-keys", "-t", "main", "Enter")
            if len(headers(self.wait_for(lambda pane: len(headers(pane, "You")) > before, 2), "You")) > before:
                return
        raise AssertionError(f"the console did not take {line!r} within {timeout_s} s:\n{self.text()}")

    def typed(self, line: str, pane: str | None = None) -> bool:
        """Whether the console's input line (the last "❯" line) holds `line`."""
        prompts = [row for row in (pane if pane is not None else self.text()).splitlines() if "❯" in row]
        return bool(prompts) and line in prompts[-1]

    def wait_for(self, seen: Callable[[str], bool], timeout_s: float) -> str:
        """Poll the pane until `seen(pane)` or the timeout; the pane either way (never a traceback)."""
        deadline = time.monotonic() + timeout_s
        while True:
            pane = self.text()
            assert "Traceback" not in pane and "Pane is dead" not in pane, pane
            if seen(pane) or time.monotonic() > deadline:
                return pane
            time.sleep(0.25)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        if self.pane_pid is not None:  # the console runs in the pane's process group: end it too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pane_pid, signal.SIGKILL)
        if self.socket_path:  # kill-server leaves the socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


def headers(pane: str, who: str) -> list[int]:
    """Line numbers of the "● You" / "● Agent" headers the console prints above each turn."""
    header = re.compile(rf"^\s*\S\s+{who}\s*$")
    return [i for i, line in enumerate(pane.splitlines()) if header.match(line)]


def agent_replies(pane: str) -> list[str]:
    """The text under each "● Agent" header, up to the `llm_ttft` line or a blank line."""
    lines = pane.splitlines()
    replies = []
    for i in headers(pane, "Agent"):
        body = []
        for line in lines[i + 1 :]:
            if not line.strip() or line.strip().startswith(("llm_ttft", "─")):
                break
            body.append(line.strip())
        replies.append(" ".join(body))
    return replies


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (`make test` installs it: scripts/system-deps.sh)")
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("libportaudio2 is not installed (`make test` installs it: scripts/system-deps.sh)")
    write(tmp_path, "kb/zephyr.md", DOCUMENT)
    sources = write(tmp_path, "sources.yaml", "")  # no declared sources: no real-time feed to connect to
    env = clean_env(
        tmp_path / "data",
        SOURCES_FILE=str(sources),
        DATABASE_QUERIES_FILE=str(ROOT / "data" / "database.yaml"),
        DATABASE_SEED_FILE=str(ROOT / "data" / "seed.sql"),
    )
    ingest = subprocess.run(
        [VOICERAG, "ingest", "kb"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    terminal = Terminal(env)
    try:
        terminal.start([VOICERAG, "agent", "console", "--text"], tmp_path)
        yield terminal
    finally:
        terminal.close()


def test_text_console_answers_from_the_knowledge_base(console: Terminal) -> None:
    pane = console.wait_for(lambda text: "Type to talk" in text, 60)
    assert "Type to talk" in pane, f"no prompt within 60 s:\n{pane}"

    console.ask("How long does the Zephyr Lamp ZL-9 battery last?")
    pane = console.wait_for(lambda text: len(agent_replies(text)) >= 1, 30)
    replies = agent_replies(pane)
    assert replies and FACT in replies[0], f"no answer with {FACT!r}:\n{pane}"

    console.ask("thank you")
    pane = console.wait_for(lambda text: len(agent_replies(text)) >= 2, 30)
    replies = agent_replies(pane)
    thanks = SAMPLE_PERSONA.small_talk.reply("thanks", "en")  # small talk, not a lookup nor "not found"
    assert len(replies) == 2 and replies[1] == thanks, f"not the reply to thanks ({thanks!r}):\n{pane}"
    assert "Traceback" not in pane, pane

    # Both turns are in the worker's audit log (the default file in the data dir), as voice turns of
    # one call: written off the turn's path, so they may take a moment.
    audit = Path(console.env["VOICERAG_DATA_DIR"]) / "audit.sqlite"
    deadline = time.monotonic() + 15
    while len(records := read_audit(audit)) < 2:
        assert time.monotonic() < deadline, f"audit records: {records}"
        time.sleep(0.2)
    assert [(r["front_door"], r["route"]) for r in records] == [("voice", "lookup"), ("voice", "small_talk")]
    assert records[0]["session_id"] == records[1]["session_id"] != ""  # the room: one call


def read_audit(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as database:
        database.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in database.execute("SELECT * FROM audit_records ORDER BY seq")]
        except sqlite3.OperationalError:  # the table is not there yet
            return []
