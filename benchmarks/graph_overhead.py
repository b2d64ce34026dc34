"""graph_overhead: what a turn costs before `generate` starts (route + retrieve + grade).

Runs the compiled graph (the one every front door runs; no chat model, so answers are extractive)
on real questions after `warm_up` and a few warm-up turns, and reports p50/p95 of:
`timings_ms["pre_generation"]` (measured by the graph from route's start to generate's start),
the wall clock from `ainvoke` to the start of `generate` (seen by a callback handler), each node's
own time, and the query embedding alone (`model.queries([q])`, timed separately on the same
questions). Knowledge bases: the sample KB, and jsquad_dev (2k documents; the `voicerag eval`
collection in .voicerag is reused when it exists).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

from benchmarks.common import (
    DATA_DIR,
    EVAL_SETS,
    PROJECT_DATA_DIR,
    SAMPLE_KB,
    Progress,
    Result,
    bench_settings,
    eval_documents,
    eval_questions,
    interleave,
    log,
    ms_since,
    now,
    print_table,
    seed_embedding_cache,
    stats,
)
from graph.builder import SPEAKING_NODE, VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.documents import Document, load_documents
from retrievers.knowledge_base import make_chroma_client
from voicerag.cli.evaluate import collection_for
from voicerag.services import build_services

NAME = "graph_overhead"
SAMPLE_QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "sample_kb_questions.jsonl"
METRICS = {  # key → what the table calls it
    "pre_generation": 'timings_ms["pre_generation"]',
    "wall_to_generate": "ainvoke → generate starts",
    "route": "  route",
    "retrieve": "  retrieve",
    "grade": "  grade",
    "query_embedding": "query embedding alone",
    "generate": "generate (extractive)",
    "total": "ainvoke total",
}


class GenerateStart(BaseCallbackHandler):
    """Notes when the `generate` node starts (inline: no executor hop between event and clock)."""

    run_inline = True

    def __init__(self) -> None:
        self.at: float | None = None

    def on_chain_start(
        self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID, metadata: Any = None, **kwargs: Any
    ) -> None:
        if self.at is None and (metadata or {}).get("langgraph_node") == SPEAKING_NODE:
            self.at = now()


async def knowledge_base(name: str, quick: bool) -> Services:
    """Services over the named knowledge base, ingested (into benchmarks/.data) when needed."""
    data_dir = DATA_DIR / NAME
    seed_embedding_cache(data_dir / "embedding-cache.sqlite")  # ingest once, fast
    docs: list[Document]
    if name == "sample_kb":
        collection, docs = "bench-sample-kb", load_documents([SAMPLE_KB]).documents
    elif quick:
        collection, docs = "bench-jsquad_dev-200", eval_documents("jsquad_dev")[:200]
    else:
        collection, docs = collection_for(EVAL_SETS["jsquad_dev"], "e5-small-q4"), eval_documents("jsquad_dev")
        if (PROJECT_DATA_DIR / "chroma").exists():
            existing = {c.name for c in make_chroma_client(PROJECT_DATA_DIR, None).list_collections()}
            if collection in existing:
                log(f"reusing {collection} in {PROJECT_DATA_DIR}")
                return build_services(bench_settings(PROJECT_DATA_DIR, embeddings="e5", collection=collection))
    services = build_services(bench_settings(data_dir, embeddings="e5", collection=collection))
    bars: dict[str, Progress] = {}
    report = await services.knowledge_base.index_documents(
        docs,
        prune_sources=True,
        progress=lambda stage, done, total: bars.setdefault(stage, Progress(stage, total))(done),
    )
    if report.chunks_written:
        log(f"ingested {collection}: {report.chunks_written} chunks in {report.seconds:.0f} s")
    return services


def questions(name: str, count: int, warmup: int) -> tuple[list[str], list[str]]:
    """(measured, warm-up). The sample KB has 36 questions of its own: eval questions fill up."""
    mixed = interleave(eval_questions("jsquad_dev"), eval_questions("squad_dev"))
    if name == "jsquad_dev":
        own = eval_questions("jsquad_dev")
        return own[warmup : warmup + count], own[:warmup]
    lines = SAMPLE_QUESTIONS.read_text(encoding="utf-8").splitlines()
    own = [json.loads(line)["question"] for line in lines if line.strip()]
    return (own + mixed[warmup:])[:count], mixed[:warmup]


async def turn(graph: VoiceGraph, question: str) -> dict[str, Any]:
    """One measured turn: the final state's timings, plus wall clock to generate and in total."""
    seen = GenerateStart()
    started = now()
    state = await graph.ainvoke({"messages": [HumanMessage(question)]}, context=Context(), config={"callbacks": [seen]})
    total = ms_since(started)
    timings = state["timings_ms"]
    return {
        **{key: timings.get(key) for key in ("pre_generation", "route", "retrieve", "grade", "generate")},
        "wall_to_generate": (seen.at - started) * 1000 if seen.at else None,
        "total": total,
        "kind": state["route"]["kind"],
        "answered_from_documents": bool(state.get("graded")),
    }


async def measure(name: str, quick: bool) -> dict[str, Any]:
    asked, warmup = questions(name, *((20, 5) if quick else (200, 20)))
    services = await knowledge_base(name, quick)
    assert services.chat_model is None, "graph_overhead measures the extractive path"
    services.knowledge_base.result_cache_size = 0  # measure real searches, not the result cache
    try:
        graph = build_graph(services)
        await warm_up(services)
        for question in warmup:
            await turn(graph, question)
        progress = Progress(f"{name} turns", len(asked))
        turns = []
        for number, question in enumerate(asked, start=1):
            turns.append(await turn(graph, question))
            progress(number)
        for record, question in zip(turns, asked, strict=True):  # the same questions, embedding only
            started = now()
            services.embeddings.model.queries([question])
            record["query_embedding"] = ms_since(started)
        lookups = [t for t in turns if t["kind"] == "lookup"]
        return {
            "knowledge_base": name,
            "collection": services.knowledge_base.collection_name,
            "chunks": await services.knowledge_base.count_chunks(),
            "questions": len(asked),
            "lookups": len(lookups),
            "answered_from_documents": sum(t["answered_from_documents"] for t in turns),
            # Only lookups go through retrieve and grade: small talk would flatter the figures.
            **{metric: stats([t[metric] for t in lookups if t[metric] is not None]) for metric in METRICS},
        }
    finally:
        await services.aclose()


async def run(quick: bool) -> Result:
    sets = [await measure(name, quick) for name in ("sample_kb", "jsquad_dev")]
    headers = ["ms (lookup turns)"]
    for s in sets:
        headers += [f"{s['knowledge_base']} p50", f"{s['knowledge_base']} p95"]
    rows = [[label] + [s[metric][p] for s in sets for p in ("p50", "p95")] for metric, label in METRICS.items()]
    print_table(
        "graph_overhead: compiled graph, extractive (no chat model), e5; "
        + "; ".join(
            f"{s['knowledge_base']}: {s['chunks']} chunks, {s['lookups']}/{s['questions']} lookups, "
            f"{s['answered_from_documents']} answered from documents"
            for s in sets
        ),
        headers,
        rows,
    )
    return Result(NAME, quick, {"sets": sets})
