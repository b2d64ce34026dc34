"""Recent search results, per knowledge-base version and viewer.

A repeated question (LiveKit reruns a turn after a preemptive start) costs nothing. The version
is part of the key, so any write, in this process or another, makes every cached result stale
at once: nothing is ever invalidated by hand. So is the viewer's visibility (roles and tenant):
a result is never served to a caller who may see other documents than the one it was found for.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from retrievers.access import Viewer
from retrievers.knowledge_base.hits import SearchHit


class ResultCache:
    """Least recently used results, at most `size` of them (0: nothing is kept)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._results: OrderedDict[str, list[SearchHit]] = OrderedDict()

    @staticmethod
    def key(
        query: str,
        top_k: int,
        category: str | None,
        filters: Mapping[str, Any] | None,
        version: str | None,
        viewer: Viewer,
    ) -> str:
        return repr((query, top_k, category, sorted((filters or {}).items()), version, viewer.key))

    def get(self, key: str) -> list[SearchHit] | None:
        if key not in self._results:
            return None
        self._results.move_to_end(key)
        return _copies(self._results[key])  # callers may change theirs

    def put(self, key: str, hits: list[SearchHit]) -> None:
        if not self.size:
            return
        self._results[key] = _copies(hits)
        if len(self._results) > self.size:
            self._results.popitem(last=False)


def _copies(hits: list[SearchHit]) -> list[SearchHit]:
    return [SearchHit(**hit) for hit in hits]
