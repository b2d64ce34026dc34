"""Shared fixtures: offline embedding models loaded once per session, knowledge bases in tmp dirs.

Tests use the fast offline model (`use`) unless they measure the default one; both are real
models shipped in their wheels, nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Keep tests hermetic: no tracing, no analytics, no user .env influence on defaults we rely on.
os.environ.setdefault("LANGSMITH_TRACING", "false")
os.environ.setdefault("LANGGRAPH_CLI_NO_ANALYTICS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "false")

from retrievers.embeddings import Embeddings, UseModel, VectorCache
from retrievers.knowledge_base import KnowledgeBaseManager, make_chroma_client


@pytest.fixture(scope="session")
def use_model() -> UseModel:
    return UseModel(threads=2)


@pytest.fixture
def embeddings(use_model: UseModel, tmp_path: Path) -> Embeddings:
    return Embeddings(use_model, VectorCache(tmp_path / "vectors.sqlite"))


@pytest.fixture
async def kb(embeddings: Embeddings, tmp_path: Path) -> AsyncIterator[KnowledgeBaseManager]:
    manager = KnowledgeBaseManager(
        make_chroma_client(tmp_path / "data", None),
        "test-kb",
        embeddings,
        chunk_size=400,
        chunk_overlap=40,
        index_dir=tmp_path / "keyword-index",
    )
    yield manager
    await manager.close()
