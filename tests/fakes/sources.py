"""A source of the real `Source` contract with controlled timing and failures, for graph and
session tests (the real sources and the HTTP stack have tests of their own)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel

from retrievers.language import Language
from retrievers.sources.base import Fetched, Source, SourceContext
from retrievers.turn.failures import FetchError


class Keyword(BaseModel):
    word: str


@dataclass
class TimedSource(Source[Keyword]):
    """Answers after `delay_s` when the question contains its keyword. Failures: "fetch-error"
    (the API fails), "crash" (a bug in `fetch`), "extract-crash" (a bug in `extract`, which runs
    inside route_query: the graph itself fails). Records when it started, was cancelled, and who asked."""

    name = "timed"
    description = "a test source"
    labels = {"en": "the test source", "ja": "テスト用の情報源"}  # noqa: RUF012
    examples = {"en": [], "ja": []}  # noqa: RUF012
    params_model = Keyword

    keyword: str = "alpha"
    delay_s: float = 0.0
    failure: str | None = None
    timeout_s: float = 5.0
    started: list[float] = field(default_factory=list)  # time.monotonic()
    cancelled: list[float] = field(default_factory=list)
    callers: list[SourceContext] = field(default_factory=list)

    def extract(self, question: str, language: Language, earlier: list[str]) -> Keyword | None:
        if self.keyword not in question:
            return None
        if self.failure == "extract-crash":
            raise RuntimeError("bug in the source's parameter extraction")
        return Keyword(word=self.keyword)

    async def fetch(self, params: Keyword, ctx: SourceContext) -> Fetched:
        self.started.append(time.monotonic())
        self.callers.append(ctx)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled.append(time.monotonic())
            raise
        if self.failure == "fetch-error":
            raise FetchError("server_error", "503 three times")
        if self.failure == "crash":
            raise RuntimeError("bug in the source")
        return Fetched(data={"word": params.word}, summary=f"The {params.word} value is 42.")


def named(name: str, **fields: Any) -> TimedSource:
    """A TimedSource with its own name (sources are named by class), answering to that keyword."""
    cls = type(f"Source_{name}", (TimedSource,), {"name": name, "__annotations__": {}})
    make: Any = dataclass(cls)
    return cast(TimedSource, make(keyword=name, **fields))
