"""Ingest planning: documents compared with what is stored, turned into a `WritePlan`.

A document is added (no head chunk), unchanged (same content hash: nothing written), or updated
(all its chunks rewritten; chunks beyond its new count deleted, so none are orphaned). With
`prune_sources`, documents stored from the same source files that are no longer among the input
are removed (deleting a line of a .jsonl deletes its document). Nothing here writes: `writer.py`
applies the plan.

A plan records what it was based on (`basis`: the stored version of every document it looked at),
so one made before the writer lock was taken (the slow part, embedding, needs no lock) can be
checked under the lock and made again when another writer changed those documents meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrievers.access import roles_of_stored
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
    recovered: bool = False  # a write cut short was found and repaired before this one
    repaired: int = 0  # documents that write had left incomplete, removed (and re-added when in `docs`)
    strays_deleted: int = 0  # chunks such a write had left with no document


Basis = dict[str, tuple[object, object]]  # document id → (content hash, chunk count) stored, or absent


@dataclass(slots=True)
class WritePlan:
    """Chunks to upsert (parallel lists, with their vectors) and chunk ids to delete."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadatas: list[dict[str, Any]] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    stale_ids: list[str] = field(default_factory=list)
    basis: Basis = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.ids and not self.stale_ids

    def documents(self) -> set[str]:
        """Every document the plan writes or deletes chunks of (replaced whole, as readers see them)."""
        touched = {str(meta["doc_id"]) for meta in self.metadatas}
        touched.update(chunk_id.rpartition("::")[0] for chunk_id in self.stale_ids)
        return touched


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
    existing, pruned = _stored(store, docs, prune_sources)
    to_write: list[tuple[Document, list[Chunk], int]] = []  # (document, its chunks, old chunk count)
    hashes = {doc.id: doc.content_hash for doc in docs}  # each hashes the whole text: once per document
    for doc in docs:
        head = existing.get(doc.id)
        if head is None:
            report.added += 1
        elif head.get("content_hash") == hashes[doc.id]:
            report.unchanged += 1
            continue
        else:
            report.updated += 1
        old_count = int(head.get("chunk_count", 0)) if head else 0
        to_write.append((doc, chunk_document(doc, size=chunk_size, overlap=chunk_overlap), old_count))

    plan = WritePlan(basis=_basis(docs, existing, pruned))
    for doc_id, head in pruned.items():
        report.removed += 1
        report.changed_doc_ids.append(doc_id)
        plan.stale_ids.extend(document_chunk_ids(doc_id, head))

    chunks = [(doc, chunk, len(doc_chunks)) for doc, doc_chunks, _ in to_write for chunk in doc_chunks]
    plan.vectors = embeddings.embed_passages(
        [embedding_text(doc.title, chunk.text) for doc, chunk, _ in chunks],
        progress=StageCounter("embed", len(chunks), progress) if progress else None,
    )
    plan.ids = [chunk.id for _, chunk, _ in chunks]
    plan.texts = [chunk.text for _, chunk, _ in chunks]
    plan.metadatas = [chunk_metadata(doc, chunk, count, hashes[doc.id]) for doc, chunk, count in chunks]
    for doc, doc_chunks, old_count in to_write:
        # Chunks beyond the new count would be orphans: delete them.
        plan.stale_ids.extend(Chunk.make_id(doc.id, i) for i in range(len(doc_chunks), old_count))
        report.changed_doc_ids.append(doc.id)
    return plan, report


def plan_still_holds(store: ChromaStore, plan: WritePlan, docs: Sequence[Document], *, prune_sources: bool) -> bool:
    """Whether the documents `plan` looked at are still stored as they were when it was made."""
    existing, pruned = _stored(store, docs, prune_sources)
    return _basis(docs, existing, pruned) == plan.basis


def _stored(
    store: ChromaStore, docs: Sequence[Document], prune_sources: bool
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Heads of the stored versions of `docs`, and of the documents pruning would remove."""
    existing = store.heads([doc.id for doc in docs])
    pruned: dict[str, dict[str, Any]] = {}
    if prune_sources:
        wanted = {doc.id for doc in docs}
        from_sources = store.heads_from_sources({doc.source for doc in docs if doc.source})
        pruned = {doc_id: head for doc_id, head in from_sources.items() if doc_id not in wanted}
    return existing, pruned


def _basis(docs: Sequence[Document], existing: dict[str, dict[str, Any]], pruned: dict[str, dict[str, Any]]) -> Basis:
    seen = {doc.id: existing.get(doc.id, {}) for doc in docs} | pruned
    return {doc_id: (head.get("content_hash"), head.get("chunk_count")) for doc_id, head in seen.items()}


def plan_delete(doc_id: str, head: dict[str, Any]) -> WritePlan:
    """Every chunk of a stored document, to delete."""
    return WritePlan(stale_ids=document_chunk_ids(doc_id, head))


def document_from_head(doc_id: str, head: dict[str, Any], text: str) -> Document:
    """A stored document with new text: title, category, language, source, metadata and who may
    see it kept."""
    return Document(
        id=doc_id,
        title=str(head.get("title", "")),
        text=text,
        category=head.get("category", "general"),
        lang=head.get("lang") or "en",
        source=str(head.get("source", "")),
        metadata={k: v for k, v in head.items() if k not in RESERVED_METADATA},
        roles=roles_of_stored(head.get("roles")),
        tenant=str(head.get("tenant") or "") or None,
    )


class StageCounter:
    """Turns per-batch increments into (stage, done, total) progress calls, from (stage, 0, total)."""

    def __init__(self, stage: str, total: int, callback: ProgressCallback) -> None:
        self.stage, self.total, self.done, self.callback = stage, total, 0, callback
        callback(stage, 0, total)

    def __call__(self, increment: int) -> None:
        self.done += increment
        self.callback(self.stage, self.done, self.total)
