"""`voicerag eval DATASET_DIR [--top-k 10] [--json]`: retrieval quality and latency on a data set."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from retrievers.errors import UserInputError
from voicerag.cli.common import err, open_knowledge_base, out, progress_bar, settings
from voicerag.cli.running import run_async
from voicerag.cli.terminal import json_text, safe
from voicerag.settings import Settings


def evaluate(
    dataset_dir: Annotated[Path, typer.Argument(help="Folder with corpus.jsonl and queries.jsonl.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Documents retrieved per query.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
) -> None:
    """Ingest the set's corpus into a collection of its own (reused when unchanged), run its
    queries and print recall@1/5/10, MRR@10, nDCG@10 and query latency."""
    from retrievers.documents import load_documents
    from retrievers.evaluation import load_queries

    if not dataset_dir.is_dir():
        raise UserInputError(f"DATASET_DIR: {dataset_dir} is not a folder")
    loaded = settings()
    queries = load_queries(dataset_dir / "queries.jsonl")
    corpus = dataset_dir / "corpus.jsonl"
    if not corpus.exists():
        raise UserInputError(f"{corpus}: no such file")
    documents = load_documents([corpus]).documents
    metrics = run_async(_evaluate(loaded, dataset_dir, documents, queries, top_k))
    if as_json:
        print(json_text(metrics))
        return
    table = Table(title=Text(safe(f"{dataset_dir} ({metrics['queries']} queries, {metrics['embeddings']})")))
    names = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "latency_ms_p50", "latency_ms_p95")
    for name in names:
        table.add_column(name, justify="right")
    table.add_row(*(str(metrics[name]) for name in names))
    out.print(table)


def collection_for(dataset_dir: Path, model_name: str) -> str:
    """One collection per data set and embedding model, e.g. `eval-ja-jsquad_dev-e5-small-q4`."""
    parts = dataset_dir.resolve().parts[-2:]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(("eval", *parts, model_name)))
    return name.strip("-._")[:200]


async def _evaluate(
    loaded: Settings, dataset_dir: Path, documents: list[Any], queries: list[Any], top_k: int
) -> dict[str, Any]:
    from retrievers.evaluation import percentiles, score_rankings

    async with open_knowledge_base(loaded, lambda model: collection_for(dataset_dir, model)) as kb:
        with progress_bar() as progress:
            report = await kb.index_documents(documents, prune_sources=True, progress=progress)
        if report.chunks_written:
            done = report.added + report.updated
            err.print(f"ingested {done} documents ({report.chunks_written} chunks) in {report.seconds:.0f} s")
        await kb.search(queries[0].text, top_k=top_k)  # warm up: index load, first query
        rankings: list[list[str]] = []
        latencies: list[float] = []
        with progress_bar() as progress:
            for number, query in enumerate(queries, start=1):
                started = time.perf_counter()
                hits = await kb.search(query.text, top_k=max(top_k, 10))
                latencies.append((time.perf_counter() - started) * 1000)
                rankings.append([hit["doc_id"] for hit in hits][:top_k])
                progress("queries", number, len(queries))
    return {
        **score_rankings(rankings, queries),
        **percentiles(latencies),
        "queries": len(queries),
        "embeddings": kb.embeddings.name,
        "collection": kb.collection_name,
    }
