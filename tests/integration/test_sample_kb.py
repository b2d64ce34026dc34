"""The graph on the shipped sample knowledge base: right documents, right facts, no invention.

Runs with both offline models: `use` (fast) and `e5` (the default, what `make demo` uses).
Questions and expectations: tests/data/sample_kb_questions.jsonl.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from helpers import PHRASES, offline_services
from langchain_core.messages import HumanMessage

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from retrievers.documents import load_documents

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [json.loads(line) for line in (ROOT / "tests/data/sample_kb_questions.jsonl").read_text().splitlines()]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["use", "e5"])
async def sample_graph(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VoiceGraph]:
    data_dir = tmp_path_factory.mktemp(f"sample-{request.param}")
    services = offline_services(data_dir, request.param)  # extractive: the expectations are the documents' words
    await services.knowledge_base.index_documents(load_documents([ROOT / "data/knowledge_base"]).documents)
    await warm_up(services)
    yield build_graph(services)
    await services.aclose()


async def ask(graph: VoiceGraph, question: str) -> dict[str, Any]:
    return await graph.ainvoke({"messages": [HumanMessage(question)]}, context=Context())


@pytest.mark.parametrize("case", [q for q in QUESTIONS if q["answerable"]], ids=lambda q: q["question"])
async def test_answerable_question_is_answered_from_the_right_document(sample_graph: VoiceGraph, case: dict) -> None:
    state = await ask(sample_graph, case["question"])
    graded = [d["doc_id"] for d in state["graded"]]
    assert set(graded) & set(case["expect_doc"]), f"graded {graded}, expected one of {case['expect_doc']}"
    assert state["language"] == case["lang"]
    assert state["answer"] != PHRASES.not_found[case["lang"]]
    assert case["expect_text"] in state["answer"]


@pytest.mark.parametrize("case", [q for q in QUESTIONS if not q["answerable"]], ids=lambda q: q["question"])
async def test_out_of_scope_question_is_declined_not_invented(sample_graph: VoiceGraph, case: dict) -> None:
    state = await ask(sample_graph, case["question"])
    assert state["graded"] == [], [d["doc_id"] for d in state["graded"]]
    assert state["answer"] == PHRASES.not_found[case["lang"]]
