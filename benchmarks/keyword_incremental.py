"""keyword_incremental: one write at 100k chunks made searchable by keyword without rebuilding the index.

(a) A full build of `KeywordIndex` from the chunk texts (what every write cost before).
(b) `KeywordIndex.updated` for one changed document, one added, one deleted: from the change handed
    to the index to a search (with the caller's access mask) that finds the new text, or no longer
    finds the deleted one, by a keyword only that text holds.
(c) The same writes through `KnowledgeBaseManager` on embedded Chroma (synthetic collection, cached in
    benchmarks/.data/keyword_incremental; written straight to Chroma with random vectors, as
    `synthetic.py` does): `index_documents` / `delete` then a keyword search finding it; the part of
    that spent deriving the index; the background save of the derived copy; and, for comparison,
    the rebuild from Chroma each write paid before.

Documents are one chunk each (`synthetic.py`). The written documents are embedded by a stand-in
model (vectors from a hash of the text): the figure is the keyword index's cost, not a model's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from statistics import median
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from benchmarks import synthetic
from benchmarks.common import DATA_DIR, Result, bench_settings, log, now, print_table
from retrievers.access import ANONYMOUS
from retrievers.documents import Document, embedding_text
from retrievers.embeddings import Embeddings
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base import KnowledgeBaseManager, make_chroma_client

NAME = "keyword_incremental"
DIMENSIONS = 384
REPEATS = 5


class HashVectors:
    """A stand-in embedding model: a unit vector seeded by each text's hash (no model is loaded)."""

    name = "benchmark-hash-384"

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        rows = [
            np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8])).standard_normal(DIMENSIONS)
            for t in texts
        ]
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), DIMENSIONS)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    queries = passages


def marked(doc: Document, marker: str) -> Document:
    return doc.model_copy(update={"text": f"{doc.text} {marker}"})


# ------------------------------------------------------------------ (a), (b): the index alone


def in_memory(docs: list[Document]) -> dict[str, Any]:
    ids = [f"{doc.id}::0" for doc in docs]
    texts = [embedding_text(doc.title, doc.text) for doc in docs]
    metadatas = [
        {"doc_id": doc.id, "category": doc.category, "lang": doc.lang, "roles": "", "tenant": ""} for doc in docs
    ]
    log(f"building the keyword index of {len(docs):,} chunks")
    started = now()
    index = KeywordIndex(ids, texts, metadatas)
    build_s = now() - started
    timings: dict[str, list[float]] = {"changed": [], "added": [], "deleted": []}
    rng = np.random.default_rng(5)

    def timed(kind: str, marker: str, removed: list[str], added: dict[str, str], expect: str | None) -> None:
        nonlocal index
        started = now()
        index = index.updated(removed, list(added), list(added.values()), [meta] * len(added))
        hits = index.search(marker, 5, index.visible(ANONYMOUS))
        timings[kind].append(now() - started)
        found = [index.chunk_ids[hit.row] for hit in hits]
        assert found == ([expect] if expect else []), (kind, found)

    for n in range(REPEATS):
        doc = docs[int(rng.integers(len(docs)))]
        meta = metadatas[ids.index(f"{doc.id}::0")]
        changed = {f"{doc.id}::0": embedding_text(doc.title, f"{doc.text} zqchanged{n}")}
        timed("changed", f"zqchanged{n}", [], changed, f"{doc.id}::0")
        new_id = f"bench-added-{n}::0"
        timed("added", f"zqadded{n}", [], {new_id: embedding_text(doc.title, f"{docs[n].text} zqadded{n}")}, new_id)
        timed("deleted", f"zqadded{n}", [new_id], {}, None)
    return {
        "chunks": len(index),
        "cells": int(index._tf.nnz),
        "terms": len(index._terms),
        "full_build_s": round(build_s, 2),
        "update_and_search_s": {kind: _summary(values) for kind, values in timings.items()},
    }


# ------------------------------------------------------------------ (c): through the manager, on Chroma


