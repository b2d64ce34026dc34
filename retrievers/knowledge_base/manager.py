"""KnowledgeBaseManager: Chroma (the source of truth) + a derived keyword index + score fusion.

Writes go to Chroma only, keyed by document id and content hash (chunk ids are `doc_id::i`, the
first chunk carries the hash and the chunk count), so re-ingesting unchanged documents writes
nothing and a changed document replaces all of its old chunks. Each write stamps a new
`kb_version` on the collection; every process rebuilds its keyword index when it sees a new
version, so the BM25 side never drifts from Chroma for longer than `refresh_interval_s`.

Search embeds the query once, asks Chroma (unfiltered, over-fetched when a filter is given: a
`where` filter costs ~40x an unfiltered query) and BM25 (exact, filtered by mask) for their top
candidates, collapses chunks to documents and fuses the two scores (see `fusion.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

from retrievers.documents import RESERVED_METADATA, Chunk, Document, chunk_document, embedding_text
from retrievers.embeddings import Embeddings
from retrievers.errors import ServiceError, UserInputError
from retrievers.fusion import fuse_scores
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base.hits import SearchHit

if TYPE_CHECKING:
    from retrievers.langchain_retriever import KnowledgeBaseRetriever

log = logging.getLogger(__name__)

CANDIDATE_POOL = 100  # top-N of each signal that fusion looks at
MAX_OVERFETCH = 1000  # cap on the unfiltered dense fetch used to serve a filter
WRITE_BATCH = 1000  # chunks per Chroma upsert (Chroma's own cap is ~5k)
_PAGE = 5000  # chunks per page when reading the whole collection
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]")


@dataclass(frozen=True, slots=True)
class Candidates:
    """Per signal: document id → (best chunk id, score), over the top chunks of that signal."""

    dense: dict[str, tuple[str, float]]
    keyword: dict[str, tuple[str, float]]
    index: KeywordIndex


@dataclass(slots=True)
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0
    changed_doc_ids: list[str] = field(default_factory=list)


ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


def make_chroma_client(data_dir: Path, chroma_url: str | None) -> ClientAPI:
    """An embedded PersistentClient in `data_dir/chroma`, or an HttpClient for `chroma_url`."""
    settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(str(chroma_url))
        try:
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=settings,
            )
        except Exception as exc:
            raise ServiceError(f"CHROMA_URL: cannot reach Chroma at {chroma_url} ({exc})") from None
    return chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=settings)


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
    ) -> None:
        if not _COLLECTION_NAME.fullmatch(collection_name):
            raise UserInputError(
                f"COLLECTION: {collection_name!r} must be 3-512 characters of letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        self.client = client
        self.collection_name = collection_name
        self.embeddings = embeddings
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.dense_weight = dense_weight
        self.index_dir = index_dir
        self.refresh_interval_s = refresh_interval_s
        self.result_cache_size = result_cache_size  # recent searches kept, per knowledge-base version
        self._collection: Collection | None = None
        self._index: KeywordIndex | None = None
        self._index_version: str | None = None
        self._checked_at = 0.0
        self._write_lock = asyncio.Lock()
        self._rebuild: asyncio.Task[None] | None = None
        self._results: OrderedDict[str, list[SearchHit]] = OrderedDict()

    # ------------------------------------------------------------------ collection and version

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            self._collection = self._open_collection()
        return self._collection

    def _open_collection(self) -> Collection:
        try:
            collection = self.client.get_or_create_collection(
                self.collection_name,
                embedding_function=None,  # never Chroma's default model: it downloads one
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedding_model": self.embeddings.name, "kb_version": "empty"},
            )
        except Exception as exc:
            raise ServiceError(f"Chroma: cannot open collection {self.collection_name!r} ({exc})") from None
        built_with = (collection.metadata or {}).get("embedding_model")
        if built_with and built_with != self.embeddings.name:
            raise UserInputError(
                f"EMBEDDINGS: collection {self.collection_name!r} was built with {built_with}, "
                f"not {self.embeddings.name}; use another COLLECTION or re-create this one"
            )
        return collection

    def _read_version(self) -> str:
        """The collection's current version, read fresh (another process may have written)."""
        try:
            collection = self.client.get_collection(self.collection_name, embedding_function=None)
        except NotFoundError:  # nothing ingested yet (or deleted): an empty knowledge base
            self._collection = None
            collection = self.collection
        return str((collection.metadata or {}).get("kb_version", "empty"))

    # ------------------------------------------------------------------ keyword index upkeep

    def _build_index(self, version: str) -> KeywordIndex:
        """Read every chunk from Chroma (or a saved copy of this version) into a BM25 index."""
        saved = self._saved_index_path(version)
        if saved and (saved / "chunks.json").exists():
            with contextlib.suppress(Exception):
                return KeywordIndex.load(saved)
        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[Mapping[str, Any]] = []
        offset = 0
        while True:
            page = self.collection.get(include=["documents", "metadatas"], limit=_PAGE, offset=offset)
            for chunk_id, text, meta in zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True):
                meta = dict(meta or {})
                ids.append(chunk_id)
                texts.append(embedding_text(str(meta.get("title", "")), text or ""))
                metadatas.append({k: meta[k] for k in ("doc_id", "category", "lang") if k in meta})
            if len(page["ids"]) < _PAGE:
                break
            offset += _PAGE
        index = KeywordIndex(ids, texts, metadatas)
        if saved:
            self._save_index(index, saved)
        return index

    def _saved_index_path(self, version: str) -> Path | None:
        if self.index_dir is None or version == "empty":
            return None
        return self.index_dir / self.collection_name / version

    def _save_index(self, index: KeywordIndex, folder: Path) -> None:
        """Keep only the newest saved copy; a failed save only costs a rebuild later."""
        try:
            if folder.parent.exists():
                for old in folder.parent.iterdir():
                    if old != folder:
                        shutil.rmtree(old, ignore_errors=True)
            index.save(folder)
        except OSError as exc:
            log.warning("could not save keyword index to %s: %s", folder, exc)

    def _refresh_sync(self) -> KeywordIndex:
        version = self._read_version()
        self._checked_at = time.monotonic()
        if self._index is None or version != self._index_version:
            self._index = self._build_index(version)
            self._index_version = version
        return self._index

    async def keyword_index(self) -> KeywordIndex:
        """The current keyword index. Built on first use; later changes by other processes are
        picked up in the background (the old index serves meanwhile)."""
        if self._index is None:
            return await asyncio.to_thread(self._refresh_sync)
        due = time.monotonic() - self._checked_at >= self.refresh_interval_s
        if due and (self._rebuild is None or self._rebuild.done()):
            self._checked_at = time.monotonic()
            self._rebuild = asyncio.create_task(self._background_refresh())
        return self._index

    async def _background_refresh(self) -> None:
        try:
            await asyncio.to_thread(self._refresh_sync)
        except Exception as exc:  # a failed refresh keeps the old index; the next one retries
            log.warning("keyword index refresh failed: %s", exc)

    async def close(self) -> None:
        if self._rebuild is not None and not self._rebuild.done():
            self._rebuild.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuild

    # ------------------------------------------------------------------ writes

    async def index_documents(
        self,
        docs: Sequence[Document],
        *,
        prune_sources: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Upsert documents: unchanged ones are skipped, changed ones replace all their chunks.

        With `prune_sources`, documents previously ingested from the same source files that are
        no longer among `docs` are removed (so deleting a line of a .jsonl deletes its document).
        """
        async with self._write_lock:
            return await asyncio.to_thread(self._index_documents_sync, list(docs), prune_sources, progress)

    def _index_documents_sync(
        self, docs: list[Document], prune_sources: bool, progress: ProgressCallback | None
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        existing = self._heads([doc.id for doc in docs])
        to_write: list[tuple[Document, list[Chunk], int]] = []
        for doc in docs:
            head = existing.get(doc.id)
            if head is None:
                report.added += 1
            elif head.get("content_hash") == doc.content_hash:
                report.unchanged += 1
                continue
            else:
                report.updated += 1
            old_count = int(head.get("chunk_count", 0)) if head else 0
            to_write.append((doc, chunk_document(doc, size=self.chunk_size, overlap=self.chunk_overlap), old_count))

        stale_ids: list[str] = []
        if prune_sources:
            wanted = {doc.id for doc in docs}
            for doc_id, count in self._docs_from_sources({doc.source for doc in docs if doc.source}).items():
                if doc_id not in wanted:
                    report.removed += 1
                    report.changed_doc_ids.append(doc_id)
                    stale_ids.extend(Chunk.make_id(doc_id, i) for i in range(count))

        chunks = [(doc, chunk, len(doc_chunks)) for doc, doc_chunks, _ in to_write for chunk in doc_chunks]
        total = len(chunks)
        vectors = self.embeddings.embed_passages(
            [embedding_text(doc.title, chunk.text) for doc, chunk, _ in chunks],
            progress=_Counter("embed", total, progress) if progress else None,
        )
        for doc, doc_chunks, old_count in to_write:
            # Chunks beyond the new count would be orphans: delete them.
            stale_ids.extend(Chunk.make_id(doc.id, i) for i in range(len(doc_chunks), old_count))
            report.changed_doc_ids.append(doc.id)
        if not chunks and not stale_ids:
            report.seconds = time.perf_counter() - started
            return report
        try:
            for start in range(0, total, WRITE_BATCH):
                batch = chunks[start : start + WRITE_BATCH]
                self.collection.upsert(
                    ids=[chunk.id for _, chunk, _ in batch],
                    embeddings=vectors[start : start + WRITE_BATCH],
                    documents=[chunk.text for _, chunk, _ in batch],
                    metadatas=[self._chunk_metadata(doc, chunk, count) for doc, chunk, count in batch],
                )
                if progress:
                    progress("write", min(start + WRITE_BATCH, total), total)
            for start in range(0, len(stale_ids), WRITE_BATCH):
                self.collection.delete(ids=stale_ids[start : start + WRITE_BATCH])
        finally:
            self._after_write()
        report.chunks_written = total
        report.chunks_deleted = len(stale_ids)
        report.seconds = time.perf_counter() - started
        return report

    def _chunk_metadata(self, doc: Document, chunk: Chunk, chunk_count: int) -> dict[str, Any]:
        meta: dict[str, Any] = dict(doc.metadata)
        meta.update(
            doc_id=doc.id,
            title=doc.title,
            category=doc.category,
            lang=doc.lang,
            source=doc.source,
            chunk_index=chunk.index,
        )
        if chunk.index == 0:  # the head chunk describes the document
            meta.update(content_hash=doc.content_hash, chunk_count=chunk_count)
        return meta

    def _heads(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Head-chunk metadata of the given documents that exist, by id (a lookup by id, no scan)."""
        heads: dict[str, dict[str, Any]] = {}
        ids = [Chunk.make_id(doc_id, 0) for doc_id in doc_ids]
        for start in range(0, len(ids), _PAGE):
            page = self.collection.get(ids=ids[start : start + _PAGE], include=["metadatas"])
            for meta in page["metadatas"] or []:
                if meta:
                    heads[str(meta["doc_id"])] = dict(meta)
        return heads

    def _docs_from_sources(self, sources: set[str]) -> dict[str, int]:
        """Documents (id → chunk count) whose head chunk came from one of `sources`."""
        found: dict[str, int] = {}
        for source in sorted(sources):
            page = self.collection.get(where={"$and": [{"source": source}, {"chunk_index": 0}]}, include=["metadatas"])
            for meta in page["metadatas"] or []:
                if meta:
                    found[str(meta["doc_id"])] = int(str(meta.get("chunk_count", 1) or 1))
        return found

    def _after_write(self) -> None:
        """Build and save the keyword index of the new version, then announce the version: other
        workers that see it load the saved copy instead of rebuilding (41 s at 100k chunks)."""
        version = uuid.uuid4().hex
        self._index = self._build_index(version)
        self._index_version = version
        self.collection.modify(metadata={"embedding_model": self.embeddings.name, "kb_version": version})
        self._checked_at = time.monotonic()

    async def update_index(self, doc_id: str, new_content: str) -> bool:
        """Replace the text of an existing document, keeping its title, category and metadata.
        Returns False when no document has that id."""
        head = (await asyncio.to_thread(self._heads, [doc_id])).get(doc_id)
        if head is None:
            return False
        doc = Document(
            id=doc_id,
            title=str(head.get("title", "")),
            text=new_content,
            category=head.get("category", "general"),
            lang=head.get("lang") or "en",
            source=str(head.get("source", "")),
            metadata={k: v for k, v in head.items() if k not in RESERVED_METADATA},
        )
        await self.index_documents([doc])
        return True

    async def delete(self, doc_id: str) -> bool:
        """Delete a document and all of its chunks. Returns False when no document has that id."""
        async with self._write_lock:
            return await asyncio.to_thread(self._delete_sync, doc_id)

    def _delete_sync(self, doc_id: str) -> bool:
        head = self._heads([doc_id]).get(doc_id)
        if head is None:
            return False
        count = int(head.get("chunk_count", 1) or 1)
        try:
            self.collection.delete(ids=[Chunk.make_id(doc_id, i) for i in range(count)])
        finally:
            self._after_write()
        return True

    def term_weight(self, token: str) -> float:
        """How informative a token is in this knowledge base (its idf); 1.0 before the index loads."""
        return self._index.idf(token) if self._index is not None else 1.0

    def as_retriever(self, top_k: int = 5, category: str | None = None) -> KnowledgeBaseRetriever:
        """This knowledge base as a LangChain retriever (for notebooks and LangChain chains)."""
        from retrievers.langchain_retriever import KnowledgeBaseRetriever

        return KnowledgeBaseRetriever(knowledge_base=self, top_k=top_k, category=category)

    async def count(self) -> int:
        """Number of documents (not chunks)."""
        index = await self.keyword_index()
        return len({m.get("doc_id") for m in index.metadatas})

    async def count_chunks(self) -> int:
        return await asyncio.to_thread(self.collection.count)

    # ------------------------------------------------------------------ search

    async def search(
        self,
        query: str,
        top_k: int = 5,
        category: str | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        query_vector: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """The `top_k` best documents for `query` (one entry per document, its best chunk).

        Results are cached per knowledge-base version: a repeated question (LiveKit reruns a turn
        after a preemptive start) costs nothing, and any write, here or in another process, makes
        every cached result stale at once, because the version is part of the key."""
        await self.keyword_index()  # refreshes the version this process knows
        key = repr((query, top_k, category, sorted((filters or {}).items()), self._index_version))
        if key in self._results:
            self._results.move_to_end(key)
            return [SearchHit(**hit) for hit in self._results[key]]  # copies: callers may change theirs
        found = await self.candidates(query, category, filters, query_vector=query_vector)
        if found is None:
            return []
        dense_by_doc, keyword_by_doc, index = found.dense, found.keyword, found.index
        fused = fuse_scores(
            {d: s for d, (_, s) in dense_by_doc.items()},
            {d: s for d, (_, s) in keyword_by_doc.items()},
            dense_weight=self.dense_weight,
        )
        # Ties (two candidates standardise to +1/-1 and can sum to 0) break on dense, then id.
        ranked = sorted(
            fused.items(),
            key=lambda item: (-item[1], -dense_by_doc.get(item[0], ("", -2.0))[1], item[0]),
        )[:top_k]
        best_chunk = {d: c for d, (c, _) in keyword_by_doc.items()}
        best_chunk.update({d: c for d, (c, _) in dense_by_doc.items()})  # dense picks the passage
        # The answer gets the best chunk with its neighbours: a fact is often one chunk away from
        # the words that matched (a product's battery life vs. its "in the box" list).
        windows = {doc_id: _neighbours(best_chunk[doc_id]) for doc_id, _ in ranked}
        stored = await asyncio.to_thread(self._chunks_by_id, [c for ids in windows.values() for c in ids])
        results = []
        for doc_id, score in ranked:
            chunk = stored.get(best_chunk[doc_id])
            if chunk is None:  # deleted since the keyword index was built
                continue
            meta = chunk[1]
            text = _join_overlapping([stored[c][0] for c in windows[doc_id] if c in stored], self.chunk_overlap)
            results.append(
                SearchHit(
                    doc_id=doc_id,
                    title=str(meta.get("title", "")),
                    text=text,
                    score=round(score, 4),
                    dense=_maybe(dense_by_doc.get(doc_id)),
                    keyword=_maybe(keyword_by_doc.get(doc_id)),
                    coverage=round(index.coverage(query, embedding_text(str(meta.get("title", "")), text)), 4),
                    category=str(meta.get("category", "general")),
                    lang=str(meta.get("lang", "")),
                    source=str(meta.get("source", "")),
                    chunk_index=int(meta.get("chunk_index", 0)),
                    metadata={k: v for k, v in meta.items() if k not in RESERVED_METADATA},
                )
            )
        if self.result_cache_size:
            self._results[key] = [SearchHit(**hit) for hit in results]
            if len(self._results) > self.result_cache_size:
                self._results.popitem(last=False)
        return results

    async def candidates(
        self,
        query: str,
        category: str | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        query_vector: np.ndarray | None = None,
    ) -> Candidates | None:
        """Each signal's best chunk and score per document, before fusion (None: nothing to search).
        Notebooks use this to study fusion without querying again."""
        conditions = dict(filters or {})
        if category:
            conditions["category"] = category
        index = await self.keyword_index()
        if not len(index) or not query.strip():
            return None
        vector = query_vector if query_vector is not None else await self.embeddings.aembed_query(query)
        mask = index.mask(conditions)
        dense_hits, keyword_hits = await asyncio.gather(
            asyncio.to_thread(self._dense_search, vector, index, mask),
            asyncio.to_thread(index.search, query, CANDIDATE_POOL, mask),
        )
        return Candidates(
            dense=_best_per_doc(dense_hits),
            keyword=_best_per_doc((index.chunk_ids[h.row], h.score) for h in keyword_hits),
            index=index,
        )

    def _dense_search(
        self, vector: np.ndarray, index: KeywordIndex, mask: np.ndarray | None
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the nearest chunks; a filter is applied after an over-fetch."""
        total = len(index)
        wanted = CANDIDATE_POOL
        if mask is not None:
            matching = int(mask.sum())
            if matching == 0:
                return []
            wanted = min(MAX_OVERFETCH, int(CANDIDATE_POOL * total / matching) + 1)
        result = self.collection.query(
            query_embeddings=[vector],
            n_results=max(1, min(wanted, total)),
            include=["distances"],
        )
        ids = result["ids"][0]
        distances = (result["distances"] or [[]])[0]
        hits = [(chunk_id, 1.0 - float(dist)) for chunk_id, dist in zip(ids, distances, strict=True)]
        if mask is None:
            return hits
        kept = []
        for chunk_id, score in hits:
            row = index.row(chunk_id)
            if row is not None and mask[row]:
                kept.append((chunk_id, score))
        return kept[:CANDIDATE_POOL]

    def _chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        if not chunk_ids:
            return {}
        page = self.collection.get(ids=list(chunk_ids), include=["documents", "metadatas"])
        return {
            chunk_id: (text or "", dict(meta or {}))
            for chunk_id, text, meta in zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True)
        }

    async def get_document(self, doc_id: str) -> str | None:
        """The full stored text of a document (its chunks joined), or None."""
        head = (await asyncio.to_thread(self._heads, [doc_id])).get(doc_id)
        if head is None:
            return None
        ids = [Chunk.make_id(doc_id, i) for i in range(int(head.get("chunk_count", 1) or 1))]
        chunks = await asyncio.to_thread(self._chunks_by_id, ids)
        return "\n".join(chunks[i][0] for i in ids if i in chunks)


class _Counter:
    """Turns per-batch increments into (stage, done, total) progress calls."""

    def __init__(self, stage: str, total: int, callback: ProgressCallback) -> None:
        self.stage, self.total, self.done, self.callback = stage, total, 0, callback
        callback(stage, 0, total)

    def __call__(self, increment: int) -> None:
        self.done += increment
        self.callback(self.stage, self.done, self.total)


def _best_per_doc(hits: Iterable[tuple[str, float]]) -> dict[str, tuple[str, float]]:
    """Collapse chunk hits to their document: (best chunk id, best score) per document id."""
    best: dict[str, tuple[str, float]] = {}
    for chunk_id, score in hits:
        doc_id = chunk_id.rsplit("::", 1)[0]
        if doc_id not in best or score > best[doc_id][1]:
            best[doc_id] = (chunk_id, score)
    return best


def _neighbours(chunk_id: str) -> list[str]:
    """The chunk and the ones before and after it in its document (some may not exist)."""
    doc_id, index = chunk_id.rsplit("::", 1)
    position = int(index)
    return [Chunk.make_id(doc_id, i) for i in range(max(position - 1, 0), position + 2)]


def _join_overlapping(texts: list[str], overlap: int) -> str:
    """Consecutive chunks joined back into one passage, without repeating their overlap."""
    passage = texts[0] if texts else ""
    for text in texts[1:]:
        shared = next((n for n in range(min(overlap, len(passage), len(text)), 0, -1) if passage.endswith(text[:n])), 0)
        passage += ("" if shared else "\n") + text[shared:]
    return passage


def _maybe(hit: tuple[str, float] | None) -> float | None:
    return None if hit is None else round(hit[1], 4)
