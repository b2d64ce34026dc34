"""Hybrid search: dense and BM25 candidates, fused per document, returned as `SearchHit`s.

The query is embedded once. Which chunks a search may use is one mask over the keyword index's
rows: the caller's access (`retrievers/access.py`) and the metadata conditions (category, language)
together (`KeywordIndex.visible`). Chroma is asked unfiltered and, when the mask hides anything,
over-fetched and then masked (a Chroma `where` filter costs ~40x an unfiltered query); when the
over-fetch may have missed some of the best visible chunks, Chroma is asked again for the nearest
among the visible chunks' ids only (exact, slower). BM25 scores only the visible chunks, with their
own statistics. So a caller's results are those of a knowledge base holding only what they may see.
Each signal's chunks collapse to their documents, the two scores are fused
(`retrievers/fusion.py`), and each winner is returned with its best chunk joined to the chunks
around it.

The keyword index is the snapshot of one committed version: dense hits outside it are ignored, and
a chunk read live is used only when it carries the content hash the snapshot has for it. A document
being rewritten by a writer is thus briefly absent or shorter, never two versions joined.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrievers.access import ANONYMOUS, Viewer
from retrievers.documents import RESERVED_METADATA, Chunk, embedding_text
from retrievers.embeddings import Embeddings
from retrievers.fusion import fuse_scores
from retrievers.keyword import KeywordIndex, Mask
from retrievers.knowledge_base.chroma_store import ChromaStore
from retrievers.knowledge_base.hits import SearchHit

CANDIDATE_POOL = 100  # top-N of each signal that fusion looks at
MAX_OVERFETCH = 1000  # cap on the unfiltered dense fetch used to serve a mask; beyond it, the exact query
OVERFETCH_SLACK = 1.5  # fetch this much more than the visible share predicts: fewer exact re-queries


@dataclass(frozen=True, slots=True)
class Candidates:
    """Per signal: document id → (best chunk id, score), over the top chunks of that signal."""

    dense: dict[str, tuple[str, float]]
    keyword: dict[str, tuple[str, float]]
    index: KeywordIndex
    mask: Mask | None = None  # the chunks the search could use (None: all of them)


class HybridSearch:
    """Searches one collection with the keyword index it is given (the current version's)."""

    def __init__(self, store: ChromaStore, embeddings: Embeddings) -> None:
        self.store = store
        self.embeddings = embeddings

    async def candidates(
        self,
        index: KeywordIndex,
        query: str,
        conditions: Mapping[str, Any],
        query_vector: np.ndarray | None = None,
        *,
        dense: bool = True,
        viewer: Viewer = ANONYMOUS,
    ) -> Candidates | None:
        """Each signal's best chunk and score per document, before fusion (None: nothing to search).
        `conditions`: metadata that must match exactly (a list means any of). `viewer`: who is
        searching (default: the least privileged, public documents only). `dense=False`: the
        keyword signal alone (the query's vector could not be had in time)."""
        if not len(index) or not query.strip():
            return None
        mask = index.visible(viewer, conditions)
        if mask is not None and not mask.any():
            return None
        keyword_search = asyncio.to_thread(index.search, query, CANDIDATE_POOL, mask)
        if dense:
            vector = query_vector if query_vector is not None else await self.embeddings.aembed_query(query)
            dense_hits, keyword_hits = await asyncio.gather(
                asyncio.to_thread(self._dense, vector, index, mask), keyword_search
            )
        else:
            dense_hits, keyword_hits = [], await keyword_search
        return Candidates(
            dense=_best_per_doc(dense_hits),
            keyword=_best_per_doc((index.chunk_ids[h.row], h.score) for h in keyword_hits),
            index=index,
            mask=mask,
        )

    def _dense(self, vector: np.ndarray, index: KeywordIndex, mask: Mask | None) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the `CANDIDATE_POOL` nearest visible chunks of the snapshot: an
        unfiltered over-fetch, masked; or, when that cannot be sure to hold them, the exact query."""
        total = len(index)
        visible = total if mask is None else int(np.count_nonzero(mask))
        wanted = CANDIDATE_POOL if mask is None else math.ceil(CANDIDATE_POOL * total / visible * OVERFETCH_SLACK)
        if wanted <= MAX_OVERFETCH or visible == total:
            asked = min(wanted, total + 1)  # more than the collection holds: everything it has
            found = self.store.nearest(vector, asked)
            kept = [(c, s) for c, s in found if _usable(index, mask, c)]  # outside the snapshot: not committed
            if mask is None or len(kept) >= CANDIDATE_POOL or len(found) < asked:
                return kept[:CANDIDATE_POOL]
        # Too few visible chunks among the nearest of all: ask among the visible ones only.
        ids = [index.chunk_ids[row] for row in np.flatnonzero(mask)] if mask is not None else []
        return self.store.nearest(vector, min(CANDIDATE_POOL, visible), among=ids)

    async def hits(
        self, found: Candidates, query: str, *, top_k: int, dense_weight: float, chunk_overlap: int
    ) -> list[SearchHit]:
        """The `top_k` best documents by fused score, each with its best passage."""
        dense_by_doc, keyword_by_doc, index = found.dense, found.keyword, found.index
        ranked = rank(found, top_k=top_k, dense_weight=dense_weight)
        best_chunk = {d: c for d, (c, _) in keyword_by_doc.items()}
        best_chunk.update({d: c for d, (c, _) in dense_by_doc.items()})  # dense picks the passage
        # The answer gets the best chunk with its neighbours: a fact is often one chunk away from
        # the words that matched (a product's battery life vs. its "in the box" list).
        windows = {doc_id: _neighbours(best_chunk[doc_id]) for doc_id, _ in ranked}
        read, weights = await asyncio.gather(  # the query's idf weights: off the event loop, once per search
            asyncio.to_thread(self.store.chunks_by_id, [c for ids in windows.values() for c in ids]),
            asyncio.to_thread(index.query_weights, query, found.mask),
        )
        stored = {c: chunk for c, chunk in read.items() if _in_snapshot(index, c, chunk[1])}
        results = []
        for doc_id, score in ranked:
            chunk = stored.get(best_chunk[doc_id])
            if chunk is None:  # deleted or rewritten since the keyword index was built
                continue
            meta = chunk[1]
            window = [stored[c] for c in windows[doc_id] if c in stored]
            text = _join_overlapping([chunk_text for chunk_text, _ in window], chunk_overlap)
            results.append(
                SearchHit(
                    doc_id=doc_id,
                    title=str(meta.get("title", "")),
                    text=text,
                    score=round(score, 4),
                    dense=_maybe(dense_by_doc.get(doc_id)),
                    keyword=_maybe(keyword_by_doc.get(doc_id)),
                    coverage=round(
                        index.coverage(query, embedding_text(str(meta.get("title", "")), text), weights=weights), 4
                    ),
                    category=str(meta.get("category", "general")),
                    lang=str(meta.get("lang", "")),
                    source=str(meta.get("source", "")),
                    chunk_index=int(meta.get("chunk_index", 0)),
                    metadata={k: v for k, v in meta.items() if k not in RESERVED_METADATA} | _pages_of(window),
                )
            )
        return results


def _pages_of(window: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """`page` (the first) and `pages` ("3" or "3-4") of the passage a hit returns — its best chunk and
    the neighbours joined to it — when the document is paged (a PDF); else nothing."""
    spans = [(int(meta["page"]), str(meta.get("pages", meta["page"]))) for _, meta in window if "page" in meta]
    if not spans:
        return {}
    first = min(page for page, _ in spans)
    last = max(int(pages.rpartition("-")[2]) for _, pages in spans)
    return {"page": first, "pages": str(first) if first == last else f"{first}-{last}"}


def rank(found: Candidates, *, top_k: int, dense_weight: float) -> list[tuple[str, float]]:
    """The `top_k` (document id, fused score), best first."""
    fused = fuse_scores(
        {d: s for d, (_, s) in found.dense.items()},
        {d: s for d, (_, s) in found.keyword.items()},
        dense_weight=dense_weight,
    )
    # Ties (two candidates standardise to +1/-1 and can sum to 0) break on dense, then id.
    return sorted(
        fused.items(),
        key=lambda item: (-item[1], -found.dense.get(item[0], ("", -2.0))[1], item[0]),
    )[:top_k]


def _best_per_doc(hits: Iterable[tuple[str, float]]) -> dict[str, tuple[str, float]]:
    """Collapse chunk hits to their document: (best chunk id, best score) per document id."""
    best: dict[str, tuple[str, float]] = {}
    for chunk_id, score in hits:
        doc_id = chunk_id.rsplit("::", 1)[0]
        if doc_id not in best or score > best[doc_id][1]:
            best[doc_id] = (chunk_id, score)
    return best


def _usable(index: KeywordIndex, mask: Mask | None, chunk_id: str) -> bool:
    """Whether a chunk Chroma returned is in the snapshot and visible to the search."""
    row = index.row(chunk_id)
    return row is not None and (mask is None or bool(mask[row]))


def _in_snapshot(index: KeywordIndex, chunk_id: str, meta: Mapping[str, Any]) -> bool:
    """Whether a chunk read now is the version the keyword index holds (chunks stored before hashes
    were written on every chunk have none on either side)."""
    row = index.row(chunk_id)
    return row is not None and meta.get("content_hash") == index.metadatas[row].get("content_hash")


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
