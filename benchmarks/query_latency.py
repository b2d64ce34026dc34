"""query_latency: `KnowledgeBaseManager.search(query, top_k=5)` p50/p95 at 2k and 100k chunks.

Modes: no filter; `category=` (each category is a third of the chunks); `filters={"lang": ...}`
(the question's language, about half of the chunks). Each is timed with the query embedding
(the real path: the query vector cache is off, so every question is embedded) and with a
precomputed vector (`query_vector=`), so the embedding's share is visible. Questions are real
ones from the eval sets, Japanese and English alternating, measured after a warm-up.

The collections are synthetic (see `synthetic.py`) and kept in benchmarks/.data/query_latency,
so only the first run pays for building them. The keyword index build time (read every chunk
from Chroma, tokenize, BM25) and the time to load its saved copy are measured at every size.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from benchmarks import synthetic
from benchmarks.common import (
    DATA_DIR,
    Progress,
    Result,
    bench_settings,
    eval_questions,
    interleave,
    log,
    ms_since,
    now,
    print_table,
    stats,
)
from retrievers.documents import CATEGORIES
from retrievers.embeddings import E5Model, Embeddings
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base import KnowledgeBaseManager, make_chroma_client
from retrievers.language import detect_language

NAME = "query_latency"
TOP_K = 5
Question = tuple[str, str]  # (text, language)
Mode = Callable[[int, Question], dict[str, Any]]  # (question number, question) -> search keywords
MODES: dict[str, Mode] = {
    "no filter": lambda i, q: {},
    "category (1/3)": lambda i, q: {"category": CATEGORIES[i % len(CATEGORIES)]},
    "lang filter": lambda i, q: {"filters": {"lang": q[1]}},
}


def questions(count: int, warmup: int) -> tuple[list[Question], list[Question]]:
    """(measured, warm-up) questions: disjoint, the two languages alternating."""
    mixed = interleave(eval_questions("jsquad_dev"), eval_questions("squad_dev"))
    tagged: list[Question] = [(text, detect_language(text)) for text in mixed]
    return tagged[warmup : warmup + count], tagged[:warmup]


class Collections:
    """Synthetic collections of a given size, built once and reused while their spec holds."""

    def __init__(self, vectors: synthetic.VectorKind, embeddings: Embeddings, model: E5Model) -> None:
        self.dir = DATA_DIR / NAME
        self.vectors, self.embeddings, self.model = vectors, embeddings, model
        settings = bench_settings(self.dir)
        self.chunking = (settings.chunk_size, settings.chunk_overlap)
        self.client = make_chroma_client(self.dir, None)
        self.base = synthetic.paragraphs(*self.chunking)
        self._base_vectors: np.ndarray | None = None

    def manager(self, name: str, index_dir: Path | None) -> KnowledgeBaseManager:
        size, overlap = self.chunking
        return KnowledgeBaseManager(
            self.client,
            name,
            self.embeddings,
            chunk_size=size,
            chunk_overlap=overlap,
            index_dir=index_dir,
            result_cache_size=0,  # measure real searches, not the per-version result cache
        )

    def open(self, count: int) -> tuple[KnowledgeBaseManager, float | None]:
        """The manager of a `count`-chunk collection, and the seconds spent building it (None: reused)."""
        name = f"bench-{count}-{self.vectors}"
        marker = self.dir / f"{name}.json"
        spec = {"chunks": count, "vectors": self.vectors, "base": synthetic.digest(self.base), "noise": synthetic.NOISE}
        kb = self.manager(name, self.dir / "keyword-index")
        if marker.exists() and json.loads(marker.read_text()) == spec and kb.collection.count() == count:
            return kb, None
        log(f"building {name} (cached in {self.dir} for the next runs)")
        marker.unlink(missing_ok=True)
        with contextlib.suppress(NotFoundError, ValueError):
            self.client.delete_collection(name)
        kb = self.manager(name, self.dir / "keyword-index")
        if self._base_vectors is None:
            self._base_vectors = synthetic.base_vectors(self.base, self.vectors, self.model)
        started = now()
        synthetic.write(kb, count, self.base, self._base_vectors)
        marker.write_text(json.dumps(spec))
        return kb, round(now() - started, 1)


def keyword_index_seconds(collections: Collections, kb: KnowledgeBaseManager) -> tuple[float, float]:
    """(build from Chroma, load of the saved copy) of the current version's keyword index."""
    version = kb.store.read_version()
    started = now()
    collections.manager(kb.collection_name, index_dir=None).keyword_upkeep.build(version)
    build_s = now() - started
    saved = kb.keyword_upkeep.saved_path(version)
    started = now()
    if saved is not None:
        KeywordIndex.load(saved)
    return round(build_s, 2), round(now() - started, 2)


