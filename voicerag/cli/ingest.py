"""`voicerag ingest PATH... [--collection NAME] [--dry-run]`: validate everything, then upsert."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voicerag.cli.common import err, open_knowledge_base, out, progress_bar, settings
from voicerag.settings import Settings, load_settings

if TYPE_CHECKING:
    from retrievers.documents import Document


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files (.jsonl .json .md .txt) or folders, read recursively.")],
    collection: Annotated[str | None, typer.Option(help="Collection to write to (default: COLLECTION).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count; write nothing.")] = False,
) -> None:
    """Add or update documents in the knowledge base. Nothing is written if any input is bad."""
    loaded = settings()
    if collection:
        loaded = load_settings(collection=collection)  # validated: a bad name is a usage error (exit 2)
    from retrievers.documents import load_documents

    report = load_documents(paths)  # raises UserInputError before anything is written
    if report.skipped:
        err.print(
            f"skipped {len(report.skipped)} file(s) of unsupported type, e.g. {report.skipped[0]}",
            markup=False,  # a path may hold [brackets]
        )
    if dry_run:
        out.print(
            f"{len(report.documents)} documents in {len(report.files)} file(s) are valid; nothing written (--dry-run)"
        )
        return
    asyncio.run(_ingest(loaded, report.documents))


async def _ingest(loaded: Settings, documents: list[Document]) -> None:
    async with open_knowledge_base(loaded) as kb:
        with progress_bar() as progress:
            result = await kb.index_documents(documents, prune_sources=True, progress=progress)
        chunks = await kb.count_chunks()
    out.print(
        f"{result.added} added, {result.updated} updated, {result.unchanged} unchanged, {result.removed} removed; "
        f"{result.chunks_written} chunks written, {result.chunks_deleted} deleted; "
        f"{chunks} chunks in {kb.collection_name!r}; {result.seconds:.1f} s"
    )
