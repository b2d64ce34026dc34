"""Small helpers shared by the nodes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

NOSTREAM = ["nostream"]  # LangGraph's tag: this model's tokens are not emitted in messages mode


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a time.perf_counter() value), rounded for logs."""
    return round((time.perf_counter() - started) * 1000, 2)


def parse_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model's reply (models wrap JSON in prose or fences); {} if none."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return {}
    try:
        value = json.loads(match.group())
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def remaining_budget(state: Mapping[str, Any], ctx: Any, default_deadline_ms: int) -> float:
    """Seconds left of the turn's lookup budget (`Context.deadline_ms`, else the configured one),
    counted from when the turn entered the graph."""
    deadline_ms = getattr(ctx, "deadline_ms", None) or default_deadline_ms
    started_at = state.get("started_at") or time.monotonic()
    return max(0.0, deadline_ms / 1000 - (time.monotonic() - started_at))
