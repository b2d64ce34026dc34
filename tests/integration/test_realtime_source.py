"""The WebSocket real-time source against a real WebSocket server on 127.0.0.1.

The server (`fakes.ws_server`) runs in its own thread; the source runs its subscription on the
test's loop, exactly as in the app. Delays are small (backoff from 0.1 s) so the drops, refusals
and reconnects all happen for real within a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.ws_server import FakeWebSocketServer
from helpers import completes_without_waiting, offline_services
from hermetic import GUARD
from pydantic import ValidationError
from websockets.protocol import State

from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.realtime import RealtimeFeedConfig, RealtimeParams, RealtimeSource
from retrievers.sources.registry import SourceRegistry
from retrievers.turn.failures import FetchError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EN = SourceContext(language="en")
JA = SourceContext(language="ja")
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 0.4
CONNECT_SLACK_S = 0.5  # a TCP + WebSocket handshake on loopback, on a busy 2-core machine

# How the feed would be declared in data/sources.yaml (the URL is replaced by the fake server's).
DECLARED = """
realtime:
  - name: service_status
    url: ws://status.kumo-audio.example/v1/stream
    description: Live status of Kumo Audio's online services (store, app, support line)
    labels: {en: "the live service status", ja: "サービスの稼働状況"}
    examples:
      en: ["Is the online store working?", "Is the app down?"]
      ja: ["オンラインストアは使えますか", "アプリは落ちていますか"]
    keywords: {en: ["status", "down", "outage", "working"], ja: ["障害", "稼働", "つながらない", "落ちて"]}
    subscribe: {"type": "subscribe", "channel": "status"}
    value_path: "data"
    stale_after_s: 120
    summary:
      en: "Online store: {store}. Kumo Connect app: {app}. Support line: {support_line}."
      ja: "オンラインストアは{store}、Kumo Connectアプリは{app}、サポート窓口は{support_line}です。"
"""

OPERATIONAL = {"store": "operational", "app": "operational", "support_line": "operational"}
APP_DOWN = {"store": "operational", "app": "down", "support_line": "operational"}


def feed(url: str, **changes: Any) -> dict[str, Any]:
    """The declared feed, pointed at `url`, with fast backoff for tests."""
    entry: dict[str, Any] = yaml.safe_load(DECLARED)["realtime"][0]
    entry.update(url=url, backoff_initial_s=BACKOFF_INITIAL_S, backoff_max_s=BACKOFF_MAX_S, open_timeout_s=2.0)
    entry.update(changes)
    return entry


def message(status: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"type": "status", "data": status, **extra}


async def eventually(check: Callable[[], bool], timeout_s: float = 3.0, what: str = "condition") -> float:
    """Wait until `check()` is true; returns the seconds it took."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.002)
    return time.perf_counter() - started


def value_is(source: RealtimeSource, value: Any) -> Callable[[], bool]:
    return lambda: source.latest is not None and source.latest.value == value


@pytest.fixture
async def server() -> AsyncIterator[FakeWebSocketServer]:
    async with FakeWebSocketServer() as running:
        yield running


@pytest.fixture
async def source(server: FakeWebSocketServer) -> AsyncIterator[RealtimeSource]:
    """A started source, connected to the server."""
    started = RealtimeSource(feed(server.url))
    await started.start()
    await eventually(lambda: started.connected and server.clients == 1, what="the first connection")
    yield started
    await started.aclose()


# ---------------------------------------------------------------------- configuration


