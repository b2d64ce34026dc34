"""The runs a node reports inside its own, for whatever watches the turn (LangSmith, OpenTelemetry,
the turn observer): the knowledge-base search as a `retriever` run whose output is LangChain
`Document`s, and each external source call as a `tool` run named after the source.

They are plain LangChain callback events (what `BaseRetriever.ainvoke` and `BaseTool.arun` emit), so
every tracer sees them the same way, through the node's callbacks: LangChain's LangSmith tracer
records a retriever run's `{"documents": [...]}` as documents, and a tool run's output as the tool's.
With no handler attached the cost is a callback manager with nothing to call.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.documents import Document
from langgraph.config import get_config

from retrievers.knowledge_base.hits import SearchHit
from retrievers.sources.base import SourceResult

RETRIEVER_NAME = "knowledge_base"


def _callbacks() -> AsyncCallbackManager:
    """The running node's callback manager (its runs become children of the node's run)."""
    try:
        config = get_config()
    except RuntimeError:  # called outside a graph run (a unit test of the node's helper)
        return AsyncCallbackManager(handlers=[])
    return AsyncCallbackManager.configure(
        inheritable_callbacks=config.get("callbacks"),
        inheritable_tags=config.get("tags"),
        inheritable_metadata=config.get("metadata"),
    )


def as_document(hit: SearchHit) -> Document:
    """A found document as LangChain shows one: text, and id, title, score in its metadata."""
    metadata = {"id": hit["doc_id"], "title": hit["title"], "score": hit["score"]}
    metadata |= {"lang": hit["lang"], "category": hit["category"], "source": hit["source"]}
    return Document(id=hit["doc_id"], page_content=hit["text"], metadata=metadata)


async def traced_search(query: str, search: Awaitable[list[SearchHit]]) -> list[SearchHit]:
    """`search`, reported as the turn's retriever run (its error, or cancellation, ends the run too)."""
    run = await _callbacks().on_retriever_start({"name": RETRIEVER_NAME}, query, name=RETRIEVER_NAME)
    try:
        found = await search
    except BaseException as exc:
        await run.on_retriever_error(exc)
        raise
    await run.on_retriever_end([as_document(hit) for hit in found])
    return found


async def traced_source_call(source: str, params: dict[str, Any], call: Awaitable[SourceResult]) -> SourceResult:
    """One source call, reported as a `tool` run named after the source: its arguments in, its
    outcome (status, elapsed time, cache hit, summary, data) out. A source reports failures as a
    result, so the run ends with an error only when the call is cancelled."""
    run = await _callbacks().on_tool_start(
        {"name": source}, json.dumps(params, ensure_ascii=False, default=str), name=source, inputs=params
    )
    try:
        result = await call
    except BaseException as exc:
        await run.on_tool_error(exc)
        raise
    await run.on_tool_end(dict(result), name=source)
    return result
