"""Known fake secrets configured everywhere (issue 9, item 7): the chat model's key (pointed at the
local fake OpenAI server), the sources' API key and OAuth2 client secret, passwords inside
DATABASE_URL, REDIS_URL, AUDIT_DATABASE_URL and CHROMA_URL. The commands a user runs — `ask --json`,
`search`, `chat`, `audit`, and each with a bad value — at LOG_LEVEL=DEBUG in JSON, and what they
leave in the data dir, must hold none of them, nor the personal data the questions carry.

Controls: the fake servers did receive the key and the secrets (so the commands really used them),
and the audit log does hold the turns (so an empty scan of it means something).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.api_server import TOKEN_PATH, FakeApiServer
from fakes.openai_server import Behaviour, FakeOpenAIServer
from helpers import FAKE_SECRETS, SAMPLE_PII
from leak_scan import needles, scan_text, scan_tree

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

VOICERAG = str(Path(sys.executable).parent / "voicerag")
LOOKING_FOR = needles(FAKE_SECRETS, SAMPLE_PII)
SECRETS_ONLY = needles(FAKE_SECRETS, {})
PARCEL = "1234-5678-9012"
MEMBER = "C-101518"


def closed_port() -> int:
    """A loopback port nothing listens on: the servers whose URLs carry a password are unreachable,
    so their failures (the messages most likely to quote a URL) are what gets written."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(Behaviour(reply="Your parcel is on its way.")) as server:
        yield server


@pytest.fixture(scope="module")
def apis() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        server.client_secret = FAKE_SECRETS["CRM_CLIENT_SECRET"]
        for number in (PARCEL, PARCEL.replace("-", "")):
            server.reply(f"/v1/parcels/{number}", json={"status": "in transit", "last_event": {"location": "Osaka"}})
        server.reply(f"/v1/members/{MEMBER}/points", json={"balance": 1200, "expires_on": "2027-03-31"})
        yield server


def environment(data_dir: Path, model: FakeOpenAIServer, apis: FakeApiServer, **changes: str) -> dict[str, str]:
    port = closed_port()
    return {
        **os.environ,
        "EMBEDDINGS": "use",
        "VOICERAG_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        "OPENAI_API_KEY": FAKE_SECRETS["OPENAI_API_KEY"],
        "OPENAI_BASE_URL": model.base_url,
        "LIVEKIT_API_KEY": FAKE_SECRETS["LIVEKIT_API_KEY"],
        "LIVEKIT_API_SECRET": FAKE_SECRETS["LIVEKIT_API_SECRET"],
        "CARRIER_API_URL": apis.url,
        "CARRIER_API_KEY": FAKE_SECRETS["CARRIER_API_KEY"],
        "CRM_API_URL": apis.url,
        "CRM_CLIENT_ID": apis.client_id,
        "CRM_CLIENT_SECRET": FAKE_SECRETS["CRM_CLIENT_SECRET"],
        "CATALOG_API_URL": apis.url,
        "DATABASE_URL": f"postgresql://app:{FAKE_SECRETS['DATABASE_PASSWORD']}@127.0.0.1:{port}/company",
        "REDIS_URL": f"redis://:{FAKE_SECRETS['REDIS_PASSWORD']}@127.0.0.1:{port}/0",
        **changes,
    }


class Commands:
    """Runs `voicerag` with the secrets set and keeps everything it printed."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.printed: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def run(self, *args: str, stdin: str | None = None, **changes: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [VOICERAG, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **changes},
            timeout=240,
        )
        what = f"`voicerag {args[0]}` (run {len(self.printed) + 1}{', with ' + ', '.join(changes) if changes else ''})"
        self.printed.append((what, done))
        return done

    def leaks(self) -> list[str]:
        """Secrets anywhere; personal data in logs and errors (stderr) and in what `audit` prints. An
        answer on stdout is the caller's own conversation: their words may come back to them there."""
        found = []
        for what, done in self.printed:
            found += scan_text(done.stderr, f"stderr of {what}", LOOKING_FOR)
            kept = LOOKING_FOR if what.startswith("`voicerag audit`") else SECRETS_ONLY
            found += scan_text(done.stdout, f"stdout of {what}", kept)
        return [finding.line() for finding in found]


