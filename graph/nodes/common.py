"""What the nodes share: the node signature, timing and JSON helpers."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Protocol

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import State


class Node(Protocol):
    """A node: the state and the run's runtime (its `context` is the caller) in, a partial state update out."""

    async def __call__(self, state: State, *, runtime: Runtime[Context]) -> State: ...


NOSTREAM = ["nostream"]  # LangGraph's tag: this model's tokens are not emitted in messages mode


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a time.perf_counter() value), rounded for logs."""
    return round((time.perf_counter() - started) * 1000, 2)


def describe(exc: BaseException) -> str:
    """An exception for a log line: its type and message (a timeout's message is often empty)."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


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
