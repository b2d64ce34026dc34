"""The knowledge base reuses a saved keyword index only when the same tokenizer built it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrievers import keyword
from retrievers.documents import Document
from retrievers.embeddings import Embeddings
from retrievers.keyword import KeywordIndex, tokenizer_signature
from retrievers.knowledge_base import KnowledgeBaseManager, make_chroma_client

pytestmark = pytest.mark.integration

DOCS = [
    Document(
        id="warranty", title="Warranty", text="The Kumo Halo KH-300 headphones have a two year warranty.", lang="en"
    ),
    Document(
        id="returns", title="Returns", text="Products can be returned within 30 days for a full refund.", lang="en"
    ),
]


def fresh_process(tmp_path: Path, embeddings: Embeddings) -> tuple[KnowledgeBaseManager, list[int]]:
    """A second manager on the same data (as a new worker would open it), counting its Chroma rebuilds."""
    manager = KnowledgeBaseManager(
        make_chroma_client(tmp_path / "data", None), "test-kb", embeddings, index_dir=tmp_path / "keyword-index"
    )
    rebuilds: list[int] = []
    build_from_chroma = manager.keyword_upkeep.build_from_chroma

    def counting() -> KeywordIndex:
        rebuilds.append(1)
        return build_from_chroma()

    manager.keyword_upkeep.build_from_chroma = counting  # type: ignore[method-assign]
    return manager, rebuilds


def saved_signature(kb: KnowledgeBaseManager) -> str:
    assert kb.index_version is not None
    saved = kb.keyword_upkeep.saved_path(kb.index_version)
    assert saved is not None
    return str(json.loads((saved / "tokenizer.json").read_text())["signature"])


async def test_a_saved_index_of_the_same_tokenizer_is_reused(
    kb: KnowledgeBaseManager, embeddings: Embeddings, tmp_path: Path
) -> None:
    await kb.index_documents(DOCS)
    fresh, rebuilds = fresh_process(tmp_path, embeddings)
    try:
        assert (await fresh.search("warranty KH-300", top_k=1))[0]["doc_id"] == "warranty"
        assert rebuilds == [] and fresh.index_version == kb.index_version
    finally:
        await fresh.close()


async def test_a_saved_index_of_another_tokenizer_is_rebuilt_from_chroma(
    kb: KnowledgeBaseManager, embeddings: Embeddings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(keyword, "TOKENIZER_VERSION", keyword.TOKENIZER_VERSION + 1)
        await kb.index_documents(DOCS)  # saves its index under the other tokenizer's signature
        old_signature = saved_signature(kb)
    assert old_signature != tokenizer_signature()
    fresh, rebuilds = fresh_process(tmp_path, embeddings)
    try:
        assert (await fresh.search("warranty KH-300", top_k=1))[0]["doc_id"] == "warranty"
        assert rebuilds == [1] and fresh.index_version == kb.index_version
        assert saved_signature(fresh) == tokenizer_signature()  # the rebuilt copy replaced it
    finally:
        await fresh.close()
