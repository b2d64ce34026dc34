"""Declared sources that are switched off (a variable they need is not set), still recognised.

A caller asking "where is my parcel 1234-5678-9012?" while the carrier's API key is missing must
hear that parcel tracking is not available right now — not "I couldn't find that". Such a source
keeps its name, labels and keywords from the declaration; `run_source` never calls it and reports
it as unavailable, which the answer says.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from retrievers.language import Language
from retrievers.sources.base import Fetched, Source, SourceContext
from retrievers.sources.keywords import KeywordMatcher


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UnavailableSource(Source[NoParams]):
    """A declaration that cannot run here; `why` says which variable is missing."""

    params_model = NoParams

    def __init__(self, entry: dict[str, Any], why: str) -> None:
        super().__init__()
        self.name = str(entry.get("name", ""))
        self.unavailable = why
        self.description = str(entry.get("description", self.name))
        self.labels = _both_languages(entry.get("labels"), self.name)
        self.examples = {}
        keywords = entry.get("keywords")
        self._keywords = KeywordMatcher(
            str(word)
            for words in (keywords.values() if isinstance(keywords, dict) else [])
            if isinstance(words, list)
            for word in words
        )

    def extract(self, question: str, language: Language, earlier: list[str]) -> NoParams | None:
        return NoParams() if self._keywords.heard_in(question) else None

    async def fetch(self, params: NoParams, ctx: SourceContext) -> Fetched:  # pragma: no cover - never called
        raise RuntimeError(f"{self.name} is unavailable: {self.unavailable}")


def _both_languages(labels: Any, fallback: str) -> dict[Language, str]:
    found = labels if isinstance(labels, dict) else {}
    return {"en": str(found.get("en") or fallback), "ja": str(found.get("ja") or found.get("en") or fallback)}
