"""Small helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from graph.persona import load_persona
from graph.services import Services
from voicerag.services import build_services
from voicerag.settings import load_settings

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PERSONA = load_persona(REPO / "data" / "persona.yaml")  # the sample company's phrases
PHRASES = SAMPLE_PERSONA.phrases


def offline_services(data_dir: Path, embeddings: str = "use") -> Services:
    """The product's `Services` on embedded Chroma in `data_dir` and an offline embedding model, with
    no chat model (answers are extractive): nothing is paid for, whatever the environment says."""
    settings = load_settings(
        voicerag_data_dir=data_dir, embeddings=embeddings, openai_api_key=None, openai_base_url=None
    )
    services = build_services(settings)
    assert services.chat_model is None
    return services


def write(folder: Path, name: str, content: str | bytes) -> Path:
    """Write a file under `folder` (creating parents): text as UTF-8, bytes as they are."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    """JSON Lines text, one record a line."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


# Where the graph's work runs: any task of these still alive after a turn is a leak.
GRAPH_CODE = ("/graph/", "/retrievers/", "/agent/", "/langgraph/", "/langchain_core/", "/langchain_openai/",
              "/openai/", "/httpx/", "/livekit/plugins/langchain/", "/tests/agent/")  # fmt: skip


def lingering() -> list[str]:
    """Tasks of the graph, its sources or its clients still alive (the caller's own task aside).
    Its control test: `tests/agent/test_voice_session.py::test_the_leak_check_sees_a_lookup_left_running`."""
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code is not None else repr(task.get_coro())
        if any(part in where for part in GRAPH_CODE):
            found.append(f"{task.get_name()}: {where}")
    return found


def completes_without_waiting(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` one step and return its result: it must finish without ever suspending, so it
    waited on no I/O (network, disk in a thread) and no timer. Call it from inside a running task."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError(f"{coroutine.__qualname__} suspended: it waited on I/O or a timer")
