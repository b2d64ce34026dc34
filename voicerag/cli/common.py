"""What every command shares: settings, services, output consoles, progress, async running."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from retrievers.errors import UserInputError
from voicerag.logs import configure_logging
from voicerag.settings import Settings, load_settings

if TYPE_CHECKING:
    from graph.context import Context
    from graph.services import Services
    from graph.tracing import Tracer
    from graph.turn_record import Sink
    from retrievers.knowledge_base import KnowledgeBaseManager

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def settings() -> Settings:
    """The settings of this command; logging is set up from them."""
    loaded = load_settings()
    configure_logging(loaded.log_level, loaded.log_format)
    return loaded


def caller_context(*, user: str, roles: str, tenant: str | None, lang: str | None, session_id: str) -> Context:
    """The Context of a text front door's caller, from its options (bad values named by option)."""
    from graph.context import Context

    if not user.strip():
        raise UserInputError("--user: is empty")
    if lang not in (None, "ja", "en"):
        raise UserInputError(f"--lang: expected ja or en, got {lang!r}")
    return Context(
        user_id=user.strip(),
        roles=[r.strip() for r in roles.split(",") if r.strip()],
        tenant=(tenant or "").strip() or None,
        language=lang,  # type: ignore[arg-type]
        turn_id=uuid.uuid4().hex,
        session_id=session_id,
    )


@asynccontextmanager
async def open_services(loaded: Settings) -> AsyncIterator[Services]:
    """Services for one command, closed when it ends."""
    from voicerag.services import build_services  # heavy: only for commands that run the graph

    services = build_services(loaded)
    try:
        yield services
    finally:
        await services.aclose()


@dataclass
class TurnOutputs:
    """Where a text front door's turns go: record sinks, and the tracers watching each run."""

    sinks: list[Sink]
    tracers: list[Tracer]


@asynccontextmanager
async def turn_outputs(loaded: Settings, *, serves_metrics: bool) -> AsyncIterator[TurnOutputs]:
    """The log line, the audit log, the metrics and the tracers of a text front door. With
    METRICS_PORT, a command that `serves_metrics` (chat) serves `/metrics` while it runs; one that
    does not (ask) counts its turn only in a shared PROMETHEUS_MULTIPROC_DIR (`voicerag/metrics`).
    When the command ends the audit writer is flushed and closed within `CLOSE_TIMEOUT_S` whatever
    the database does (what was lost is logged as a count), and the tracers within theirs,
    whatever their backends do."""
    from graph.turn_record import log_turn
    from voicerag import metrics
    from voicerag.audit import open_audit_writer
    from voicerag.audit.turns import audit_sink
    from voicerag.audit.wiring import CLOSE_TIMEOUT_S
    from voicerag.tracing import open_tracing

    writer = open_audit_writer(loaded)  # a bad AUDIT_DATABASE_URL stops the command here, named
    tracing = open_tracing(loaded)
    if loaded.metrics_port and serves_metrics:
        metrics.serve(loaded.metrics_port)
    elif loaded.metrics_port and os.environ.get(metrics.MULTIPROC_ENV):
        metrics.enable(loaded.metrics_port)
    try:
        yield TurnOutputs([log_turn, audit_sink(writer), *metrics.turn_sinks()], tracing.tracers)
    finally:
        try:
            await writer.aclose(CLOSE_TIMEOUT_S)
        finally:
            await asyncio.to_thread(tracing.close)


@asynccontextmanager
async def open_knowledge_base(
    loaded: Settings, collection: Callable[[str], str] | None = None
) -> AsyncIterator[KnowledgeBaseManager]:
    """The knowledge base alone (no graph, no sources), closed with its model when the command ends.
    `collection` maps the embedding model's name to a collection (default: COLLECTION)."""
    from voicerag.services import build_embeddings, build_knowledge_base

    embeddings = build_embeddings(loaded)
    kb = build_knowledge_base(loaded, embeddings, collection(embeddings.name) if collection else None)
    try:
        yield kb
    finally:
        await kb.close()
        embeddings.close()


def waiting_note(collection: str) -> Callable[[str], None]:
    """What a writer says on stderr (terminal or not) when it waits for another writer's lock."""

    def note(lock: str) -> None:
        err.print(f"waiting for another writer of {collection!r}… (lock: {lock})", markup=False)

    return note


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A (stage, done, total) callback drawing a bar on a terminal; silent when stderr is piped."""
    if not (enabled and err.is_terminal):
        yield lambda stage, done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, object] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

        yield update
