"""KnowledgeBaseManager: the one entry point to a knowledge base, composing its parts.

- `chroma_client.py`: Chroma clients with call timeouts, failures as `ServiceError`/`ChromaTimeout`;
- `chroma_store.py`: the Chroma collection (source of truth; every Chroma call, version stamp);
- `consistency.py`: which stored documents are whole (the rule readers and repairs share);
- `keyword_upkeep.py`: the BM25 index of the current version (saved copies, rebuilds, refresh);
- `ingest.py`: documents diffed against what is stored → a write plan and an `IngestReport`;
- `writer.py`: applies a write plan all-or-nothing, repairs a write cut short, publishes versions;
- `writer_lock.py`: one writer per knowledge base across processes (file lock, or Redis);
- `hybrid_search.py`: dense + BM25 candidates, fusion, `SearchHit`s, access control inside both signals;
- `result_cache.py`: recent results per version and viewer.

Async methods never block the event loop: Chroma, BM25 and embedding work runs in threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from retrievers.access import ANONYMOUS, Viewer
from retrievers.documents import Document
from retrievers.embeddings import Embeddings
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base.chroma_store import ChromaStore, document_chunk_ids
from retrievers.knowledge_base.consistency import verify
from retrievers.knowledge_base.hits import SearchHit
from retrievers.knowledge_base.hybrid_search import Candidates, HybridSearch
from retrievers.knowledge_base.ingest import (
    IngestReport,
    ProgressCallback,
    WritePlan,
    document_from_head,
    plan_delete,
    plan_ingest,
    plan_still_holds,
)
from retrievers.knowledge_base.keyword_upkeep import KeywordUpkeep
from retrievers.knowledge_base.result_cache import ResultCache
from retrievers.knowledge_base.writer import WaitCallback, Writer
from retrievers.knowledge_base.writer_lock import DEFAULT_LOCK_TIMEOUT_S, WriterLock, default_writer_lock

if TYPE_CHECKING:
    from retrievers.knowledge_base.langchain_retriever import KnowledgeBaseRetriever


class KnowledgeBaseManager:
    """The knowledge base of one Chroma collection. Async methods never block the event loop."""

    def __init__(
        self,
        client: ClientAPI,
        collection_name: str,
        embeddings: Embeddings,
        *,
        chunk_size: int = 1000,
        chunk_overlap: int = 100,
        dense_weight: float = 0.5,
        index_dir: Path | None = None,
        refresh_interval_s: float = 2.0,
        result_cache_size: int = 256,
        writer_lock: WriterLock | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        """`writer_lock`: what serialises writers across processes (default: `default_writer_lock`,
        a file lock); `lock_timeout_s`: how long a write waits for another writer before failing."""
        self.store = ChromaStore(client, collection_name, embeddings.name)  # checks the name first
        self.client = client
        self.collection_name = collection_name
        self.embeddings = embeddings
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.dense_weight = dense_weight
        self.index_dir = index_dir
        self.keyword_upkeep = KeywordUpkeep(self.store, index_dir, refresh_interval_s)
        self.writer = Writer(
            self.store,
            self.keyword_upkeep,
            writer_lock or default_writer_lock(client, collection_name),
            lock_timeout_s,
        )
        self._search = HybridSearch(self.store, embeddings)
        self._results = ResultCache(result_cache_size)

    # ---- settings that may change after construction (tests, benchmarks)

    @property
    def refresh_interval_s(self) -> float:
        return self.keyword_upkeep.refresh_interval_s

    @refresh_interval_s.setter
    def refresh_interval_s(self, seconds: float) -> None:
        self.keyword_upkeep.refresh_interval_s = seconds

    @property
    def result_cache_size(self) -> int:
        """Recent searches kept, per knowledge-base version (0: none)."""
        return self._results.size

    @result_cache_size.setter
    def result_cache_size(self, size: int) -> None:
        self._results.size = size

    # ---- state

    @property
    def collection(self) -> Collection:
        return self.store.collection

    @property
    def index_version(self) -> str | None:
        """The version the keyword index serving searches in this process was built from."""
        return self.keyword_upkeep.version

    async def keyword_index(self) -> KeywordIndex:
        """The current keyword index (built on first use, then refreshed in the background)."""
        return await self.keyword_upkeep.current()

    def term_weight(self, token: str) -> float:
        """How informative a token is in this knowledge base (its idf); 1.0 before the index loads."""
        index = self.keyword_upkeep.index
        return index.idf(token) if index is not None else 1.0

    async def count(self) -> int:
        """Number of documents (not chunks)."""
        index = await self.keyword_index()
        return len({m.get("doc_id") for m in index.metadatas})

    async def count_chunks(self) -> int:
        return await asyncio.to_thread(self.store.count)

    @property
    def writer_lock(self) -> WriterLock:
        return self.writer.lock

    async def close(self) -> None:
        await self.keyword_upkeep.close()
        self.writer.close()

    # ---- writes

    async def index_documents(
        self,
        docs: Sequence[Document],
        *,
        prune_sources: bool = False,
        progress: ProgressCallback | None = None,
        on_wait: WaitCallback | None = None,
    ) -> IngestReport:
        """Upsert documents: unchanged ones are skipped, changed ones replace all their chunks.

        With `prune_sources`, documents previously ingested from the same source files that are
        no longer among `docs` are removed (so deleting a line of a .jsonl deletes its document).
        Embedding happens before the writer lock is taken; `on_wait(lock name)` is called once if
        another writer holds it.
        """
        docs = list(docs)
        started = time.perf_counter()
        draft = await asyncio.to_thread(self._plan, docs, prune_sources, progress)
        async with self.writer.exclusive(on_wait):
            report = await asyncio.to_thread(self._write, docs, prune_sources, progress, draft)
        report.seconds = time.perf_counter() - started
        return report

    def _plan(
        self, docs: list[Document], prune_sources: bool, progress: ProgressCallback | None
    ) -> tuple[WritePlan, IngestReport]:
        return plan_ingest(
            self.store,
            self.embeddings,
            docs,
            prune_sources=prune_sources,
            chunk_size=self.chunk_size,
            chunk_overlap=self.chunk_overlap,
            progress=progress,
        )

    def _write(
        self,
        docs: list[Document],
        prune_sources: bool,
        progress: ProgressCallback | None,
        draft: tuple[WritePlan, IngestReport],
    ) -> IngestReport:
        """Under the writer lock: repair a write cut short, re-plan if another writer changed these
        documents since `draft` was made (vectors come from the cache then), and write."""
        repair = self.writer.recover(progress)
        plan, report = draft
        if not plan_still_holds(self.store, plan, docs, prune_sources=prune_sources):
            plan, report = self._plan(docs, prune_sources, progress)
        if not plan.empty:
            self.writer.apply(plan, progress)
            report.chunks_written, report.chunks_deleted = len(plan.ids), len(plan.stale_ids)
        if repair is not None:
            report.recovered, report.repaired, report.strays_deleted = True, repair.documents, repair.strays
        return report

    async def update_index(self, doc_id: str, new_content: str) -> bool:
        """Replace the text of an existing document, keeping its title, category and metadata.
        Returns False when no document has that id."""
        head = (await asyncio.to_thread(self.store.heads, [doc_id])).get(doc_id)
        if head is None:
            return False
        await self.index_documents([document_from_head(doc_id, head, new_content)])
        return True

    async def delete(self, doc_id: str) -> bool:
        """Delete a document and all of its chunks. Returns False when no document has that id."""
        async with self.writer.exclusive():
            return await asyncio.to_thread(self._delete_sync, doc_id)

    def _delete_sync(self, doc_id: str) -> bool:
        self.writer.recover()
        head = self.store.heads([doc_id]).get(doc_id)
        if head is None:
            return False
        self.writer.apply(plan_delete(doc_id, head))
        return True

    # ---- reads

    async def search(
        self,
        query: str,
        top_k: int = 5,
        category: str | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        query_vector: np.ndarray | None = None,
        dense: bool = True,
        viewer: Viewer = ANONYMOUS,
    ) -> list[SearchHit]:
        """The `top_k` best documents for `query` that `viewer` may see (one entry per document, its
        best chunk with its neighbours): exactly the results of a knowledge base holding only those
        documents. Without a viewer, the least privileged: public documents only. Cached per
        knowledge-base version and viewer (`result_cache.py`). `dense=False` ranks by keywords alone
        (a turn whose query vector is late); such results are not cached."""
        await self.keyword_index()  # refreshes the version this process knows
        key = self._results.key(query, top_k, category, filters, self.index_version, viewer)
        cached = self._results.get(key)
        if cached is not None:
            return cached
        found = await self.candidates(query, category, filters, query_vector=query_vector, dense=dense, viewer=viewer)
        if found is None:
            return []
        hits = await self._search.hits(
            found, query, top_k=top_k, dense_weight=self.dense_weight, chunk_overlap=self.chunk_overlap
        )
        if dense:
            self._results.put(key, hits)
        return hits

    async def candidates(
        self,
        query: str,
        category: str | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        query_vector: np.ndarray | None = None,
        dense: bool = True,
        viewer: Viewer = ANONYMOUS,
    ) -> Candidates | None:
        """Each signal's best chunk and score per document among those `viewer` may see (default:
        public documents only), before fusion (None: nothing to search). Notebooks use this to
        study fusion without querying again."""
        conditions = dict(filters or {})
        if category:
            conditions["category"] = category
        index = await self.keyword_index()
        return await self._search.candidates(index, query, conditions, query_vector, dense=dense, viewer=viewer)

    async def get_document(self, doc_id: str) -> str | None:
        """The full stored text of a document (its chunks joined), or None (also while a writer
        has it half-written: never two versions joined)."""
        head = (await asyncio.to_thread(self.store.heads, [doc_id])).get(doc_id)
        if head is None:
            return None
        ids = document_chunk_ids(doc_id, head)
        chunks = await asyncio.to_thread(self.store.chunks_by_id, ids)
        if doc_id not in verify((chunk_id, meta) for chunk_id, (_, meta) in chunks.items()).whole:
            return None
        return "\n".join(chunks[i][0] for i in ids)

    def as_retriever(
        self, top_k: int = 5, category: str | None = None, viewer: Viewer = ANONYMOUS
    ) -> KnowledgeBaseRetriever:
        """This knowledge base as a LangChain retriever (for notebooks and LangChain chains), searching
        as `viewer` (default: public documents only)."""
        from retrievers.knowledge_base.langchain_retriever import KnowledgeBaseRetriever

        return KnowledgeBaseRetriever(knowledge_base=self, top_k=top_k, category=category, viewer=viewer)
