"""Ingest planning: documents compared with what is stored, turned into a `WritePlan`.

A document is added (no head chunk), unchanged (same content hash: nothing written), or updated
(all its chunks rewritten; chunks beyond its new count deleted, so none are orphaned). With
`prune_sources`, documents stored from the same source files that are no longer among the input
are removed (deleting a line of a .jsonl deletes its document). Nothing here writes: `writer.py`
applies the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrievers.documents import RESERVED_METADATA, Chunk, Document, chunk_document, embedding_text
from retrievers.embeddings import Embeddings
from retrievers.knowledge_base.chroma_store import ChromaStore, chunk_metadata, document_chunk_ids

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


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


@dataclass(slots=True)
class WritePlan:
    """Chunks to upsert (parallel lists, with their vectors) and chunk ids to delete."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadatas: list[dict[str, Any]] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    stale_ids: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.ids and not self.stale_ids


def plan_ingest(
    store: ChromaStore,
    embeddings: Embeddings,
    docs: Sequence[Document],
    *,
    prune_sources: bool,
    chunk_size: int,
    chunk_overlap: int,
    progress: ProgressCallback | None,
) -> tuple[WritePlan, IngestReport]:
    """What to write for `docs` (embedding the changed chunks), and the report of what changes."""
    report = IngestReport()
    existing = store.heads([doc.id for doc in docs])
    to_write: list[tuple[Document, list[Chunk], int]] = []  # (document, its chunks, old chunk count)
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
        to_write.append((doc, chunk_document(doc, size=chunk_size, overlap=chunk_overlap), old_count))

    plan = WritePlan()
    if prune_sources:
        wanted = {doc.id for doc in docs}
        for doc_id, head in store.heads_from_sources({doc.source for doc in docs if doc.source}).items():
            if doc_id not in wanted:
                report.removed += 1
                report.changed_doc_ids.append(doc_id)
                plan.stale_ids.extend(document_chunk_ids(doc_id, head))

    chunks = [(doc, chunk, len(doc_chunks)) for doc, doc_chunks, _ in to_write for chunk in doc_chunks]
    plan.vectors = embeddings.embed_passages(
        [embedding_text(doc.title, chunk.text) for doc, chunk, _ in chunks],
        progress=_Counter("embed", len(chunks), progress) if progress else None,
    )
    plan.ids = [chunk.id for _, chunk, _ in chunks]
    plan.texts = [chunk.text for _, chunk, _ in chunks]
    plan.metadatas = [chunk_metadata(doc, chunk, count) for doc, chunk, count in chunks]
    for doc, doc_chunks, old_count in to_write:
        # Chunks beyond the new count would be orphans: delete them.
        plan.stale_ids.extend(Chunk.make_id(doc.id, i) for i in range(len(doc_chunks), old_count))
        report.changed_doc_ids.append(doc.id)
    return plan, report


def plan_delete(doc_id: str, head: dict[str, Any]) -> WritePlan:
    """Every chunk of a stored document, to delete."""
    return WritePlan(stale_ids=document_chunk_ids(doc_id, head))


def document_from_head(doc_id: str, head: dict[str, Any], text: str) -> Document:
    """A stored document with new text: title, category, language, source and metadata kept."""
    return Document(
        id=doc_id,
        title=str(head.get("title", "")),
        text=text,
        category=head.get("category", "general"),
        lang=head.get("lang") or "en",
        source=str(head.get("source", "")),
        metadata={k: v for k, v in head.items() if k not in RESERVED_METADATA},
    )


class _Counter:
    """Turns per-batch increments into (stage, done, total) progress calls."""

    def __init__(self, stage: str, total: int, callback: ProgressCallback) -> None:
        self.stage, self.total, self.done, self.callback = stage, total, 0, callback
        callback(stage, 0, total)

    def __call__(self, increment: int) -> None:
        self.done += increment
        self.callback(self.stage, self.done, self.total)
