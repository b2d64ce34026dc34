"""`voicerag ingest PATH|URL... [--collection NAME] [--dry-run] [--nice N] [--workers N]`: validate, then upsert.

An ingest is a background job: it lowers its own CPU priority first (`--nice`, default INGEST_NICE=10),
so that a voice worker on the same machine keeps its latency while documents are parsed and embedded.

One writer at a time per knowledge base: an ingest that finds another one writing says so on stderr
and waits for it (a bounded wait: it then fails naming the lock). An ingest that finds a write cut
short (a killed ingest) repairs it first and says what it removed; this run adds it back.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voicerag.cli.common import err, open_knowledge_base, out, progress_bar, settings, waiting_note
from voicerag.cli.running import run_async
from voicerag.cli.terminal import safe
from voicerag.settings import Settings, load_settings

if TYPE_CHECKING:
    from retrievers.documents import Document


def ingest(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files (.jsonl .json .md .txt .pdf .html .docx .csv .xlsx) or folders, read recursively, "
            "or web pages and sitemaps (https://...; only the hosts named are fetched). "
            "CSV/XLSX: one document per row unless an ingest.yaml next to them says `unit: sheet` or `unit: file`.",
            show_default=False,
        ),
    ],
    collection: Annotated[str | None, typer.Option(help="Collection to write to (default: COLLECTION).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count; write nothing.")] = False,
    nice: Annotated[
        int | None,
        typer.Option(
            "--nice",
            min=0,
            max=19,
            help="Lower this ingest's CPU priority by N (0: normal priority; default: INGEST_NICE, 10).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Read and parse files in N processes (PDF, HTML, DOCX and spreadsheets are CPU-bound; "
            "default: INGEST_WORKERS, 1). Embedding is not split: local models already use every core.",
        ),
    ] = None,
) -> None:
    """Add or update documents in the knowledge base. Nothing is written if any input is bad."""
    loaded = settings()
    if collection:
        loaded = load_settings(collection=collection)  # validated: a bad name is a usage error (exit 2)
    lower_priority(loaded.ingest_nice if nice is None else nice)  # before parsing and embedding: both are CPU
    from retrievers.documents import LoadReport, load_documents
    from retrievers.web_pages import is_url

    urls = [path for path in paths if is_url(path)]
    files = [Path(path) for path in paths if not is_url(path)]
    # raises UserInputError before anything is written
    readers = loaded.ingest_workers if workers is None else workers
    with progress_bar() as reading:
        report = load_documents(files, readers, reading) if files or not urls else LoadReport([], [], [])
    if report.skipped:
        err.print(
            f"skipped {len(report.skipped)} file(s) of unsupported type, e.g. {safe(str(report.skipped[0]))}",
            markup=False,  # a path may hold [brackets]
        )
    run_async(_ingest(loaded, report.documents, urls, files=len(report.files), dry_run=dry_run))


async def _ingest(loaded: Settings, documents: list[Document], urls: list[str], *, files: int, dry_run: bool) -> None:
    if urls:
        documents = documents + await _web_documents(loaded, urls, documents)
    if dry_run:
        pages = f" and {len(urls)} URL(s)" if urls else ""
        out.print(f"{len(documents)} documents in {files} file(s){pages} are valid; nothing written (--dry-run)")
        return
    async with open_knowledge_base(loaded) as kb:
        if kb.writer_lock.note:
            err.print(kb.writer_lock.note, markup=False)
        with progress_bar() as progress:
            result = await kb.index_documents(
                documents, prune_sources=True, progress=progress, on_wait=waiting_note(kb.collection_name)
            )
        chunks = await kb.count_chunks()
    if result.recovered:
        err.print(
            f"repaired an earlier write that was cut short: removed {result.repaired} incomplete document(s) "
            f"and {result.strays_deleted} stray chunk(s) (those of this input are counted as added)",
            markup=False,
        )
    out.print(
        f"{result.added} added, {result.updated} updated, {result.unchanged} unchanged, {result.removed} removed; "
        f"{result.chunks_written} chunks written, {result.chunks_deleted} deleted; "
        f"{chunks} chunks in {kb.collection_name!r}; {result.seconds:.1f} s"
    )


def lower_priority(steps: int) -> None:
    """Add `steps` to the niceness of every thread of this process. On Linux each thread has its own
    (os.nice() would lower only the calling one, and imports already started thread pools); threads
    started later inherit it. Never fails an ingest: a priority that cannot be changed stays."""
    if steps <= 0:
        return
    tasks = Path("/proc/self/task")
    if not tasks.is_dir() or not hasattr(os, "setpriority"):
        with contextlib.suppress(AttributeError, OSError):  # no os.nice on Windows
            os.nice(steps)
        return
    for task in tasks.iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that just ended
            tid = int(task.name)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))


async def _web_documents(loaded: Settings, urls: list[str], from_files: list[Document]) -> list[Document]:
    """The pages named (or listed by a sitemap named), fetched through the product's HTTP layer."""
    from retrievers.errors import UserInputError
    from retrievers.http.client import ResilientHttp
    from retrievers.web_pages import allowed_hosts, web_documents

    http = ResilientHttp(
        allowed_hosts=allowed_hosts(urls), rate_limit=loaded.http_rate_limit, insecure_hosts=loaded.http_insecure_hosts
    )
    try:
        with progress_bar() as progress:
            pages = await web_documents(urls, http, progress=lambda done, total: progress("pages", done, total))
    finally:
        await http.aclose()
    taken = {doc.id for doc in from_files}
    if clash := next((doc.id for doc in pages if doc.id in taken), None):
        raise UserInputError(f"duplicate id {clash!r}: a file and a web page both have it")
    return pages
