"""access_filter: hybrid search p50/p95 at 100k chunks for callers who may see 100%, 50% and 10% of them.

The collection is synthetic (`synthetic.py`: one chunk per document, real eval-set paragraphs, random
unit vectors, cached in benchmarks/.data/access_filter): a tenth of the documents is public, four
tenths need the role `member` or `staff`, the rest `staff`. So `staff` sees everything (no mask),
`member` half, an anonymous caller a tenth. Each search is the full one (`KnowledgeBaseManager.search`
with the query vector given: dense over-fetch or exact query, masked BM25, fusion, passages), for
real eval questions; the vectors are random, so the visible share of the nearest chunks is the
caller's share. Also counted: how often the dense side needed the exact query (`among` ids).

The keyword index build is timed on the same texts in memory (tokenize + index) with this index
(term frequencies, statistics at query time) and with bm25s (scores precomputed), the one it replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from benchmarks import synthetic
from benchmarks.common import DATA_DIR, Progress, Result, bench_settings, log, ms_since, now, print_table, stats
from benchmarks.query_latency import questions
from retrievers.access import ANONYMOUS, Viewer
from retrievers.documents import Chunk, Document, embedding_text
from retrievers.embeddings import Embeddings
from retrievers.keyword import KeywordIndex, tokenize
from retrievers.knowledge_base import KnowledgeBaseManager, make_chroma_client
from retrievers.knowledge_base.chroma_store import chunk_metadata

NAME = "access_filter"
TOP_K = 5
DIMENSIONS = 384
CALLERS = {
    "staff (sees 100%)": Viewer.of(["staff"]),
    "member (50%)": Viewer.of(["member"]),
    "anonymous (10%)": ANONYMOUS,
}


def restricted(doc: Document, number: int) -> Document:
    share = number % 10
    if share == 0:
        return doc
    return doc.model_copy(update={"roles": ("member", "staff") if share < 5 else ("staff",)})


class NoModel:
    """Searches get their vectors given: nothing is embedded."""

    name = "benchmark-random-384"

    def passages(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("the access_filter benchmark embeds nothing")

    queries = passages


def build(kb: KnowledgeBaseManager, count: int, base: list[synthetic.Paragraph]) -> None:
    rng = np.random.default_rng(3)
    progress = Progress(f"upsert {kb.collection_name}", count)
    for start in range(0, count, synthetic.WRITE_BATCH):
        stop = min(start + synthetic.WRITE_BATCH, count)
        docs = [restricted(doc, start + i) for i, doc in enumerate(synthetic.documents(base, start, stop))]
        chunks = [Chunk(Chunk.make_id(doc.id, 0), doc.id, 0, doc.text) for doc in docs]
        vectors = rng.standard_normal((len(docs), DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        kb.collection.upsert(
            ids=[chunk.id for chunk in chunks],
            embeddings=vectors,
            documents=[chunk.text for chunk in chunks],
            metadatas=[chunk_metadata(doc, chunk, 1) for doc, chunk in zip(docs, chunks, strict=True)],
        )
        progress(stop)
    kb.writer.commit()


def open_collection(count: int) -> tuple[KnowledgeBaseManager, list[synthetic.Paragraph]]:
    folder = DATA_DIR / NAME
    settings = bench_settings(folder)
    base = synthetic.paragraphs(settings.chunk_size, settings.chunk_overlap)
    client = make_chroma_client(folder, None)
    name = f"access-{count}"
    spec = {"chunks": count, "base": synthetic.digest(base), "rule": "10% public, 40% member|staff, 50% staff"}
    marker = folder / f"{name}.json"

    def manager() -> KnowledgeBaseManager:
        embeddings = Embeddings(NoModel(), None)  # type: ignore[arg-type]
        return KnowledgeBaseManager(client, name, embeddings, index_dir=folder / "keyword-index", result_cache_size=0)

    kb = manager()
    if marker.exists() and json.loads(marker.read_text()) == spec and kb.collection.count() == count:
        return kb, base
    log(f"building {name} (cached in {folder} for the next runs)")
    marker.unlink(missing_ok=True)
    with contextlib.suppress(NotFoundError, ValueError):
        client.delete_collection(name)
    kb = manager()
    build(kb, count, base)
    marker.write_text(json.dumps(spec))
    return kb, base


async def time_caller(
    kb: KnowledgeBaseManager, viewer: Viewer, asked: list[str], vectors: np.ndarray
) -> tuple[list[float], int]:
    """Milliseconds per search, and how many needed the exact dense query."""
    exact = 0
    nearest = kb.store.nearest

    def counting(vector: np.ndarray, limit: int, among: Any = None) -> list[tuple[str, float]]:
        nonlocal exact
        exact += among is not None
        return nearest(vector, limit, among)

    kb.store.nearest = counting  # type: ignore[method-assign]
    elapsed = []
    try:
        for question, vector in zip(asked, vectors, strict=True):
            started = now()
            await kb.search(question, top_k=TOP_K, query_vector=vector, viewer=viewer)
            elapsed.append(ms_since(started))
    finally:
        kb.store.nearest = nearest  # type: ignore[method-assign]
    return elapsed, exact


def index_build_seconds(texts: list[str]) -> dict[str, float]:
    """Tokenize + index the same texts: this index, then bm25s (the one it replaced)."""
    import bm25s  # a dev dependency: only the benchmark and the tests' oracle use it

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG and logs every build

    started = now()
    KeywordIndex([str(i) for i in range(len(texts))], texts, [{} for _ in texts])
    ours = now() - started
    started = now()
    tokenized = [tokenize(text) for text in texts]
    bm25s.BM25(k1=1.5, b=0.75, method="lucene").index(tokenized, show_progress=False)
    theirs = now() - started
    return {"term_frequencies_s": round(ours, 1), "bm25s_s": round(theirs, 1)}


async def run(quick: bool) -> Result:
    count = 10_000 if quick else 100_000
    asked_pairs, warmup_pairs = questions(*((50, 10) if quick else (300, 30)))
    asked, warmup = [q for q, _ in asked_pairs], [q for q, _ in warmup_pairs]
    kb, base = open_collection(count)
    started = now()
    index = await kb.keyword_index()
    log(f"keyword index of {len(index):,} chunks ready in {now() - started:.1f} s")
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((len(asked) + len(warmup), DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    figures: dict[str, Any] = {"chunks": len(index), "questions": len(asked), "top_k": TOP_K, "callers": {}}
    for label, viewer in CALLERS.items():
        mask = index.access_mask(viewer)
        await time_caller(kb, viewer, warmup, vectors[len(asked) :])  # masks, Chroma caches
        elapsed, exact = await time_caller(kb, viewer, asked, vectors[: len(asked)])
        keyword_ms = []
        for question in asked:
            started = now()
            index.search(question, 100, mask)
            keyword_ms.append(ms_since(started))
        figures["callers"][label] = {
            "visible_share": 1.0 if mask is None else round(float(mask.mean()), 3),
            "search": stats(elapsed),
            "keyword_only": stats(keyword_ms),
            "exact_dense_queries": exact,
        }
    await kb.close()
    texts = [embedding_text(d.title, d.text) for d in synthetic.documents(base, 0, count)]
    log(f"timing keyword index builds over {len(texts):,} texts")
    figures["keyword_index_build"] = index_build_seconds(texts)
    report(figures)
    return Result(NAME, quick, figures)


def report(figures: dict[str, Any]) -> None:
    rows = [
        [
            label,
            caller["visible_share"],
            caller["search"]["p50"],
            caller["search"]["p95"],
            caller["keyword_only"]["p50"],
            caller["keyword_only"]["p95"],
            f"{caller['exact_dense_queries']}/{figures['questions']}",
        ]
        for label, caller in figures["callers"].items()
    ]
    print_table(
        f"access_filter: search(top_k={TOP_K}, vector given) at {figures['chunks']:,} chunks, ms",
        ["caller", "visible", "p50", "p95", "BM25 p50", "BM25 p95", "exact dense queries"],
        rows,
    )
    build = figures["keyword_index_build"]
    print_table(
        f"access_filter: keyword index build over {figures['chunks']:,} texts, s",
        ["index", "tokenize + build"],
        [["term frequencies (now)", build["term_frequencies_s"]], ["bm25s (before)", build["bm25s_s"]]],
    )