async def time_searches(
    kb: KnowledgeBaseManager, asked: list[Question], mode: Mode, vectors: list[np.ndarray] | None, label: str = ""
) -> list[float]:
    progress = Progress(label, len(asked)) if label else None
    elapsed = []
    for i, question in enumerate(asked):
        extra = mode(i, question) | ({"query_vector": vectors[i]} if vectors is not None else {})
        started = now()
        await kb.search(question[0], top_k=TOP_K, **extra)
        elapsed.append(ms_since(started))
        if progress:
            progress(i + 1)
    return elapsed


async def measure(kb: KnowledgeBaseManager, model: E5Model, asked: list[Question], warmup: list[Question]) -> dict:
    await kb.keyword_index()
    for mode in MODES.values():  # loads the index, builds the filter columns, warms Chroma
        await time_searches(kb, warmup, mode, None)
    vectors, embed_ms = [], []
    for text, _ in asked:
        started = now()
        vectors.append(model.queries([text])[0])
        embed_ms.append(ms_since(started))
    figures: dict[str, Any] = {"query_embedding": stats(embed_ms), "modes": {}}
    for name, mode in MODES.items():
        with_embedding = await time_searches(kb, asked, mode, None, f"{name}, embedding")
        with_vector = await time_searches(kb, asked, mode, vectors, f"{name}, precomputed vector")
        figures["modes"][name] = {"search": stats(with_embedding), "search_with_vector": stats(with_vector)}
    return figures


async def run(quick: bool) -> Result:
    sizes = (2_000, 10_000) if quick else (2_000, 100_000)
    asked, warmup = questions(*((20, 5) if quick else (200, 20)))
    log("loading e5")
    model = E5Model(bench_settings(DATA_DIR).embeddings_threads)
    embeddings = Embeddings(model, None, query_cache_size=0)  # every search embeds its question
    collections = Collections("random" if quick else "e5", embeddings, model)
    scales = []
    for size in sizes:
        kb, built_s = collections.open(size)
        build_s, load_s = keyword_index_seconds(collections, kb)
        log(f"measuring {kb.collection_name}: {len(asked)} questions x {len(MODES)} modes x 2")
        figures = await measure(kb, model, asked, warmup)
        scales.append(
            {
                "chunks": size,
                "collection_build_s": built_s,
                "keyword_index_build_s": build_s,
                "keyword_index_load_s": load_s,
                **figures,
            }
        )
        await kb.close()
    report(scales, len(asked), collections.vectors)
    figures = {"questions": len(asked), "warmup": len(warmup), "top_k": TOP_K, "vectors": collections.vectors}
    return Result(NAME, quick, figures | {"scales": scales})


def report(scales: list[dict[str, Any]], count: int, vectors: str) -> None:
    rows = []
    for scale in scales:
        embed = scale["query_embedding"]
        rows.append([scale["chunks"], "query embedding only", embed["p50"], embed["p95"], "", ""])
        for name, mode in scale["modes"].items():
            full, bare = mode["search"], mode["search_with_vector"]
            rows.append([scale["chunks"], name, full["p50"], full["p95"], bare["p50"], bare["p95"]])
    print_table(
        f"query_latency: search(top_k={TOP_K}), ms, {count} questions ({vectors} vectors)",
        ["chunks", "mode", "p50", "p95", "p50 (vector given)", "p95 (vector given)"],
        rows,
    )
    print_table(
        "query_latency: keyword index, s",
        ["chunks", "build from Chroma", "load saved copy", "collection build (this run)"],
        [
            [s["chunks"], s["keyword_index_build_s"], s["keyword_index_load_s"], s["collection_build_s"] or "cached"]
            for s in scales
        ],
    )
