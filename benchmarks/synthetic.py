"""Synthetic knowledge bases of any size for the scale benchmarks, built without the slow model.

Each synthetic document is one chunk: a real paragraph of the shared eval sets (Japanese and
English interleaved, cycled) with a document-number suffix, so every text is distinct and BM25
sees a realistic vocabulary. Its vector is the e5 vector of that paragraph plus a little noise
(random unit vectors with `--quick`). Chunks go straight to Chroma under the knowledge base's own
id and metadata scheme (`chroma_store.chunk_metadata`); the manager's writer then builds its
keyword index and stamps a version exactly as after an ingest (`Writer.commit`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from benchmarks.common import DATA_DIR, Progress, eval_documents, interleave, seed_embedding_cache
from retrievers.documents import CATEGORIES, Chunk, Document, chunk_document, embedding_text
from retrievers.embeddings import E5Model, Embeddings, VectorCache
from retrievers.knowledge_base import KnowledgeBaseManager
from retrievers.knowledge_base.chroma_store import chunk_metadata

VectorKind = Literal["e5", "random"]
WRITE_BATCH = 5000
NOISE = 0.01  # per dimension: a copy keeps a cosine of ~0.98 to its paragraph
SOURCE = "benchmarks/synthetic"


@dataclass(frozen=True, slots=True)
class Paragraph:
    title: str
    text: str
    lang: str


def paragraphs(chunk_size: int, chunk_overlap: int) -> list[Paragraph]:
    """Every chunk of jsquad_dev and squad_dev, the two languages interleaved."""
    per_set = [
        [
            Paragraph(doc.title, chunk.text, doc.lang)
            for doc in eval_documents(name)
            for chunk in chunk_document(doc, size=chunk_size, overlap=chunk_overlap)
        ]
        for name in ("jsquad_dev", "squad_dev")
    ]
    return interleave(*per_set)


def digest(base: list[Paragraph]) -> str:
    return hashlib.sha256("\x00".join(f"{p.title}\x01{p.text}" for p in base).encode()).hexdigest()[:16]


def base_vectors(base: list[Paragraph], kind: VectorKind, model: E5Model) -> np.ndarray:
    """One unit vector per paragraph: e5 passage vectors (cached in benchmarks/.data), or random."""
    if kind == "random":
        vectors = np.random.default_rng(0).standard_normal((len(base), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cache = DATA_DIR / "embedding-cache.sqlite"
    seed_embedding_cache(cache)
    embeddings = Embeddings(model, VectorCache(cache))
    try:
        texts = [embedding_text(p.title, p.text) for p in base]
        return embeddings.embed_passages(texts, progress=_Increments(Progress("e5 paragraphs", len(texts))))
    finally:
        embeddings.close()


def documents(base: list[Paragraph], start: int, stop: int) -> list[Document]:
    """Synthetic documents number `start`..`stop - 1`; categories take turns (a third each)."""
    docs = []
    for number in range(start, stop):
        p = base[number % len(base)]
        suffix = f"（文書{number}）" if p.lang == "ja" else f" (document {number})"
        docs.append(
            Document(
                id=f"bench-{number:06d}",
                title=p.title,
                text=p.text + suffix,
                category=CATEGORIES[number % len(CATEGORIES)],
                lang=p.lang,  # type: ignore[arg-type]
                source=SOURCE,
            )
        )
    return docs


def write(kb: KnowledgeBaseManager, count: int, base: list[Paragraph], vectors: np.ndarray) -> None:
    """Write `count` one-chunk documents to the collection, then stamp it and build its index."""
    rng = np.random.default_rng(1)
    progress = Progress(f"upsert {kb.collection_name}", count)
    for start in range(0, count, WRITE_BATCH):
        stop = min(start + WRITE_BATCH, count)
        docs = documents(base, start, stop)
        chunks = [Chunk(Chunk.make_id(doc.id, 0), doc.id, 0, doc.text) for doc in docs]
        batch = vectors[np.arange(start, stop) % len(base)]
        batch = batch + rng.normal(0.0, NOISE, batch.shape).astype(np.float32)
        batch /= np.linalg.norm(batch, axis=1, keepdims=True)
        kb.collection.upsert(
            ids=[chunk.id for chunk in chunks],
            embeddings=batch,
            documents=[chunk.text for chunk in chunks],
            metadatas=[chunk_metadata(doc, chunk, 1) for doc, chunk in zip(docs, chunks, strict=True)],
        )
        progress(stop)
    kb.writer.commit()


class _Increments:
    """Adapts `Embeddings.embed_passages`' per-batch increments to a `Progress` total."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.done = progress, 0

    def __call__(self, increment: int) -> None:
        self.done += increment
        self.progress(self.done)
