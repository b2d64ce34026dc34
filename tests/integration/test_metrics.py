"""Prometheus metrics (voicerag/metrics/): real turns of the compiled graph (embedded Chroma, the
offline model) and the real HTTP layer against a local server feed the metrics sink and observers;
LiveKit's own `/metrics` endpoint (what the worker serves on METRICS_PORT) is scraped over HTTP on
127.0.0.1. Also: two processes writing in multiprocess mode, one scrape sees the sum; every metric
the Grafana dashboard queries exists in a real scrape.

Counters are process-wide, so assertions compare a scrape before and after (deltas)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fakes.api_server import FakeApiServer, Reply
from fakes.sources import named
from helpers import REPO, offline_services
from langchain_core.messages import HumanMessage
from livekit.agents.telemetry.http_server import HttpServer
from prometheus_client.parser import text_string_to_metric_families

from graph.builder import build_graph, warm_up
from graph.context import Context
from graph.observer import observing
from graph.services import Services
from graph.turn_record import Sink, TurnRecord
from retrievers.documents import Document
from retrievers.http import observers
from retrievers.http.cache import InMemoryResponseCache
from retrievers.http.client import ResilientHttp
from retrievers.sources.registry import SourceRegistry
from retrievers.turn.failures import FetchError
from voicerag.metrics import exporter

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

DASHBOARD = REPO / "deploy" / "grafana" / "voicerag.json"
WARRANTY = "The Zephyr Z-9 turntable has a warranty of 7 years."
CALLER = Context(user_id="C-1", roles=["member"], tenant="acme", turn_id="turn-1", session_id="session-1")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base_services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    services = offline_services(tmp_path_factory.mktemp("metrics"))
    await services.knowledge_base.index_documents(
        [Document(id="zephyr-warranty", title="Zephyr warranty", text=WARRANTY, lang="en", category="support")]
    )
    await warm_up(services)
    yield services
    await services.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def endpoint() -> AsyncIterator[str]:
    """LiveKit's metrics server (the worker's, on METRICS_PORT) on a free loopback port."""
    server = HttpServer("127.0.0.1", 0)
    await server.start()
    yield f"http://127.0.0.1:{server.port}/metrics"
    await server.aclose()


@pytest.fixture
def http_observed() -> Iterator[None]:
    exporter.observe_http()
    yield
    observers.cache_observers.remove(exporter.cache_observer)
    observers.breaker_observers.remove(exporter.breaker_observer)


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


async def turn(services: Services, question: str, sinks: list[Sink]) -> TurnRecord:
    graph = build_graph(services)
    with observing(TurnRecord.for_context(CALLER, "ask"), sinks) as observer:
        await graph.ainvoke({"messages": [HumanMessage(question)]}, {"callbacks": [observer]}, context=CALLER)
    return observer.record


async def test_real_turns_move_the_turn_node_source_and_latency_metrics(base_services: Services, endpoint: str) -> None:
    services = dataclasses.replace(base_services, sources=SourceRegistry(list(base_services.sources)))
    services.sources.register(named("stock", delay_s=0.02))
    before = await scrape(endpoint)

    control = await turn(services, "How long is the warranty of the Zephyr Z-9?", [])  # no metrics sink
    assert control.route == "lookup"
    assert value(await scrape(endpoint), "voicerag_turns_total") == value(before, "voicerag_turns_total")

    lookup = await turn(services, "How long is the warranty of the Zephyr Z-9? And the stock?", [exporter.metrics_sink])
    small_talk = await turn(services, "thank you", [exporter.metrics_sink])
    after = await scrape(endpoint)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert lookup.route == "lookup" and "stock" in lookup.sources and small_talk.route == "small_talk"
    assert moved("voicerag_turns_total") == 2
    degraded = str(lookup.degraded).lower()
    assert moved("voicerag_turns_total", front_door="ask", route="lookup", degraded=degraded) == 1, lookup
    assert moved("voicerag_turns_total", front_door="ask", route="small_talk") == 1
    status = str(lookup.sources["stock"]["status"])
    assert moved("voicerag_source_requests_total", source="stock", status=status) == 1
    assert moved("voicerag_source_seconds_count", source="stock") == 1
    assert moved("voicerag_source_seconds_sum", source="stock") >= 0.02  # the source's own delay
    for node in lookup.nodes_ms:
        assert moved("voicerag_node_seconds_count", node=node) >= 1, node
    assert moved("voicerag_turn_first_token_seconds_count", front_door="ask") == 2  # both answered
    assert moved("voicerag_fillers_total") == moved("voicerag_interruptions_total") == 0  # not voice


async def test_voice_turn_figures_fillers_interruptions_rate_limits_and_llm_usage(endpoint: str) -> None:
    before = await scrape(endpoint)
    voice = TurnRecord(turn_id="t", session_id="s", user_id="u", front_door="voice", route="lookup")
    voice.end_of_turn_ms, voice.first_token_ms, voice.filler, voice.cancelled = 300.0, 200.0, "observed", True
    refused = TurnRecord(turn_id="t2", session_id="s", user_id="u", front_door="chat", route="refused")
    refused.rate_limited, refused.cancelled = True, True  # a cancelled text turn is no barge-in
    speculative = TurnRecord(turn_id="t4", session_id="s", user_id="u", front_door="voice", route="lookup")
    speculative.cancelled = speculative.speculative = True  # LiveKit discarded a preemptive run: no barge-in
    heard = TurnRecord(turn_id="t5", session_id="s", user_id="u", front_door="voice", route="lookup")
    usage = TurnRecord(turn_id="t3", session_id="s", user_id="u", front_door="ask", route="lookup")
    usage.add_usage(100, 20, 0.001)  # two chat-model calls of one turn (router, answer)
    usage.add_usage(20, 10, 0.0005)
    for record in (voice, refused, usage, speculative, heard):
        exporter.metrics_sink(record)
    spoken = exporter.SpokenTurnMetrics()
    spoken.turn_spoken(heard)  # voiced whole: no interruption
    heard.interrupted = True
    spoken.turn_spoken(heard)  # the caller spoke over the answer after the run was over
    after = await scrape(endpoint)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Voice: end of speech → first token = LiveKit's end-of-turn decision + ours (0.3 + 0.2 s).
    assert moved("voicerag_turn_first_token_seconds_sum", front_door="voice") == pytest.approx(0.5)
    assert moved("voicerag_turn_first_token_seconds_bucket", front_door="voice", le="0.5") == 1
    assert moved("voicerag_turn_first_token_seconds_bucket", front_door="voice", le="0.25") == 0
    assert moved("voicerag_fillers_total") == 1
    assert moved("voicerag_interruptions_total") == 2  # the cancelled voice turn and the answer cut while heard
    assert moved("voicerag_rate_limited_total") == 1
    assert moved("voicerag_llm_tokens_total", kind="input") == 120
    assert moved("voicerag_llm_tokens_total", kind="output") == 30
    assert moved("voicerag_llm_tokens_total") == 150  # no "total" kind counting them twice
    assert moved("voicerag_llm_cost_usd_total") == pytest.approx(0.0015)


async def test_the_http_layer_feeds_cache_and_breaker_metrics(endpoint: str, http_observed: None) -> None:
    before = await scrape(endpoint)
    http = ResilientHttp(allowed_hosts=["127.0.0.1"], cache=InMemoryResponseCache(), max_retries=0, breaker_threshold=1)
    try:
        with FakeApiServer() as server:
            for _ in range(2):  # a miss, then a hit
                await http.request_json("GET", server.url_for("/items"), cache_ttl_s=60)
            server.reply("/down", Reply(status=503))
            with pytest.raises(FetchError):
                await http.request_json("GET", server.url_for("/down"))
            host = f"127.0.0.1:{server.port}"
            opened = await scrape(endpoint)
            assert value(opened, "voicerag_breaker_open", host=host) == 1
    finally:
        await http.aclose()
    after = await scrape(endpoint)
    assert (
        value(after, "voicerag_cache_requests_total", result="hit")
        - value(before, "voicerag_cache_requests_total", result="hit")
        == 1
    )
    assert (
        value(after, "voicerag_cache_requests_total", result="miss")
        - value(before, "voicerag_cache_requests_total", result="miss")
        == 1
    )  # /items once; /down was not asked to be cached


# ------------------------------------------------------------------------------ the dashboard


def dashboard_metrics() -> set[str]:
    """The metric names in every PromQL query of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(queries) >= 10
    return {name for query in queries for name in re.findall(r"\bvoicerag_[a-z_]+", query)}


