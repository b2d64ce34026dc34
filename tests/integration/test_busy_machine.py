"""A busy machine slows a query embedding many times over: the turn must still answer within its
deadline — by keywords alone when the question's words are clearly in a document, and otherwise by
saying the search took too long (never "not found", never silence)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import PHRASES, offline_services
from langchain_core.messages import HumanMessage

from graph.builder import build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.documents import load_documents
from retrievers.embeddings import EmbeddingModel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_MS = 800


class BusyMachine:
    """The real model, with each query taking `delay_s` longer: what both cores being taken does to it."""

    def __init__(self, model: EmbeddingModel, delay_s: float) -> None:
        self.model, self.delay_s, self.name = model, delay_s, model.name

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.passages(texts)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.model.queries(texts)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    built = offline_services(tmp_path, "use")
    await built.knowledge_base.index_documents(load_documents([ROOT / "data/knowledge_base"]).documents)
    await warm_up(built)
    built.options = dataclasses.replace(built.options, deadline_ms=DEADLINE_MS)
    built.embeddings.model = BusyMachine(built.embeddings.model, delay_s=1.5)  # type: ignore[assignment]
    yield built
    await built.aclose()


async def ask(services: Services, question: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    state = await build_graph(services).ainvoke({"messages": [HumanMessage(question)]}, context=Context())
    return state, time.monotonic() - started


async def test_clear_keywords_still_answer_within_the_deadline(services: Services) -> None:
    state, took = await ask(services, "How many days do I have to return an unopened product?")
    assert state["keyword_only"] is True and state["degraded"] is True  # said as read from the documents
    assert state["graded"] and "30 days" in state["answer"], state["answer"]
    assert took < DEADLINE_MS / 1000 + 0.5, took  # the slow embedding was not waited for


async def test_without_clear_keywords_the_answer_says_the_search_was_too_slow(services: Services) -> None:
    state, _ = await ask(services, "Who wrote Hamlet?")
    assert state["keyword_only"] is True and not state["graded"]
    assert state["answer"].startswith("Our knowledge base took too long to answer")
    assert state["answer"] != PHRASES.not_found["en"]


async def test_the_late_embedding_is_kept_for_the_next_turn(services: Services) -> None:
    question = "How many days do I have to return an unopened product?"
    await ask(services, question)
    await asyncio.sleep(1.6)  # the embedding finishes in the background
    state, _ = await ask(services, question)
    assert state["keyword_only"] is False and state["graded"] and state["graded"][0]["dense"] is not None
