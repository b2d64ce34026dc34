"""LangChain interop: the product's embeddings as LangChain `Embeddings`, and the knowledge base's
collection as a `langchain_chroma.Chroma` vector store.

For LangChain users who want the raw vector store (`similarity_search`, `max_marginal_relevance_search`,
`as_retriever()`): each result is one stored chunk, `page_content` its text and `metadata` what the
ingest stored with it (doc_id, title, category, lang, source, chunk_index, its document's fields such
as `page`, and `roles` / `tenant`). The product's own search (`KnowledgeBaseManager.as_retriever()`,
`langchain_retriever.py`) is hybrid (dense + BM25), one result per document, and applies access
control; this store applies none: pass `filter=PUBLIC_ONLY` to keep to public chunks. Write through
`voicerag ingest`, not `add_texts`: the store's scheme (head chunks, version stamps) is the ingest's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from chromadb.api import ClientAPI
from langchain_chroma import Chroma
from langchain_core.embeddings import Embeddings as LangChainEmbeddings

from retrievers.embeddings import Embeddings
from retrievers.knowledge_base.chroma_store import ChromaStore

if TYPE_CHECKING:
    from retrievers.knowledge_base.manager import KnowledgeBaseManager

# Chroma `where` filter for the chunks everyone may see (no roles, no tenant: `access.py`).
PUBLIC_ONLY: dict[str, Any] = {"$and": [{"roles": ""}, {"tenant": ""}]}


class KnowledgeBaseEmbeddings(LangChainEmbeddings):
    """The product's embeddings (e5, USE or OpenAI, with their caches) behind LangChain's interface:
    documents are embedded as passages, queries as queries (e5's prefixes are the model's business)."""

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings = embeddings

    @property
    def name(self) -> str:
        return self.embeddings.name

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return [[float(x) for x in row] for row in self.embeddings.embed_passages(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embeddings.embed_query(text)]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return [float(x) for x in await self.embeddings.aembed_query(text)]


def open_vector_store(client: ClientAPI, collection_name: str, embeddings: Embeddings) -> Chroma:
    """The knowledge base's collection as a LangChain Chroma store, on the product's client (embedded
    folder or `CHROMA_URL` server). Fails with `UserInputError` if the collection was built with
    another model (its vectors would not compare); an absent collection is created empty, as the
    knowledge base does."""
    store = ChromaStore(client, collection_name, embeddings.name)
    store.collection  # noqa: B018  opens it: the name and model checks, with the product's messages
    return Chroma(
        client=client,
        collection_name=collection_name,
        embedding_function=KnowledgeBaseEmbeddings(embeddings),
        create_collection_if_not_exists=False,
    )


def vector_store_of(kb: KnowledgeBaseManager) -> Chroma:
    """`open_vector_store` on a knowledge base's own client, collection and embeddings."""
    return open_vector_store(kb.client, kb.collection_name, kb.embeddings)
