"""LangChain interop: the knowledge base as a `BaseRetriever`, for notebooks and LangChain users.

The graph calls `KnowledgeBaseManager.search` directly; this adapter exists so the same hybrid
search can be dropped into any LangChain chain (`retriever.invoke("...")`). It searches as its
`viewer` (default: the least privileged, public documents only), like every other front door.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LangChainDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from retrievers.access import ANONYMOUS, Viewer
from retrievers.knowledge_base.hits import Searchable, SearchHit


class KnowledgeBaseRetriever(BaseRetriever):
    """Hybrid search of a `KnowledgeBaseManager`, one LangChain document per knowledge-base document."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    knowledge_base: Searchable
    top_k: int = 5
    category: str | None = None
    filters: dict[str, Any] | None = None
    viewer: Viewer = ANONYMOUS

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[LangChainDocument]:
        hits = await self._search(query)
        return [as_langchain_document(hit) for hit in hits]

    async def _search(self, query: str) -> list[SearchHit]:
        return await self.knowledge_base.search(
            query, top_k=self.top_k, category=self.category, filters=self.filters, viewer=self.viewer
        )

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[LangChainDocument]:
        # Notebooks already run an event loop, where asyncio.run() is refused: use a thread's own loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            hits = pool.submit(asyncio.run, self._search(query)).result()
        return [as_langchain_document(hit) for hit in hits]


def as_langchain_document(hit: SearchHit) -> LangChainDocument:
    """The hit as LangChain's document: the passage as content, everything else as metadata."""
    fields = {key: value for key, value in hit.items() if key not in ("text", "metadata")}
    return LangChainDocument(id=hit["doc_id"], page_content=hit["text"], metadata={**hit["metadata"], **fields})
