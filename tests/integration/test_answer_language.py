"""Answers in the caller's language: the caller's-language document is preferred when the knowledge
base has both, and what is read out in the other language is introduced as such."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from helpers import PHRASES
from langchain_core.messages import AIMessage, HumanMessage

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from retrievers.documents import Document, load_documents
from voicerag.services import build_services
from voicerag.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
ONLY_IN_JAPANESE = Document(
    id="tea-ja",
    title="店内のお茶サービス",
    text="渋谷店では、ご来店のお客様に無料で抹茶をお出ししています。提供時間は午後2時から午後4時までです。",
    lang="ja",
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def graph(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[VoiceGraph]:
    settings = load_settings(
        voicerag_data_dir=tmp_path_factory.mktemp("lang"), embeddings="use", sources_file="", database_queries_file=""
    )
    services = build_services(settings)
    documents = [*load_documents([ROOT / "data/knowledge_base"]).documents, ONLY_IN_JAPANESE]
    await services.knowledge_base.index_documents(documents)
    await warm_up(services)
    yield build_graph(services)
    await services.aclose()


async def turn(graph: VoiceGraph, *messages: str, language: str | None = None) -> dict[str, Any]:
    history = [HumanMessage(m) if i % 2 == 0 else AIMessage(m) for i, m in enumerate(messages)]
    return await graph.ainvoke({"messages": history}, context=Context(language=language))  # type: ignore[arg-type]


async def test_an_english_follow_up_to_a_japanese_question_is_answered_from_the_english_document(
    graph: VoiceGraph,
) -> None:
    state = await turn(graph, "KH-300の保証期間は何年ですか？", "保証は2年間です。", "And how much does it cost?")
    assert state["language"] == "en"
    assert [d["lang"] for d in state["graded"]][:1] == ["en"], state["graded"]
    assert "39,800" in state["answer"] and state["answer"].startswith(PHRASES.extractive_prefix["en"])


async def test_a_japanese_only_document_read_to_an_english_caller_says_which_language_it_is_in(
    graph: VoiceGraph,
) -> None:
    state = await turn(graph, "渋谷店の抹茶サービスは何時からですか？", language="en")
    assert state["graded"] and all(d["lang"] == "ja" for d in state["graded"])
    assert state["answer"].startswith(PHRASES.other_language["en"]), state["answer"]
    assert "午後2時" in state["answer"]


async def test_the_callers_language_document_wins_when_both_exist(graph: VoiceGraph) -> None:
    state = await turn(graph, "返品できる期間は？", language="ja")
    assert state["graded"] and state["graded"][0]["lang"] == "ja"
    assert state["answer"].startswith(PHRASES.extractive_prefix["ja"])