async def test_every_metric_the_dashboard_queries_is_in_a_real_scrape(endpoint: str, http_observed: None) -> None:
    record = TurnRecord(turn_id="t", session_id="s", user_id="u", front_door="voice", route="lookup")
    record.first_token_ms, record.nodes_ms, record.filler = 200.0, {"generate": 12.0}, "expected"
    record.sources = {"weather": {"status": "ok", "elapsed_ms": 40.0}}
    record.add_usage(1, 1, 0.0001)
    exporter.metrics_sink(record)
    observers.cache_result("hit")
    observers.breaker_changed("api.example.com", "closed")
    scraped = {name for name, _ in await scrape(endpoint)}

    wanted = dashboard_metrics()
    assert wanted - scraped == set(), "queried by the dashboard, absent from /metrics"
    # Each metric of the exporter is on the dashboard (as a counter, histogram or gauge sample).
    families = {m._name for m in vars(exporter).values() if hasattr(m, "_name") and hasattr(m, "collect")}
    assert len(families) == 12
    for family in families:
        assert any(name.startswith(family) for name in wanted), f"{family} is not on the dashboard"


# ------------------------------------------------------------------------------ multiprocess


WRITER = """
import sys
from voicerag import metrics
metrics.enable(int(sys.argv[1]))  # before prometheus_client is imported: multiprocess mode
from graph.turn_record import TurnRecord
from retrievers.http import observers
from voicerag.metrics import exporter
exporter.observe_http()
record = TurnRecord(turn_id="t", session_id="s", user_id="u", front_door="voice", route="lookup")
record.first_token_ms, record.end_of_turn_ms = 100.0, 100.0
exporter.metrics_sink(record)
observers.cache_result("hit")
"""