def test_declared_yaml_entry_builds_a_source_with_its_own_identity() -> None:
    source = RealtimeSource(feed("ws://status.kumo-audio.example/v1/stream"))
    assert source.name == "service_status"
    assert source.labels["ja"] == "サービスの稼働状況"
    assert source.examples["en"] == ["Is the online store working?", "Is the app down?"]
    tool = source.tool_schema()["function"]
    assert tool["name"] == "service_status"
    assert tool["description"].startswith("Live status of Kumo Audio")
    assert tool["parameters"]["properties"] == {}
    # two declared feeds are two sources with their own names, side by side in one registry
    other = RealtimeSource({**feed("wss://prices.kumo-audio.example/ws"), "name": "prices"})
    registry = SourceRegistry([source, other])
    assert registry.names == ["service_status", "prices"]
    assert source.ttl_s == 0 and source.required_roles == ()


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"url": "https://status.kumo-audio.example/v1/stream"}, "ws:// or wss://"),
        ({"url": "ws:///no-host"}, "no host"),
        ({"labels": {"en": "the live service status"}}, "missing: ja"),
        ({"name": "service status!"}, "tool name"),
        ({"summary": {"en": "Store: {store"}}, "not a valid template"),
        ({"value_path": "data..store"}, "dot path"),
        ({"backoff_initial_s": 5, "backoff_max_s": 1}, "backoff_max_s"),
        ({"stale_after": 120}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_what_would_fail_later(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RealtimeFeedConfig.model_validate({**feed("ws://status.kumo-audio.example/v1/stream"), **change})


# ---------------------------------------------------------------------- routing without an LLM


@pytest.mark.parametrize(
    ("question", "language", "applies"),
    [
        ("Is the app down?", "en", True),
        ("Is the online store WORKING right now?", "en", True),
        ("Any outages today?", "en", True),  # plural of a keyword
        ("ＳＴＡＴＵＳ of the store?", "en", True),  # full-width letters, NFKC
        ("How do I download the app?", "en", False),  # "down" is not a word here
        ("What is the warranty on the KH-300?", "en", False),
        ("アプリが落ちていますか", "ja", True),
        ("ストアにつながらないです", "ja", True),
        ("KH-300の保証期間は？", "ja", False),
        ("Is the app down?", "ja", False),  # only the question's language's keywords apply
    ],
)
def test_extract_matches_keywords_of_the_questions_language(question: str, language: Any, applies: bool) -> None:
    source = RealtimeSource(feed("ws://status.kumo-audio.example/v1/stream"))
    params = source.extract(question, language, [])
    assert (params == RealtimeParams()) if applies else params is None


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    source = RealtimeSource(feed("ws://x.example", backoff_initial_s=0.5, backoff_max_s=30))
    for failures, step in [(1, 0.5), (2, 1), (3, 2), (4, 4), (7, 30), (20, 30)]:
        delays = [source.backoff_delay(failures) for _ in range(200)]
        assert all(step / 2 <= delay <= step for delay in delays), (failures, min(delays), max(delays))
        assert max(delays) - min(delays) > step / 10  # jittered, not a fixed delay


# ---------------------------------------------------------------------- the latest value


async def test_subscribe_message_is_sent_after_connecting(server: FakeWebSocketServer, source: RealtimeSource) -> None:
    await eventually(lambda: len(server.received) == 1, what="the subscribe message")
    assert server.received == [{"type": "subscribe", "channel": "status"}]


async def test_latest_value_is_answered_with_its_freshness_and_the_age_grows(
    server: FakeWebSocketServer, source: RealtimeSource
) -> None:
    await server.push(message(OPERATIONAL))
    await server.push(message(APP_DOWN))
    await eventually(value_is(source, APP_DOWN), what="the second value")

    first = await source.fetch(RealtimeParams(), EN)
    assert first.summary == (
        "Online store: operational. Kumo Connect app: down. Support line: operational. (as of just now)"
    )
    assert first.data["value"] == APP_DOWN
    assert first.data["stale"] is False and first.data["connected"] is True
    assert first.data["timestamp"].endswith("+00:00")

    await asyncio.sleep(1.1)
    later = await source.fetch(RealtimeParams(), EN)
    assert later.data["age_s"] >= first.data["age_s"] + 1.0
    assert later.summary.endswith("(as of 1 second ago)")


async def test_message_timestamp_is_used_for_the_age_and_reported_in_utc(server: FakeWebSocketServer) -> None:
    async with RealtimeSource(feed(server.url, timestamp_path="ts")) as source:
        await eventually(lambda: source.connected)
        await server.push(message(OPERATIONAL, ts="2026-04-20T10:00:00+09:00"))
        await eventually(lambda: source.latest is not None)
        fetched = await source.fetch(RealtimeParams(), EN)
        assert fetched.data["timestamp"] == "2026-04-20T01:00:00+00:00"

        ninety_s_ago_ms = (time.time() - 90) * 1000  # epoch milliseconds are understood too
        await server.push(message(APP_DOWN, ts=ninety_s_ago_ms))
        await eventually(value_is(source, APP_DOWN))
        fetched = await source.fetch(RealtimeParams(), EN)
        assert 89 <= fetched.data["age_s"] < 95
        assert fetched.summary.endswith("(as of 1 minute ago)")

        await server.push(message(OPERATIONAL, ts=time.time() - 3600))  # older than what we have
        await server.push(message({**APP_DOWN, "store": "down"}, ts=time.time()))
        await eventually(value_is(source, {**APP_DOWN, "store": "down"}))
        assert source.skipped_messages == 0


async def test_japanese_summary_says_how_old_the_value_is(server: FakeWebSocketServer, source: RealtimeSource) -> None:
    await server.push(message(APP_DOWN))
    await eventually(value_is(source, APP_DOWN))
    fetched = await source.fetch(RealtimeParams(), JA)
    assert fetched.summary == (
        "オンラインストアはoperational、Kumo Connectアプリはdown、サポート窓口はoperationalです。（たった今の情報）"
    )


async def test_value_older_than_stale_after_is_flagged_in_both_languages(server: FakeWebSocketServer) -> None:
    async with RealtimeSource(feed(server.url, stale_after_s=0.3)) as source:
        await eventually(lambda: source.connected)
        await server.push(message(OPERATIONAL))
        await eventually(lambda: source.latest is not None)
        fresh = await source.fetch(RealtimeParams(), EN)
        assert fresh.data["stale"] is False and "out of date" not in fresh.summary

        await asyncio.sleep(0.4)
        stale = await source.fetch(RealtimeParams(), EN)
        assert stale.data["stale"] is True
        assert "(this may be out of date: last update" in stale.summary
        assert "古い情報の可能性があります）" in (await source.fetch(RealtimeParams(), JA)).summary

    async with RealtimeSource(feed(server.url, timestamp_path="ts")) as source:  # stale_after_s: 120
        await eventually(lambda: source.connected)
        await server.push(message(OPERATIONAL, ts=time.time() - 190))
        await eventually(lambda: source.latest is not None)
        stale = await source.fetch(RealtimeParams(), EN)
        assert stale.summary.endswith("(this may be out of date: last update 3 minutes ago)")
        assert (await source.fetch(RealtimeParams(), JA)).summary.endswith(
            "（最終更新は3分前のため、古い情報の可能性があります）"
        )


async def test_malformed_or_shapeless_messages_are_skipped_and_logged_not_fatal(
    server: FakeWebSocketServer, source: RealtimeSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="retrievers.sources.realtime")
    await server.push(message(OPERATIONAL))
    await eventually(value_is(source, OPERATIONAL))
    await server.push_raw('{"type": "status", "data": {"store": ')  # cut short
    await server.push_raw("not json at all")
    await server.push({"type": "heartbeat"})  # no "data"
    await server.push(message(APP_DOWN))
    await eventually(value_is(source, APP_DOWN), what="the value after the bad ones")

    assert source.skipped_messages == 3
    assert source.connections == 1 and server.connects == 1  # the connection survived them
    skipped = [r.getMessage() for r in caplog.records if "skipped a message" in r.getMessage()]
    assert len(skipped) == 3
    assert "not JSON" in skipped[0] and "no 'data' in the message" in skipped[2]


# ---------------------------------------------------------------------- drops, refusals, reconnects


@pytest.mark.parametrize("abrupt", [True, False], ids=["connection-reset", "close-frame"])
async def test_server_drop_reconnects_within_the_first_backoff_and_later_values_arrive(
    server: FakeWebSocketServer, source: RealtimeSource, abrupt: bool
) -> None:
    await server.push(message(OPERATIONAL))
    await eventually(value_is(source, OPERATIONAL))

    dropped_at = time.perf_counter()
    assert await server.drop_all(abrupt=abrupt) == 1
    await eventually(lambda: source.connections == 2 and server.clients == 1, what="the reconnection")
    took = time.perf_counter() - dropped_at
    # it waited (jittered half to all of the first step), and not much more
    assert BACKOFF_INITIAL_S / 2 <= took <= BACKOFF_INITIAL_S + CONNECT_SLACK_S

    # the value from before the drop is still served, then the new ones arrive on the new connection
    assert (await source.fetch(RealtimeParams(), EN)).data["value"] == OPERATIONAL
    await server.push(message(APP_DOWN))
    await eventually(value_is(source, APP_DOWN), what="a value after the reconnection")
    await eventually(lambda: len(server.received) == 2, what="the second subscribe")
    assert server.received == [{"type": "subscribe", "channel": "status"}] * 2  # subscribed again


async def test_server_down_for_a_while_then_back_reconnects_and_backoff_resets(
    server: FakeWebSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retrievers.sources.realtime")
    cap_s = 1.6  # steps 0.1, 0.2, 0.4, 0.8, 1.6, 1.6 ...
    async with RealtimeSource(feed(server.url, backoff_max_s=cap_s)) as source:
        await eventually(lambda: source.connected)
        await server.push(message(OPERATIONAL))
        await eventually(value_is(source, OPERATIONAL))

        await server.go_down()
        await eventually(lambda: not source.connected, what="the source to notice the drop")
        await asyncio.sleep(1.5)
        # meanwhile the last value is still served, flagged by its age and as disconnected
        stale = await source.fetch(RealtimeParams(), EN)
        assert stale.data["value"] == OPERATIONAL and stale.data["connected"] is False
        assert stale.data["age_s"] >= 1.5 and stale.summary.endswith("(as of 1 second ago)")

        back_at = time.perf_counter()
        await server.come_back()
        await eventually(lambda: source.connections == 2, timeout_s=5, what="the reconnection after the outage")
        assert time.perf_counter() - back_at <= cap_s + CONNECT_SLACK_S  # the cap bounds the wait
        await server.push(message(APP_DOWN))
        await eventually(value_is(source, APP_DOWN))

        # one log line per (re)connect and per drop or refused attempt, with a growing, jittered delay
        lines = [r.getMessage() for r in caplog.records]
        assert [line for line in lines if "connected to" in line] == [
            f"realtime service_status: connected to {server.url} (connection 1)",
            f"realtime service_status: connected to {server.url} (connection 2)",
        ]
        retries = [line for line in lines if "reconnecting" in line]
        assert "connection lost" in retries[0] and "attempt 1)" in retries[0]
        assert all("could not connect (ConnectionRefusedError" in line for line in retries[1:])
        assert 3 <= len(retries) - 1 <= 6  # refused attempts in 1.5 s: backed off, not a hot loop
        for attempt, line in enumerate(retries, start=1):
            found = re.search(r"in ([0-9.]+) s \(attempt (\d+)\)$", line)
            assert found and int(found.group(2)) == attempt, line
            delay = float(found.group(1))
            step = min(cap_s, BACKOFF_INITIAL_S * 2 ** (attempt - 1))
            assert step / 2 - 0.01 <= delay <= step + 0.01, (attempt, delay)

        # the successful connection reset the backoff: the next drop is retried after the first step
        # again (without the reset it would wait at least 0.8 s)
        dropped_at = time.perf_counter()
        await server.drop_all()
        await eventually(lambda: source.connections == 3, what="the reconnection after the reset")
        assert time.perf_counter() - dropped_at <= BACKOFF_INITIAL_S + 0.35


# ---------------------------------------------------------------------- the sample company's feed


async def test_the_sample_feed_starts_only_when_asked_for(
    server: FakeWebSocketServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data/sources.yaml declares `service_status` only when STATUS_WS_URL is set, and the test
    session clears it (tests/hermetic.py): a test that wants the feed points it at a local server."""
    without = offline_services(tmp_path / "without")
    switched_off = without.sources.get("service_status")  # known, so that it can be said to be off
    assert switched_off is not None and "STATUS_WS_URL" in str(switched_off.unavailable)
    with GUARD.watching() as network:
        await without.sources.start()  # what warm_up does at start-up
    assert network == []  # no feed dialled, no name looked up
    await without.aclose()

    monkeypatch.setenv("STATUS_WS_URL", server.url)
    services = offline_services(tmp_path / "with")
    try:
        await services.sources.start()  # what warm_up does at start-up
        await eventually(lambda: server.clients == 1, what="the sample feed to connect to the local server")
        status = {"store": "operational", "app": "down", "support": "operational"}
        await server.push({"type": "status", "data": status, "ts": time.time()})
        source = services.sources.get("service_status")
        assert isinstance(source, RealtimeSource)
        await eventually(lambda: source.latest is not None, what="the pushed status")
        result = await run_source(source, RealtimeParams(), EN)
        assert result["status"] == "ok" and "app: down" in result["summary"]
    finally:
        await services.aclose()
    await eventually(lambda: server.clients == 0, what="the feed to be closed with the services")


# ---------------------------------------------------------------------- no value yet


async def test_no_value_yet_raises_unreachable_and_run_source_says_it_failed(server: FakeWebSocketServer) -> None:
    never_started = RealtimeSource(feed(server.url))
    with pytest.raises(FetchError, match="not started") as caught:
        await never_started.fetch(RealtimeParams(), EN)
    assert caught.value.kind == "unreachable"

    async with RealtimeSource(feed(server.url)) as connected_but_silent:
        await eventually(lambda: connected_but_silent.connected)
        result = await run_source(connected_but_silent, RealtimeParams(), EN)
        assert result["status"] == "error" and result["data"] == {"error": "unreachable"}
        assert result["summary"] == "I couldn't get the live service status just now."
        assert result["source"] == "service_status"

    await server.go_down()
    async with RealtimeSource(feed(server.url)) as refused:
        await asyncio.sleep(0.3)
        assert refused.connections == 0
        result = await run_source(refused, RealtimeParams(), JA)
        assert result["status"] == "error"
        assert result["summary"] == "サービスの稼働状況の情報を今取得できませんでした。"


async def test_run_source_answers_from_the_latest_value(server: FakeWebSocketServer, source: RealtimeSource) -> None:
    await server.push(message(APP_DOWN))
    await eventually(value_is(source, APP_DOWN))
    result = completes_without_waiting(run_source(source, RealtimeParams(), EN))  # from memory
    assert result["status"] == "ok" and result["cached"] is False
    assert result["summary"].startswith("Online store: operational. Kumo Connect app: down.")


# ---------------------------------------------------------------------- no network in fetch, nothing leaks


async def test_fetch_answers_from_memory_never_waiting_nor_touching_the_network(
    server: FakeWebSocketServer, source: RealtimeSource
) -> None:
    await server.push(message(OPERATIONAL))
    await eventually(value_is(source, OPERATIONAL))
    await server.go_down()  # no server at all: fetch must not care
    await eventually(lambda: not source.connected)

    with GUARD.watching() as network:
        answers = [completes_without_waiting(source.fetch(RealtimeParams(), EN)) for _ in range(100)]
    assert network == []  # `make bench` (sources) measures what a fetch costs
    assert {a.data["value"]["app"] for a in answers} == {"operational"} and not answers[-1].data["connected"]


def test_the_no_waiting_check_can_fail() -> None:
    """Control: a fetch that waits on anything (here a zero sleep) is caught."""

    async def waits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(AssertionError, match="suspended"):
        completes_without_waiting(waits())


async def test_aclose_cancels_the_task_and_closes_the_connection(server: FakeWebSocketServer) -> None:
    before = asyncio.all_tasks()
    source = RealtimeSource(feed(server.url))
    await source.start()
    await source.start()  # idempotent: still one task
    ours = asyncio.all_tasks() - before
    assert [task.get_name() for task in ours] == ["realtime:service_status"]
    await eventually(lambda: source.connected and server.clients == 1)
    connection = source.connection
    assert connection is not None

    async with asyncio.timeout(2):  # a task that ignored the cancel would hang here
        await source.aclose()
    assert asyncio.all_tasks() - before == set()
    assert all(task.done() for task in ours)
    assert connection.state is State.CLOSED and connection.transport.is_closing()
    assert not source.connected and not source.running
    await eventually(lambda: server.clients == 0, what="the server to see the connection closed")
    await source.aclose()  # twice is fine


async def test_aclose_during_backoff_leaves_nothing_pending(server: FakeWebSocketServer) -> None:
    await server.go_down()
    before = asyncio.all_tasks()
    source = RealtimeSource(feed(server.url, backoff_initial_s=5, backoff_max_s=5))
    await source.start()
    await asyncio.sleep(0.1)  # refused, now sleeping in the backoff
    assert source.running and not source.connected
    started = time.perf_counter()
    await source.aclose()
    assert time.perf_counter() - started < 0.5  # cancelled, not waiting out the backoff
    assert asyncio.all_tasks() - before == set()
