"""Prometheus metrics of the voice worker: what `METRICS_PORT` switches on.

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


def metrics_port() -> int | None:
    """The port `enable` chose, or None when metrics are off."""
    value = os.environ.get(PORT_ENV)
    return int(value) if value else None
