"""Small helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from graph.builder import warm_up
from graph.persona import load_persona
from graph.services import Services
from retrievers.documents import Document, load_documents
from retrievers.errors import UserInputError
from voicerag.services import build_services
from voicerag.settings import load_settings

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]

# Every secret a test configures comes from here, so that the session's leak scan (tests/leak_scan.py)
# can look for each in everything the product wrote. Distinctive values: a hit is never a coincidence.
FAKE_SECRETS = {
    "OPENAI_API_KEY": "sk-fake-7Qm2xVb9LkT4pZr8Yw",
    "LIVEKIT_API_KEY": "lk-fake-key-K3s9WqD1",
    "LIVEKIT_API_SECRET": "lk-fake-secret-P8v2NdG5",
    "CARRIER_API_KEY": "carrier-fake-key-X4r7TbE2",
    "CRM_CLIENT_SECRET": "crm-fake-secret-M6y1HcU9",
    "DATABASE_PASSWORD": "db-fake-pass-R2w8JzL4",  # inside DATABASE_URL
    "REDIS_PASSWORD": "redis-fake-pass-F5n3QaV7",  # inside REDIS_URL
    "AUDIT_DATABASE_PASSWORD": "audit-fake-pass-B9k2YsN6",  # inside AUDIT_DATABASE_URL
    "CHROMA_PASSWORD": "chroma-fake-pass-T1c8PwZ3",  # inside CHROMA_URL
}
# Personal data the tests say as callers: none of it may appear raw in anything the product wrote.
SAMPLE_PII = {
    "mobile phone": "090-1234-5678",
    "landline": "03-5555-0123",
    "e-mail": "taro.yamada@example.com",
    "e-mail (ja)": "hanako.suzuki@example.co.jp",
    "card": "4111 1111 1111 1111",
}
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


@asynccontextmanager
async def services_with_chat_model(
    data_dir: Path, base_url: str, documents: Sequence[Document]
) -> AsyncIterator[Services]:
    """`offline_services` with an OpenAI chat model at `base_url` (a local fake server), `documents`
    ingested and everything warmed up; closed on exit."""
    from langchain_openai import ChatOpenAI

    built = offline_services(data_dir)
    built.chat_model = ChatOpenAI(base_url=base_url, api_key="test", model="gpt-4o-mini")
    await built.knowledge_base.index_documents(list(documents))
    await warm_up(built)
    try:
        yield built
    finally:
        await built.aclose()


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


def refusal(*paths: Path) -> str:
    """The message `load_documents` refuses `paths` with (one line)."""
    with pytest.raises(UserInputError) as caught:
        load_documents(paths)
    message = str(caught.value)
    assert "\n" not in message, "a refusal is one line"
    return message


def by_id(*paths: Path) -> dict[str, Document]:
    return {doc.id: doc for doc in load_documents(paths).documents}
