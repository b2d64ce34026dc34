"""ingest: chunks/s through the real `KnowledgeBaseManager.index_documents`, per offline model.

Every run starts from an empty data dir and embeds without a vector cache, so the figure is real
embedding work (plus chunking, Chroma writes and the keyword index build). The full-set time is
extrapolated from the measured rate and labelled as such.
"""

from __future__ import annotations

import shutil
from typing import Any

from benchmarks.common import (
    DATA_DIR,
    SAMPLE_KB,
    Progress,
    Result,
    bench_settings,
    eval_documents,
    log,
    now,
    print_table,
)
from retrievers.documents import Document, chunk_document, load_documents
from retrievers.embeddings import E5Model, EmbeddingModel, Embeddings, UseModel
from voicerag.services import build_knowledge_base

NAME = "ingest"
MODELS: dict[str, type[E5Model] | type[UseModel]] = {"e5": E5Model, "use": UseModel}
SLICE, QUICK_SLICE = 300, 20


def corpora(quick: bool) -> dict[str, tuple[list[Document], list[Document]]]:
    """Name → (the documents ingested, the whole set they come from)."""
    size = QUICK_SLICE if quick else SLICE
    sample = load_documents([SAMPLE_KB]).documents
    sets = {"sample_kb": sample, **{name: eval_documents(name) for name in ("jsquad_dev", "squad_dev")}}
    return {
        name: (_every_nth(docs, size) if quick or name != "sample_kb" else docs, docs) for name, docs in sets.items()
    }


def _every_nth(docs: list[Document], size: int) -> list[Document]:
    """`size` documents spread over the set, so the slice has the set's mix of lengths (the eval
    sets put their shorter paragraphs first: a head slice would flatter the extrapolation)."""
    return docs[:: max(1, len(docs) // size)][:size]


async def ingest_once(kind: str, model: EmbeddingModel, corpus: str, docs: list[Document]) -> dict[str, Any]:
    data_dir = DATA_DIR / "ingest" / f"{kind}-{corpus}"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = bench_settings(data_dir, embeddings=kind)
    kb = build_knowledge_base(settings, Embeddings(model, None), collection=f"bench-{corpus}")
    marks: dict[str, float] = {}
    bar: dict[str, Progress] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar.setdefault(stage, Progress(f"{kind} {corpus} {stage}", total))(done)
        if stage == "embed" and done >= total:
            marks["embedded"] = now()

    started = now()
    report = await kb.index_documents(docs, progress=progress)
    seconds = now() - started
    await kb.close()
    embed_s = marks.get("embedded", started) - started
    return {
        "model": model.name,
        "corpus": corpus,
        "documents": len(docs),
        "chars_per_document": round(sum(len(d.title) + len(d.text) for d in docs) / len(docs)),
        "chunks": report.chunks_written,
        "seconds": round(seconds, 2),
        "embed_seconds": round(embed_s, 2),
        "write_and_index_seconds": round(seconds - embed_s, 2),
        "chunks_per_s": round(report.chunks_written / seconds, 2),
    }


def full_set_chunks(docs: list[Document]) -> int:
    settings = bench_settings(DATA_DIR)
    return sum(len(chunk_document(d, size=settings.chunk_size, overlap=settings.chunk_overlap)) for d in docs)


async def run(quick: bool) -> Result:
    rows: list[dict[str, Any]] = []
    sets = corpora(quick)
    full_set_chunks(sets["sample_kb"][0][:1])  # imports the text splitter outside the timings
    for kind, model_class in MODELS.items():
        log(f"loading {kind}")
        model = model_class(bench_settings(DATA_DIR).embeddings_threads)
        model.passages(["warm up"])  # one-time start-up costs are not ingest throughput
        for corpus, (docs, whole) in sets.items():
            row = await ingest_once(kind, model, corpus, docs)
            if corpus != "sample_kb":
                total = full_set_chunks(whole)
                row |= {"full_set_documents": len(whole), "full_set_chunks": total}
                row["full_set_minutes_extrapolated"] = round(total / row["chunks_per_s"] / 60, 1)
            rows.append(row)
    print_table(
        "ingest: KnowledgeBaseManager.index_documents, fresh data dir, no embedding cache",
        [
            "model",
            "corpus",
            "docs",
            "chars/doc",
            "chunks",
            "s",
            "embed s",
            "write+index s",
            "chunks/s",
            "full set, extrapolated",
        ],
        [
            [
                r["model"],
                r["corpus"],
                r["documents"],
                r["chars_per_document"],
                r["chunks"],
                r["seconds"],
                r["embed_seconds"],
                r["write_and_index_seconds"],
                r["chunks_per_s"],
                f"{r['full_set_minutes_extrapolated']} min ({r['full_set_chunks']} chunks)"
                if "full_set_chunks" in r
                else "-",
            ]
            for r in rows
        ],
    )
    return Result(NAME, quick, {"rows": rows})