def open_collection(
    count: int, base: list[synthetic.Paragraph], *, benchmark: str = NAME, prefix: str = "incremental"
) -> KnowledgeBaseManager:
    """A `count`-chunk collection of random vectors, built once and kept in the benchmark's data folder."""
    folder = DATA_DIR / benchmark
    client = make_chroma_client(folder, None)
    name = f"{prefix}-{count}"
    spec = {"chunks": count, "base": synthetic.digest(base), "vectors": "random"}
    marker = folder / f"{name}.json"

    def manager() -> KnowledgeBaseManager:
        embeddings = Embeddings(HashVectors(), None)
        return KnowledgeBaseManager(client, name, embeddings, index_dir=folder / "keyword-index", result_cache_size=0)

    kb = manager()
    if marker.exists() and json.loads(marker.read_text()) == spec and kb.collection.count() == count:
        return kb
    log(f"building {name} (cached in {folder} for the next runs)")
    marker.unlink(missing_ok=True)
    with contextlib.suppress(NotFoundError, ValueError):
        client.delete_collection(name)
    kb = manager()
    vectors = np.random.default_rng(0).standard_normal((len(base), DIMENSIONS)).astype(np.float32)
    synthetic.write(kb, count, base, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    marker.write_text(json.dumps(spec))
    return kb


async def through_manager(kb: KnowledgeBaseManager, docs: list[Document]) -> dict[str, Any]:
    upkeep = kb.keyword_upkeep
    started = now()
    await kb.keyword_index()  # a saved copy, or a rebuild when there is none for the stored version
    ready_s = now() - started
    derive: list[float] = []
    saves: list[float] = []
    apply, save = upkeep.apply, upkeep._save

    def timed_apply(*args: Any) -> KeywordIndex:
        started = now()
        try:
            return apply(*args)
        finally:
            derive.append(now() - started)

    def timed_save(*args: Any, **kwargs: Any) -> bool:
        started = now()
        try:
            return save(*args, **kwargs)
        finally:
            saves.append(now() - started)

    upkeep.apply, upkeep._save = timed_apply, timed_save  # type: ignore[method-assign,assignment]
    timings: dict[str, list[float]] = {"changed": [], "added": [], "deleted": []}
    derived: dict[str, list[float]] = {kind: [] for kind in timings}
    run = uuid.uuid4().hex[:6]  # the changed documents differ from what an earlier run stored
    rng = np.random.default_rng(6)

    async def timed(kind: str, marker: str, write: Any, expect: str | None) -> None:
        started = now()
        await write
        found = [hit["doc_id"] for hit in await kb.search(marker, top_k=3, dense=False)]
        timings[kind].append(now() - started)
        derived[kind].append(derive[-1] if derive else float("nan"))
        assert found == ([expect] if expect else []), (kind, found)

    for n in range(3):
        doc = docs[int(rng.integers(len(docs)))]
        await timed("changed", f"zq{run}c{n}", kb.index_documents([marked(doc, f"zq{run}c{n}")]), doc.id)
        new = marked(docs[n].model_copy(update={"id": f"bench-added-{run}-{n}"}), f"zq{run}a{n}")
        await timed("added", f"zq{run}a{n}", kb.index_documents([new]), new.id)
        await timed("deleted", f"zq{run}a{n}", kb.delete(new.id), None)
    started = now()
    upkeep.wait_for_saves()
    waited = now() - started
    log("timing the rebuild from Chroma each write paid before")
    started = now()
    upkeep.build_from_chroma()
    rebuild_s = now() - started
    await kb.close()
    return {
        "index_ready_at_start_s": round(ready_s, 2),
        "write_and_search_s": {kind: _summary(values) for kind, values in timings.items()},
        "of_which_index_derivation_s": {kind: _summary(values) for kind, values in derived.items()},
        "background_saves": {"count": len(saves), **_summary(saves), "waited_at_end_s": round(waited, 2)},
        "rebuild_from_chroma_s": round(rebuild_s, 2),
    }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "max": float("nan")}
    return {"median": round(median(values), 3), "max": round(max(values), 3)}


async def run(quick: bool) -> Result:
    count = 10_000 if quick else 100_000
    settings = bench_settings(DATA_DIR / NAME)
    base = synthetic.paragraphs(settings.chunk_size, settings.chunk_overlap)
    docs = synthetic.documents(base, 0, count)
    figures: dict[str, Any] = {"in_memory": in_memory(docs)}
    started = time.perf_counter()
    kb = open_collection(count, base)
    figures["collection_ready_s"] = round(time.perf_counter() - started, 1)
    figures["manager"] = await through_manager(kb, docs)
    report(figures)
    return Result(NAME, quick, figures)


def report(figures: dict[str, Any]) -> None:
    memory, manager = figures["in_memory"], figures["manager"]
    kinds = ("changed", "added", "deleted")
    print_table(
        f"keyword_incremental: {memory['chunks']:,} chunks ({memory['cells']:,} cells, {memory['terms']:,} terms), s",
        ["step", *kinds],
        [
            ["(a) full KeywordIndex build", memory["full_build_s"], "", ""],
            ["(b) updated + search, median", *(memory["update_and_search_s"][k]["median"] for k in kinds)],
            ["(b) updated + search, max", *(memory["update_and_search_s"][k]["max"] for k in kinds)],
            ["(c) manager write + search, median", *(manager["write_and_search_s"][k]["median"] for k in kinds)],
            ["(c) manager write + search, max", *(manager["write_and_search_s"][k]["max"] for k in kinds)],
            [
                "(c) of which index derivation, median",
                *(manager["of_which_index_derivation_s"][k]["median"] for k in kinds),
            ],
            ["(c) rebuild from Chroma (before)", manager["rebuild_from_chroma_s"], "", ""],
            ["(c) background save, median", manager["background_saves"]["median"], "", ""],
            ["(c) index ready at start (load or rebuild)", manager["index_ready_at_start_s"], "", ""],
        ],
    )
