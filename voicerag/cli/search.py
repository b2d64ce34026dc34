"""`voicerag search "QUERY" [--top-k N] [--category C] [--json] [--user ID] [--roles R1,R2] [--tenant T]`
and `--queries FILE --json`.

The search runs as the caller the flags describe; by default the least-privileged one (no roles, no
tenant), who sees public documents only (`retrievers/access.py`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from retrievers.access import Viewer
from retrievers.documents import CATEGORIES
from retrievers.errors import UserInputError
from voicerag.cli.common import open_knowledge_base, out, settings
from voicerag.cli.running import run_async
from voicerag.cli.terminal import json_text, safe

if TYPE_CHECKING:
    from retrievers.knowledge_base import KnowledgeBaseManager


def search(
    query: Annotated[str | None, typer.Argument(help="What to search for.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Documents to return.")] = 5,
    category: Annotated[str | None, typer.Option(help="Only documents of this category.")] = None,
    queries: Annotated[Path | None, typer.Option("--queries", help="A file with one query a line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query.")] = False,
    user: Annotated[str, typer.Option("--user", help="The caller's id (default: anonymous).")] = "anonymous",
    roles: Annotated[str, typer.Option("--roles", help="Comma-separated roles of the caller.")] = "",
    tenant: Annotated[str | None, typer.Option("--tenant", help="The caller's tenant (organisation).")] = None,
) -> None:
    """Hybrid search of the knowledge base (no answer generated)."""
    if (query is None) == (queries is None):
        raise UserInputError("give either QUERY or --queries FILE")
    if category is not None and category not in CATEGORIES:
        raise UserInputError(f"--category: expected one of {', '.join(CATEGORIES)}, got {category!r}")
    if queries is not None:
        if not queries.is_file():
            raise UserInputError(f"--queries: {queries} is not a file")
        lines = [line.strip() for line in queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        lines = [query or ""]
    if not all(lines):
        raise UserInputError("QUERY: is empty")
    viewer = Viewer.of(roles, tenant)
    run_async(_search(lines, top_k, category, as_json or queries is not None, viewer))


async def _search(lines: list[str], top_k: int, category: str | None, as_json: bool, viewer: Viewer) -> None:
    async with open_knowledge_base(settings()) as kb:
        for line in lines:
            result = await _one(kb, line, top_k, category, viewer)
            if as_json:
                print(json_text(result), flush=True)
            else:
                _print_table(result)


async def _one(
    kb: KnowledgeBaseManager, query: str, top_k: int, category: str | None, viewer: Viewer
) -> dict[str, Any]:
    started = time.perf_counter()
    hits = await kb.search(query, top_k=top_k, category=category, viewer=viewer)
    return {
        "query": query,
        "results": [
            {"doc_id": h["doc_id"], "title": h["title"], "score": h["score"]}
            | ({"pages": h["metadata"]["pages"]} if "pages" in h["metadata"] else {})  # a PDF's passage
            for h in hits
        ],
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def _print_table(result: dict[str, Any]) -> None:
    table = Table(title=Text(f"{safe(result['query'])}  ({result['elapsed_ms']} ms)"))
    table.add_column("#", justify="right")
    table.add_column("doc_id")
    table.add_column("title")
    table.add_column("score", justify="right")
    paged = any("pages" in hit for hit in result["results"])
    if paged:
        table.add_column("pages", justify="right")
    for rank, hit in enumerate(result["results"], start=1):
        cells: list[str | Text] = [
            str(rank),
            Text(safe(hit["doc_id"])),
            Text(safe(hit["title"])),
            f"{hit['score']:.3f}",
        ]
        table.add_row(*cells, *([str(hit.get("pages", ""))] if paged else []))
    if not result["results"]:
        table.caption = "no documents found"
    out.print(table)
