"""What a knowledge-base search returns: one `SearchHit` per document.

The one type for a found document, everywhere: the knowledge base returns it, the graph state
carries it (`documents`, `graded`), `voicerag ask --json` and Studio show it, and the LangChain
adapter turns it into a LangChain `Document` (`langchain_retriever.py` in this package). A TypedDict,
so it is plain JSON in the graph state, in checkpoints and in traces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it on Python < 3.12

from retrievers.access import Viewer


class SearchHit(TypedDict):
    """A document found by search: its best chunk (with neighbours), and the scores that ranked it."""

    doc_id: str
    title: str
    text: str
    score: float  # fused score (z-units): the ranking
    dense: float | None  # cosine of the best chunk; None when dense search did not return it
    keyword: float | None  # BM25 of the best chunk; None when keyword search did not return it
    coverage: float  # idf-weighted share of the query's words found in the title and passage
    category: str
    lang: str
    source: str  # the file it was ingested from
    chunk_index: int  # of the best chunk
    metadata: dict[str, Any]  # the document's own metadata (front matter, JSON fields)


@runtime_checkable
class Searchable(Protocol):
    """Anything that searches like the knowledge base (what the LangChain adapter needs)."""

    async def search(
        self,
        query: str,
        top_k: int = 5,
        category: str | None = None,
        filters: Mapping[str, Any] | None = None,
        *,
        viewer: Viewer = ...,
    ) -> list[SearchHit]: ...
