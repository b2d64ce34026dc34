"""sources: what external sources cost a turn (issue 3's targets).

A local API server (aiohttp, same event loop; waits are sleeps, not CPU) answers `/delay/{ms}`
and `/hang`. Sources are real declared REST sources (`RestSpec`) through the real resilient HTTP
client, in the real graph over the sample knowledge base (e5, no chat model). Reported:
- fan-out: three sources answering in 100/200/300 ms — the turn's pre-generation time, against
  the same three sources and the knowledge-base search run one after another;
- cache hits: `request_json` served from the in-process cache and from Redis (loopback);
- a dead source: a hanging host under the turn deadline with its breaker closed, and the same
  host once its breaker is open, against a turn without it;
- fast paths, what must cost a turn (almost) nothing (the tests check they touch no network):
  `request_json` to a dead host behind an open breaker, the real-time feed answered from memory
  (`run_source` on the sample `service_status` feed, fed by a local WebSocket server), and the
  database source's rules choosing a query (`extract`, per question).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from langchain_core.messages import HumanMessage

from benchmarks.common import ROOT, Result, log, ms_since, now, print_table, stats
from benchmarks.graph_overhead import knowledge_base
from graph.builder import build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.http.cache import InMemoryResponseCache, ResponseCache
from retrievers.http.client import ResilientHttp
from retrievers.http.redis_cache import RedisResponseCache
from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.config import build_declared_sources, load_sources_file
from retrievers.sources.database import DatabaseSource, sqlite_url
from retrievers.sources.declared import DeclaredSource, RestSpec
from retrievers.sources.realtime import RealtimeSource
from retrievers.sources.registry import SourceRegistry
from retrievers.turn.failures import FetchError

NAME = "sources"
DEADLINE_MS = 1500


@contextlib.asynccontextmanager
async def local_api() -> AsyncIterator[str]:
    async def delay(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.json_response({"value": int(request.match_info["ms"])})

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/delay/{ms}", delay)
    app.router.add_get("/hang", hang)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def rest_source(name: str, url: str, http: ResilientHttp, timeout_s: float = 2.0) -> DeclaredSource:
    spec = RestSpec(
        name=name,
        description=f"benchmark source {name}",
        labels={"en": name, "ja": name},
        keywords={"en": [name]},
        url=url,
        ttl_s=0,
        timeout_s=timeout_s,
        summary={"en": f"{name} says {{value}}.", "ja": f"{name}: {{value}}"},
        keep={"value": "value"},
    )
    return DeclaredSource(spec, http)


def client(cache: ResponseCache | None = None, breaker_threshold: int = 1000) -> ResilientHttp:
    # High limits: the benchmark measures concurrency, not our own throttling.
    return ResilientHttp(
        allowed_hosts=["127.0.0.1", "localhost"],
        cache=cache,
        rate_limit="10000/second",
        breaker_threshold=breaker_threshold,
    )


async def turn_ms(services: Services, question: str) -> tuple[float, dict[str, Any]]:
    graph = build_graph(services)
    state = await graph.ainvoke({"messages": [HumanMessage(question)]}, context=Context())
    return float(state["timings_ms"]["pre_generation"]), state


async def fan_out(services: Services, base: str, turns: int) -> dict[str, Any]:
    http = client()
    sources = [rest_source(n, f"{base}/delay/{ms}", http) for n, ms in (("alpha", 100), ("beta", 200), ("gamma", 300))]
    services.sources = SourceRegistry(sources)
    question = "alpha beta gamma: what is the warranty on the KH-300?"
    concurrent, sequential = [], []
    ctx = SourceContext()
    try:
        for _ in range(turns):
            pre_generation, state = await turn_ms(services, question)
            assert [r["status"] for r in state["api_results"]] == ["ok", "ok", "ok"], state["api_results"]
            concurrent.append(pre_generation)
            started = now()  # the same work, one thing after another
            for source in sources:
                await run_source(source, source.params_model(), ctx)
            await services.knowledge_base.search(question)
            sequential.append(ms_since(started))
    finally:
        await http.aclose()
    together, one_by_one = stats(concurrent), stats(sequential)
    return {
        "concurrent": together,
        "sequential": one_by_one,
        "ratio_to_slowest_p50": round(together["p50"] / 300, 3),
        "ratio_to_slowest_p95": round(together["p95"] / 300, 3),
    }


@contextlib.contextmanager
def redis_url() -> Iterator[str | None]:
    """A Redis on loopback: 127.0.0.1:6379 when one answers, else our own on a free port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
        yield "redis://127.0.0.1:6379/15"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(50):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                time.sleep(0.1)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


