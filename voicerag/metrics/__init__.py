"""Prometheus metrics: what `METRICS_PORT` switches on.

Where `/metrics` is served: the voice worker (LiveKit's server, below), and `voicerag chat` and the
Studio server (`serve`). `voicerag ask` ends right after its answer, so it serves nothing: with
`METRICS_PORT` set and a `PROMETHEUS_MULTIPROC_DIR` it shares with a serving process, its turn is
written there and that process's `/metrics` counts it.

LiveKit runs each call in a job process of its own, and its worker already serves `/metrics` (its
`prometheus_port`) summed over them with prometheus_client's multiprocess mode. That mode is chosen
when prometheus_client is first imported (`prometheus_client.values.ValueClass`), in every process:
so `enable(port)` sets `PROMETHEUS_MULTIPROC_DIR` before anything imports it (`voicerag agent` calls
it before importing LiveKit; job processes inherit the environment). This module therefore never
imports prometheus_client; `voicerag/metrics/exporter.py` defines the metrics and the turn sink.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graph.tracing import Tracer
    from graph.turn_record import Sink

log = logging.getLogger(__name__)

PORT_ENV = "VOICERAG_METRICS_PORT"  # set by `voicerag agent` from METRICS_PORT, read by voicerag/worker.py
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable(port: int) -> str:
    """Switch metrics on for this process and the ones it starts; returns the multiprocess directory
    (the operator's `PROMETHEUS_MULTIPROC_DIR` if set, else a fresh temporary one; LiveKit empties it
    when the worker starts)."""
    if "prometheus_client" in sys.modules and MULTIPROC_ENV not in os.environ:  # job processes still count
        log.warning("metrics: prometheus_client was imported early; the worker's own process keeps its values")
    os.environ[PORT_ENV] = str(port)
    if MULTIPROC_ENV not in os.environ:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="voicerag-metrics-")
        atexit.register(shutil.rmtree, os.environ[MULTIPROC_ENV], ignore_errors=True)  # ours: gone at exit
    return os.environ[MULTIPROC_ENV]


def serve(port: int) -> bool:
    """Serve `/metrics` on `port` from a process that is not the LiveKit worker (`voicerag chat`,
    the Studio server): the sum over every process writing to this multiprocess directory. False,
    and a warning, when the port is taken (say a worker on this machine serves it): the turns still
    go to the directory, which that worker shows when it shares it."""
    early = "prometheus_client" in sys.modules and MULTIPROC_ENV not in os.environ
    enable(port)
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

    registry = REGISTRY  # imported before multiprocess mode could be chosen: this process's own values
    if not early:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(port, registry=registry)  # a daemon thread: never holds the exit
    except OSError as exc:
        log.warning("metrics: cannot serve /metrics on port %d (%s); turns are still counted", port, exc.strerror)
        return False
    return True


def turn_sinks() -> list[Sink]:
    """With metrics on: the metrics sink, and the HTTP layer's cache and breaker events observed."""
    if metrics_port() is None:
        return []
    from voicerag.metrics.exporter import metrics_sink, observe_http

    observe_http()
    return [metrics_sink]


def turn_tracers() -> list[Tracer]:
    """With metrics on: what counts voice turns cut after their run was over (heard later)."""
    if metrics_port() is None:
        return []
    from voicerag.metrics.exporter import SpokenTurnMetrics

    return [SpokenTurnMetrics()]


def metrics_port() -> int | None:
    """The port `enable` chose, or None when metrics are off."""
    value = os.environ.get(PORT_ENV)
    return int(value) if value else None
