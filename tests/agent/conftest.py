"""Fixtures for the voice-session tests: the real services on local servers, built once a module.

- `meteo`: the Open-Meteo look-alike (`fakes.open_meteo`) the real weather source calls;
- `company_apis`: the CRM behind the shipped members-only `loyalty_points` declaration
  (`fakes.company_apis`), loaded from data/sources.yaml with its variables pointing here;
- `chat_server`: the fake OpenAI-compatible chat server (`fakes.openai_server`), answering like a
  careful model (`reader`): the router gets tool calls and the grader JSON, both carrying marker
  tokens that must never be spoken, an answer is the context sentence closest to the conversation;
- `base_services`: `voicerag.services.build_services(settings)` on all of the above, with a real
  knowledge base (embedded Chroma, `use` model) of shipped documents; module-scoped;
- `services`: a copy for one test, with its own source registry (so latencies and test sources
  do not leak between tests) and the servers' scripts reset.

Tests using these run on the module's event loop: `pytest.mark.asyncio(loop_scope="module")`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from fakes.company_apis import CompanyApis
from fakes.open_meteo import OpenMeteoServer
from fakes.openai_server import Behaviour, FakeOpenAIServer, ToolCall, content_text

from graph.builder import warm_up
from graph.services import Services
from retrievers.documents import load_documents
from retrievers.sources.registry import SourceRegistry
from voicerag.services import build_services
from voicerag.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE_BASE = ROOT / "data" / "knowledge_base"
DOCUMENTS = [
    "product/product-kh300-en.md",
    "product/product-kh300-ja.md",
    "support/support-warranty-en.md",
    "support/support-warranty-ja.md",
    "support/support-returns-en.md",
    "general/general-kumo-points-en.md",
]
ROUTER_MARKER = "ROUTERTOKEN"  # in every router reply: never to be spoken
GRADER_MARKER = "GRADERTOKEN"  # in every grader reply: never to be spoken
PLACES = {"tokyo": "Tokyo", "東京": "東京", "osaka": "Osaka", "大阪": "大阪", "sapporo": "Sapporo", "札幌": "札幌"}
_STOP = frozenset("the and does how what with for from has have are you can your about that this its".split())


# ------------------------------------------------------------------------------ the fake model


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9-]{3,}", text.lower()) if w not in _STOP}


def _sentences(context: str) -> list[str]:
    """The context's sentences, without the block tags ("[1] ", "[weather] "), markdown or JSON."""
    found = []
    for line in context.splitlines():
        line = re.sub(r"^\[[\w-]+\]\s*", "", line.strip()).replace("**", "").lstrip("# ")
        if not line or line.startswith("{"):
            continue
        found += [s.strip() for s in re.split(r"(?<=[.!?])\s+|(?<=。)", line) if s.strip()]
    return found


def route_reply(question: str) -> str | list[ToolCall]:
    """The LLM router's tool calls, with the marker in its rewritten query (small talk: no call)."""
    lowered = question.lower()
    if re.match(r"^(hello|hi|thanks|thank you)\b", lowered):
        return f"{ROUTER_MARKER} small talk"
    calls = [ToolCall("search_knowledge_base", {"query": f"{ROUTER_MARKER} {question}"})]
    if "weather" in lowered or "天気" in question:
        place = next((name for key, name in PLACES.items() if key in lowered), None)
        calls += [ToolCall("weather", {"place": place, "day": "today"})] if place else []
    return calls


def reader(messages: list[dict[str, Any]]) -> str | list[ToolCall]:
    """How the fake chat model answers a request (OpenAI chat messages)."""
    system = next((content_text(m) for m in messages if m.get("role") == "system"), "")
    users = [content_text(m) for m in messages if m.get("role") == "user"]
    last = users[-1] if users else ""
    if system.startswith("You route the messages"):  # the LLM router (graph/prompts.py ROUTER_SYSTEM)
        return route_reply(last.strip())
    if last.startswith("For each numbered document"):
        return '{"relevant": [1, 2, 3]} ' + GRADER_MARKER
    marker = "Context:\n" if "Context:\n" in system else "コンテキスト:\n"
    if marker not in system:  # small talk
        return "Hello! How can I help you today?" if "English" in system else "こんにちは。ご用件をどうぞ。"
    sentences = _sentences(system.split(marker, 1)[1])
    if not sentences:
        return "I don't know."
    now, before = _words(last), _words(" ".join(users[-2:-1]))
    # The question's words decide; the previous question's break ties (follow-ups: "and the warranty?").
    return max(sentences, key=lambda s: (len(_words(s) & now), len(_words(s) & before)))


def reading_model() -> Behaviour:
    return Behaviour(reply=reader)


# ------------------------------------------------------------------------------ servers


@pytest.fixture(scope="module")
def meteo() -> Iterator[OpenMeteoServer]:
    with OpenMeteoServer() as server:
        yield server


@pytest.fixture(scope="module")
def company_apis() -> Iterator[CompanyApis]:
    with CompanyApis() as server:
        yield server


@pytest.fixture(scope="module")
def chat_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reading_model()) as server:
        yield server


def members_only_sources(apis: CompanyApis, path: Path) -> Path:
    """The shipped `loyalty_points` declaration (members only, per caller), alone in a file."""
    shipped = yaml.safe_load((ROOT / "data" / "sources.yaml").read_text(encoding="utf-8"))
    (loyalty,) = [entry for entry in shipped["rest"] if entry["name"] == "loyalty_points"]
    text = yaml.safe_dump({"rest": [loyalty]}, allow_unicode=True)
    for variable, value in {
        "CRM_API_URL": apis.url,
        "CRM_CLIENT_ID": apis.client_id,
        "CRM_CLIENT_SECRET": apis.client_secret,
    }.items():
        text = re.sub(r"\$\{" + variable + r"(:-[^}]*)?\}", value, text)
    path.write_text(text, encoding="utf-8")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def base_services(
    tmp_path_factory: pytest.TempPathFactory,
    meteo: OpenMeteoServer,
    company_apis: CompanyApis,
    chat_server: FakeOpenAIServer,
) -> AsyncIterator[Services]:
    data = tmp_path_factory.mktemp("voice")
    settings = load_settings(
        _env_file=None,
        voicerag_data_dir=data,
        embeddings="use",
        chroma_url=None,
        redis_url=None,
        geocoding_api_url=meteo.url,
        weather_api_url=meteo.url,
        sources_file=members_only_sources(company_apis, data / "sources.yaml"),
        database_queries_file=None,  # no database source in these calls
        openai_base_url=chat_server.base_url,
        openai_api_key="sk-test",
    )
    services = build_services(settings)
    assert services.chat_model is not None and services.sources.names == ["weather", "loyalty_points"]
    await services.knowledge_base.index_documents(load_documents(KNOWLEDGE_BASE / d for d in DOCUMENTS).documents)
    await warm_up(services)
    yield services
    await services.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def services(
    base_services: Services, meteo: OpenMeteoServer, chat_server: FakeOpenAIServer, company_apis: CompanyApis
) -> AsyncIterator[Services]:
    """The module's services with a registry of their own, an empty HTTP cache; the servers'
    scripts start afresh."""
    weather = base_services.sources.get("weather")
    await weather.http.cache.clear()  # type: ignore[union-attr]
    meteo.failures.clear()
    meteo.requests.clear()
    company_apis.requests.clear()
    chat_server.reset(reading_model())
    yield dataclasses.replace(base_services, sources=SourceRegistry(list(base_services.sources)))
    meteo.failures.clear()