async def cache_hits(base: str, hits: int) -> dict[str, Any]:
    async def measure(cache: ResponseCache) -> dict[str, float]:
        http = client(cache)
        try:
            url = f"{base}/delay/0"
            await http.request_json("GET", url, cache_ttl_s=300, cache_namespace="bench")
            times = []
            for _ in range(hits):
                started = now()
                response = await http.request_json("GET", url, cache_ttl_s=300, cache_namespace="bench")
                times.append(ms_since(started))
                assert response.cached
            return stats(times)
        finally:
            await http.clear_cache("bench")
            await http.aclose()

    figures: dict[str, Any] = {"in_process": await measure(InMemoryResponseCache())}
    with redis_url() as url:
        if url is None:
            log("  redis-server not found: Redis cache hits not measured")
        else:
            cache = RedisResponseCache(url)
            try:
                figures["redis"] = await measure(cache)
            finally:
                await cache.aclose()
    return figures


async def dead_source(services: Services, base: str, turns: int) -> dict[str, Any]:
    question = "alpha dead: what is the warranty on the KH-300?"
    http = client(breaker_threshold=3)
    alpha = rest_source("alpha", f"{base}/delay/100", http)
    # The dead source is reached as "localhost": another host, so only its breaker opens.
    dead = rest_source("dead", f"{base.replace('127.0.0.1', 'localhost')}/hang", http, timeout_s=10.0)
    try:
        services.sources = SourceRegistry([alpha])
        without = [(await turn_ms(services, question))[0] for _ in range(turns)]
        services.sources = SourceRegistry([alpha, dead])
        closed: list[float] = []

        def dead_is_open() -> bool:
            return any(h.startswith("localhost") and s == "open" for h, s in http.breaker_states().items())

        while not dead_is_open() and len(closed) < 10:
            pre_generation, state = await turn_ms(services, question)
            assert state["api_results"][1]["status"] == "timeout", state["api_results"]
            closed.append(pre_generation)
        opened = []
        for _ in range(turns):
            pre_generation, state = await turn_ms(services, question)
            opened.append(pre_generation)
    finally:
        await http.aclose()
    return {
        "deadline_ms": DEADLINE_MS,
        "without_dead_source": stats(without),
        "dead_breaker_closed": stats(closed),
        "dead_breaker_open": stats(opened),
        "open_breaker_cost_ms_p95": round(stats(opened)["p95"] - stats(without)["p95"], 2),
    }


EXTRACT_QUESTIONS = [
    "What is the warranty on the Kumo Halo?",
    "Is the Kumo Halo in stock in Shibuya?",
    "札幌店の営業時間は？",
    "Where is my order KA-2026-000123?",
    "渋谷店にクモ ハロの在庫はありますか？",
    "How do I reset my earbuds?",
]