def test_no_secret_or_personal_data_in_anything_the_commands_wrote(
    tmp_path: Path, model: FakeOpenAIServer, apis: FakeApiServer
) -> None:
    data_dir = tmp_path / "data"
    commands = Commands(environment(data_dir, model, apis))
    phone, email, card = SAMPLE_PII["mobile phone"], SAMPLE_PII["e-mail (ja)"], SAMPLE_PII["card"]

    asked = commands.run("ask", f"My number is {phone}. Where is my parcel {PARCEL}?", "--json")
    assert asked.returncode == 0, asked.stderr
    turn = json.loads(asked.stdout)
    assert [r["source"] for r in turn["api_results"] if r["status"] == "ok"] == ["parcel_tracking"], turn

    points = commands.run("ask", f"How many points do I have? Mail me at {email}", "--json", "--user", MEMBER,
                          "--roles", "member")  # fmt: skip
    assert points.returncode == 0, points.stderr
    order = commands.run("ask", f"What is the status of order KA-2026-000123? My card is {card}", "--user", MEMBER)
    assert order.returncode == 0, order.stderr  # the database is unreachable: said, not crashed

    searched = commands.run("search", f"warranty {phone}")
    assert searched.returncode == 0, searched.stderr
    chatted = commands.run("chat", "--user", MEMBER, stdin=f"Where is my parcel {PARCEL}? {email}\n\n")
    assert chatted.returncode == 0, chatted.stderr

    audit = commands.run("audit", "--json")
    assert audit.returncode == 0, audit.stderr
    records = [json.loads(line) for line in audit.stdout.splitlines()]
    assert len(records) >= 4, audit.stdout  # control: the turns were recorded (ask x3, chat)
    recorded = json.dumps(records, ensure_ascii=False)
    assert "[PHONE]" in recorded and "[EMAIL]" in recorded, recorded  # ...with the caller's words, masked

    # Bad values, with every secret set: one line naming the mistake, and nothing else.
    chroma_url = f"http://kb:{FAKE_SECRETS['CHROMA_PASSWORD']}@127.0.0.1:{closed_port()}"
    for args, changes, named in [
        (("chat", "--lang", "klingon"), {}, "--lang"),
        (("ask", "hello"), {"TOP_K": "zero"}, "TOP_K"),
        (("search", "hello"), {"CHROMA_URL": chroma_url}, "CHROMA_URL"),
        (("audit",), {"AUDIT_DATABASE_URL": commands.env["DATABASE_URL"].replace("/company", "/audit")}, "audit"),
        (("ask", "hello"), {"REDIS_URL": f"http://:{FAKE_SECRETS['REDIS_PASSWORD']}@127.0.0.1:1"}, "REDIS_URL"),
        (("ask", "hello"), {"WEATHER_API_URL": "http://api.open-meteo.com"}, "WEATHER_API_URL: plain http://"),
    ]:  # fmt: skip
        failed = commands.run(*args, **changes)
        last = failed.stderr.strip().splitlines()[-1] if failed.stderr.strip() else ""
        assert failed.returncode != 0 and "Traceback" not in failed.stderr, (args, changes, failed.stderr)
        assert last.startswith("error: ") and named in last, (args, changes, failed.stderr)

    # Controls: the secrets were really used.
    assert {r.headers.get("Authorization") for r in model.chat_requests} == {f"Bearer {FAKE_SECRETS['OPENAI_API_KEY']}"}
    parcel_calls = [r for r in apis.requests if r.path.startswith("/v1/parcels/")]
    assert parcel_calls and {r.headers.get("X-API-Key") for r in parcel_calls} == {FAKE_SECRETS["CARRIER_API_KEY"]}
    token_calls = apis.requests_to(TOKEN_PATH)
    assert token_calls and FAKE_SECRETS["CRM_CLIENT_SECRET"] in client_secrets_sent(token_calls)

    # Nothing printed, nothing written holds a secret or a caller's personal data.
    leaks = commands.leaks() + [finding.line() for finding in scan_tree(data_dir, LOOKING_FOR)]
    assert leaks == [], "\n".join(leaks)


def client_secrets_sent(requests: list[object]) -> str:
    """What the token requests carried as client credentials (HTTP Basic or the form)."""
    sent = []
    for request in requests:
        authorization = getattr(request, "headers", {}).get("Authorization", "")
        if authorization.startswith("Basic "):
            sent.append(base64.b64decode(authorization[6:]).decode())
        sent.append(getattr(request, "body", b"").decode(errors="replace"))
    return " ".join(sent)