async def test_two_processes_writing_one_scrape_sees_the_sum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, "9464", env=env, cwd=REPO, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]  # at the same time, as LiveKit's job processes do
    for writer in writers:
        _, stderr = await asyncio.wait_for(writer.communicate(), 60)
        assert writer.returncode == 0, stderr.decode()
    assert len(os.listdir(tmp_path)) >= 2  # a file per process (and kind of metric)
    # LiveKit's handler aggregates the directory when PROMETHEUS_MULTIPROC_DIR is set (as in the worker).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    server = HttpServer("127.0.0.1", 0)
    await server.start()
    try:
        samples = await scrape(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.aclose()
    assert value(samples, "voicerag_turns_total", front_door="voice", route="lookup") == 2
    assert value(samples, "voicerag_cache_requests_total", result="hit") == 2
    assert value(samples, "voicerag_turn_first_token_seconds_count", front_door="voice") == 2
    assert value(samples, "voicerag_turn_first_token_seconds_sum", front_door="voice") == pytest.approx(0.4)


async def test_the_worker_wires_metrics_only_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off by default: no port for LiveKit's AgentServer, no metrics sink. `voicerag.metrics.enable`
    (what `voicerag agent` does with METRICS_PORT) gives both, and keeps an operator's directory."""
    from voicerag import metrics, worker

    assert worker.server._prometheus_port is None and metrics.turn_sinks() == []
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/operator-chosen")
    monkeypatch.delenv(metrics.PORT_ENV, raising=False)
    assert metrics.enable(9464) == "/tmp/operator-chosen" and metrics.metrics_port() == 9464
    try:
        assert metrics.turn_sinks() == [exporter.metrics_sink]
        assert exporter.cache_observer in observers.cache_observers
    finally:
        observers.cache_observers.remove(exporter.cache_observer)
        observers.breaker_observers.remove(exporter.breaker_observer)
