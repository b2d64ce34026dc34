"""The registry of external sources: one place that knows every source the graph may consult."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from retrievers.language import Language
from retrievers.sources.base import Source, SourceContext


class SourceRegistry:
    """Sources by name, in registration order."""

    def __init__(self, sources: Iterable[Source[Any]] = ()) -> None:
        self._sources: dict[str, Source[Any]] = {}
        self._latency_ms: dict[str, float] = {}  # recent latency per source (moving average)
        for source in sources:
            self.register(source)

    def register(self, source: Source[Any]) -> None:
        if source.name in self._sources:
            raise ValueError(f"a source named {source.name!r} is already registered")
        self._sources[source.name] = source

    def get(self, name: str) -> Source[Any] | None:
        return self._sources.get(name)

    def __iter__(self) -> Iterator[Source[Any]]:
        return iter(self._sources.values())

    def __len__(self) -> int:
        return len(self._sources)

    @property
    def names(self) -> list[str]:
        return list(self._sources)

    def select(self, question: str, language: Language, earlier: list[str]) -> list[tuple[Source[Any], BaseModel]]:
        """The sources that apply to the question, with their parameters (rules, no LLM)."""
        chosen = []
        for source in self._sources.values():
            params = source.extract(question, language, earlier)
            if params is not None:
                chosen.append((source, params))
        return chosen

    def observe(self, name: str, elapsed_ms: float) -> None:
        """Record how long a source took, so slow sources can be announced before they answer."""
        previous = self._latency_ms.get(name)
        self._latency_ms[name] = elapsed_ms if previous is None else 0.7 * previous + 0.3 * elapsed_ms

    def expected_ms(self, name: str) -> float | None:
        """Recent latency of a source (None until it has been called)."""
        return self._latency_ms.get(name)

    def tool_schemas(self, caller: SourceContext) -> list[dict[str, Any]]:
        """The tools of the sources `caller` may use (`Source.offered_to`), for the LLM router."""
        return [schema for source in self._sources.values() if (schema := source.tool_schema_for(caller)) is not None]

    async def start(self) -> None:
        for source in self._sources.values():
            await source.start()

    async def aclose(self) -> None:
        for source in self._sources.values():
            await source.aclose()
