"""Catching the keyword index up with a version another process wrote, instead of rebuilding it.

Workers that share a Chroma server but no disk cannot load each other's saved index, and a rebuild
reads and tokenises every chunk (41 s at 100k chunks). A write changes few chunks, so the next
index is derived from the current one.

When the collection's change log (`change_log.py`) names the documents changed since the index's
version (`catch_up_documents`), only their chunks are read (a metadata filter), the whole ones kept
(`consistency.verify`, as a rebuild does), and they replace those documents' rows.

Otherwise (`catch_up`: the log does not reach back, or a repair left no list): read only the ids and
metadata of every chunk (no texts, no vectors), keep the chunks of whole documents, compare
each kept chunk's indexed metadata (its `content_hash` first of all) with the index's row, fetch
the texts of only the new or changed chunks, and derive with `KeywordIndex.updated`, which equals a
rebuild on the same chunks. When much changed (`MAX_CHANGED_SHARE`), a rebuild is as cheap and
simpler (and below `MIN_CHUNKS`, a rebuild takes a fraction of a second): None is returned and
the caller rebuilds.

The index in memory was built by this process's tokenizer (a saved copy from another one is refused
by `KeywordIndex.load`), so its tokens match what `updated` makes of the fetched texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base.chroma_store import ChromaStore, Row
from retrievers.knowledge_base.consistency import verify

log = logging.getLogger(__name__)

MAX_CHANGED_SHARE = 0.2  # above this share of changed chunks, a rebuild is as cheap
MIN_CHUNKS = 500  # below this many chunks in the index, a rebuild takes a fraction of a second anyway
_FETCH_BATCH = 5000  # ids per Chroma get of changed chunks

# (rows) → (their indexed texts, their indexed metadata): keyword_upkeep's `_indexed`
Indexer = Callable[[list[Row]], tuple[list[str], list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Diff:
    """How the whole documents stored differ from an index's rows."""

    removed: list[str]  # chunk ids in the index and no longer kept
    changed: list[str]  # chunk ids kept and new, or with other indexed metadata
    expected: dict[str, dict[str, Any]]  # the stored (indexed) metadata of each changed chunk
    stored: int  # chunks the caught-up index will hold

    @property
    def size(self) -> int:
        return len(self.removed) + len(self.changed)


def diff(index: KeywordIndex, rows: list[Row], indexed: Indexer) -> Diff:
    """Compare the stored chunks (`rows`: id, text unused, metadata) with the index's rows."""
    whole = verify((chunk_id, meta) for chunk_id, _, meta in rows)
    kept = [row for row in rows if whole.keeps(row[0])]
    _, metadatas = indexed(kept)  # the same subset of metadata the index holds
    stored = {chunk_id: meta for (chunk_id, _, _), meta in zip(kept, metadatas, strict=True)}
    changed = []
    for chunk_id, meta in stored.items():
        row = index.row(chunk_id)
        # A chunk with no content hash (written before chunks carried one) cannot be told unchanged.
        if row is None or "content_hash" not in meta or index.metadatas[row] != meta:
            changed.append(chunk_id)
    removed = [chunk_id for chunk_id in index.chunk_ids if chunk_id not in stored]
    return Diff(removed, changed, {chunk_id: stored[chunk_id] for chunk_id in changed}, len(stored))


def catch_up(store: ChromaStore, index: KeywordIndex, indexed: Indexer) -> KeywordIndex | None:
    """The index of what `store` holds now, derived from `index`; None when a rebuild is due
    (a small index, too much changed, or chunks changed again while their texts were read)."""
    if len(index) < MIN_CHUNKS:
        return None
    rows = [row for page in store.pages(texts=False) for row in page]
    found = diff(index, rows, indexed)
    if found.size > MAX_CHANGED_SHARE * max(found.stored, len(index), 1):
        log.info("keyword index: %d of %d chunks changed, rebuilding", found.size, found.stored)
        return None
    fetched: list[Row] = []
    for start in range(0, len(found.changed), _FETCH_BATCH):
        batch = found.changed[start : start + _FETCH_BATCH]
        chunks = store.chunks_by_id(batch)
        fetched.extend((chunk_id, *chunks[chunk_id]) for chunk_id in batch if chunk_id in chunks)
    texts, metadatas = indexed(fetched)
    if len(fetched) != len(found.changed) or not _same(metadatas, fetched, found.expected):
        log.info("keyword index: chunks changed while being read, rebuilding")
        return None  # a write went on meanwhile: its own version stamp follows, and a rebuild is exact
    return index.updated(found.removed, [chunk_id for chunk_id, _, _ in fetched], texts, metadatas)


def catch_up_documents(store: ChromaStore, index: KeywordIndex, documents: set[str], indexed: Indexer) -> KeywordIndex:
    """The index with `documents` as `store` holds them now (whole ones only; gone ones removed).

    A write under way meanwhile may show a document half-written: it is left out, as a rebuild
    would, and that write's own entry in the log names it, so the next catch-up reads it again."""
    rows = store.chunks_of(documents)
    whole = verify((chunk_id, meta) for chunk_id, _, meta in rows)
    kept = sorted((row for row in rows if whole.keeps(row[0])), key=lambda row: row[0])
    texts, metadatas = indexed(kept)
    return index.updated(rows_of(index, documents), [chunk_id for chunk_id, _, _ in kept], texts, metadatas)


def rows_of(index: KeywordIndex, documents: set[str]) -> list[str]:
    """The chunk ids `index` holds of `documents` (replaced whole on a write, as readers see them)."""
    return [
        chunk_id
        for chunk_id, meta in zip(index.chunk_ids, index.metadatas, strict=True)
        if meta.get("doc_id") in documents
    ]


def _same(metadatas: list[dict[str, Any]], fetched: list[Row], expected: Mapping[str, dict[str, Any]]) -> bool:
    return all(meta == expected[chunk_id] for meta, (chunk_id, _, _) in zip(metadatas, fetched, strict=True))
