"""The voicerag metrics (prometheus_client) and what feeds them: a `TurnRecord` sink and the HTTP
layer's observers (`retrievers/http/observers.py`).

Labels stay bounded: front doors, route kinds, node names, configured source names and hosts,
statuses — never a user, session or question. Import this only after `voicerag.metrics.enable`
(or in a process that does not aggregate): see `voicerag/metrics/__init__.py`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from graph.turn_record import TurnRecord
from retrievers.http import observers

# Seconds: a voice turn's first token is best under ~1 s; a slow source or node runs into seconds.
FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 30.0)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

TURNS = Counter("voicerag_turns", "Turns, by front door, route kind and degraded", ["front_door", "route", "degraded"])
FIRST_TOKEN = Histogram(
    "voicerag_turn_first_token_seconds",
    "Voice: end of speech to the first answer token; other front doors: question to first token",
    ["front_door"],
    buckets=FIRST_TOKEN_BUCKETS,
)
NODE = Histogram("voicerag_node_seconds", "Each graph node's run, start to end", ["node"], buckets=STAGE_BUCKETS)
SOURCE_REQUESTS = Counter("voicerag_source_requests", "Live-data source lookups by status", ["source", "status"])
SOURCE = Histogram("voicerag_source_seconds", "Live-data source lookup time", ["source"], buckets=STAGE_BUCKETS)
CACHE = Counter("voicerag_cache_requests", "HTTP response cache lookups (hit or miss)", ["result"])
BREAKER_OPEN = Gauge(
    "voicerag_breaker_open", "1 while a host's circuit breaker is open", ["host"], multiprocess_mode="livemax"
)
FILLERS = Counter("voicerag_fillers", "Voice turns where a filler was said")
INTERRUPTIONS = Counter("voicerag_interruptions", "Voice turns cut short (barge-in)")
RATE_LIMITED = Counter("voicerag_rate_limited", "Turns refused by the rate limit")
LLM_TOKENS = Counter("voicerag_llm_tokens", "Chat-model tokens by kind (input, output)", ["kind"])
LLM_COST = Counter("voicerag_llm_cost_usd", "Chat-model cost in US dollars (from the price table)")


class SpokenTurnMetrics:
    """A tracer (graph/tracing.py) with no handlers that is told when a voice turn was heard
    (agent/assistant.py `SpokenTurnTracer`): the caller speaking over an answer whose run was already
    over is an interruption too, known only then."""

    def __call__(self, record: TurnRecord) -> list[Any]:
        return []

    def turn_spoken(self, record: TurnRecord) -> None:
        if record.interrupted:
            INTERRUPTIONS.inc()


def metrics_sink(record: TurnRecord) -> None:
    """A `Sink`: one finished turn into the metrics."""
    TURNS.labels(record.front_door, record.route or "none", str(record.degraded).lower()).inc()
    if (first := first_token_ms(record)) is not None:
        FIRST_TOKEN.labels(record.front_door).observe(first / 1000)
    for node, ms in record.nodes_ms.items():
        NODE.labels(node).observe(ms / 1000)
    for source, result in record.sources.items():
        SOURCE_REQUESTS.labels(source, str(result.get("status", "unknown"))).inc()
        if isinstance(elapsed := result.get("elapsed_ms"), int | float):
            SOURCE.labels(source).observe(elapsed / 1000)
    if record.filler:
        FILLERS.inc()
    if record.front_door == "voice" and record.cancelled and not record.speculative:
        INTERRUPTIONS.inc()  # a barge-in during the run (a discarded speculative run is no interruption)
    if record.rate_limited:
        RATE_LIMITED.inc()
    tokens, cost = llm_usage(record)
    for kind, count in tokens.items():
        LLM_TOKENS.labels(kind).inc(count)
    if cost:
        LLM_COST.inc(cost)


def first_token_ms(record: TurnRecord) -> float | None:
    """What the caller waits for: for voice, LiveKit's end-of-turn decision plus ours."""
    if record.first_token_ms is None:
        return None
    return record.first_token_ms + (record.end_of_turn_ms or 0.0)


def llm_usage(record: TurnRecord) -> tuple[dict[str, int], float]:
    """The turn's chat-model tokens by kind (input, output: "total" would count them twice) and its
    cost in US dollars (0 when unknown: a model without a price in LLM_PRICES)."""
    tokens = {kind: count for kind, count in record.tokens.items() if kind != "total" and count > 0}
    return tokens, record.cost_usd or 0.0


def cache_observer(result: observers.CacheResult) -> None:
    CACHE.labels(result).inc()


def breaker_observer(host: str, state: str) -> None:
    BREAKER_OPEN.labels(host).set(1 if state == "open" else 0)


def observe_http() -> None:
    """Feed the HTTP layer's cache and breaker events into the metrics (once per process)."""
    if cache_observer not in observers.cache_observers:
        observers.cache_observers.append(cache_observer)
    if breaker_observer not in observers.breaker_observers:
        observers.breaker_observers.append(breaker_observer)