async def breaker_open(calls: int) -> dict[str, float]:
    """`request_json` to a dead host once its breaker is open: refused before any connection."""
    http = client(breaker_threshold=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/x"  # nothing listens once the probe is closed
    times = []
    try:
        for _ in range(2):
            with contextlib.suppress(FetchError):
                await http.request_json("GET", url, retries=0)
        for _ in range(calls):
            started = now()
            with contextlib.suppress(FetchError):
                await http.request_json("GET", url, retries=0)
            times.append(ms_since(started))
        assert http.counters["attempts"] == 2, http.counters  # none after the breaker opened
    finally:
        await http.aclose()
    return stats(times)


async def realtime_from_memory(calls: int) -> dict[str, float]:
    """The sample `service_status` feed (data/sources.yaml) on a local WebSocket server: once a
    value has arrived, what `run_source` costs a turn."""
    from websockets.asyncio.server import ServerConnection, serve

    async def feed(connection: ServerConnection) -> None:
        await connection.recv()  # the subscribe message
        status = {"store": "operational", "app": "operational", "support": "operational"}
        await connection.send(json.dumps({"type": "status", "data": status, "ts": time.time()}))
        await connection.wait_closed()

    async with serve(feed, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        loaded = load_sources_file(ROOT / "data" / "sources.yaml", {"STATUS_WS_URL": f"ws://127.0.0.1:{port}/"})
        (source,) = [s for s in build_declared_sources(loaded.declarations, None) if isinstance(s, RealtimeSource)]
        await source.start()
        try:
            for _ in range(500):
                if source.latest is not None:
                    break
                await asyncio.sleep(0.01)
            params, ctx, times = source.params_model(), SourceContext(), []
            for _ in range(calls):
                started = now()
                result = await run_source(source, params, ctx)
                times.append(ms_since(started))
            assert result["status"] == "ok", result
        finally:
            await source.aclose()
    return stats(times)


def database_extract(rounds: int) -> dict[str, float]:
    """The database source's rules (data/database.yaml) choosing a query and its arguments, per question."""
    with tempfile.TemporaryDirectory() as folder:
        source = DatabaseSource(sqlite_url(Path(folder) / "unused.sqlite"), ROOT / "data" / "database.yaml")
        times = []
        for _ in range(rounds):
            for question in EXTRACT_QUESTIONS:
                started = now()
                source.extract(question, "en", ["渋谷店の営業時間は？"])
                times.append(ms_since(started))
    return stats(times)


async def unreachable_redis(base: str, calls: int) -> dict[str, Any]:
    """`request_json` with a Redis cache nobody answers for: the first request finds it gone, the
    next ones leave it alone (the tests check they do not dial it); against no cache at all."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        redis = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    cache, without = RedisResponseCache(redis), client()
    http = client(cache)
    url = f"{base}/delay/0"
    try:
        started = now()
        await http.request_json("GET", url, cache_ttl_s=30)
        first = ms_since(started)
        gone, alone = [], []
        for _ in range(calls):
            started = now()
            await http.request_json("GET", url, cache_ttl_s=30)
            gone.append(ms_since(started))
            started = now()
            await without.request_json("GET", url)
            alone.append(ms_since(started))
    finally:
        for closing in (http, without, cache):
            await closing.aclose()
    return {"first_ms": round(first, 2), "then": stats(gone), "no_cache": stats(alone)}


async def fast_paths(base: str, quick: bool) -> dict[str, Any]:
    calls = 200 if quick else 2000
    return {
        "breaker_open_request_json": await breaker_open(calls),
        "realtime_run_source_from_memory": await realtime_from_memory(calls),
        "database_extract_per_question": database_extract(calls // len(EXTRACT_QUESTIONS)),
        "unreachable_redis": await unreachable_redis(base, calls // 10),
    }


async def run(quick: bool) -> Result:
    turns = 5 if quick else 30
    services = await knowledge_base("sample_kb", quick)
    services.options = dataclasses.replace(services.options, deadline_ms=DEADLINE_MS)
    services.knowledge_base.result_cache_size = 0
    try:
        await warm_up(services)
        async with local_api() as base:
            log("  fan-out: 100/200/300 ms sources")
            fan = await fan_out(services, base, turns)
            log("  cache hits")
            cache = await cache_hits(base, 200 if quick else 2000)
            log("  dead source")
            dead = await dead_source(services, base, turns)
            log("  fast paths")
            fast = await fast_paths(base, quick)
    finally:
        await services.aclose()
    print_table(
        "sources: fan-out, three sources answering in 100/200/300 ms + knowledge-base search, ms",
        ["how", "p50", "p95", "ratio to the slowest (300 ms)"],
        [
            ["concurrent (the graph)", fan["concurrent"]["p50"], fan["concurrent"]["p95"],
             f'{fan["ratio_to_slowest_p50"]} / {fan["ratio_to_slowest_p95"]}'],
            ["one after another", fan["sequential"]["p50"], fan["sequential"]["p95"], "-"],
        ],
    )  # fmt: skip
    print_table(
        "sources: cache hit, request_json, ms",
        ["cache", "p50", "p95"],
        [[name, figures["p50"], figures["p95"]] for name, figures in cache.items()],
    )
    print_table(
        f"sources: a hanging source, turn deadline {DEADLINE_MS} ms, pre-generation ms",
        ["turn", "p50", "p95", "turns"],
        [
            [label, dead[key]["p50"], dead[key]["p95"], dead[key]["n"]]
            for key, label in (
                ("without_dead_source", "without it"),
                ("dead_breaker_closed", "breaker closed (waits for the deadline)"),
                ("dead_breaker_open", "breaker open (fails fast)"),
            )
        ],
    )
    print_table(
        "sources: fast paths (the tests check they touch no network), ms",
        ["what", "p50", "p95", "n"],
        [
            [label, fast[key]["p50"], fast[key]["p95"], fast[key]["n"]]
            for key, label in (
                ("breaker_open_request_json", "request_json, dead host, breaker open"),
                ("realtime_run_source_from_memory", "real-time feed: run_source from memory"),
                ("database_extract_per_question", "database rules: extract, per question"),
            )
        ],
    )
    redis = fast["unreachable_redis"]
    print_table(
        "sources: request_json (a cache miss) with Redis unreachable, ms",
        ["request", "p50", "p95", "n"],
        [
            ["the first (finds Redis gone)", redis["first_ms"], redis["first_ms"], 1],
            ["the next ones (Redis left alone)", redis["then"]["p50"], redis["then"]["p95"], redis["then"]["n"]],
            ["without a cache", redis["no_cache"]["p50"], redis["no_cache"]["p95"], redis["no_cache"]["n"]],
        ],
    )
    return Result(NAME, quick, {"fan_out": fan, "cache_hits": cache, "dead_source": dead, "fast_paths": fast})
