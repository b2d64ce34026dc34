"""How a source's declared keywords are heard in a question: one rule for every kind of source.

Text is compared NFKC-normalised and case-folded, with runs of spaces as one. Latin-script keywords
match whole words, a plural "s"/"es" allowed ("down" is not "download", "parcel" is "parcels");
others (Japanese) match anywhere, as Japanese has no spaces between words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class KeywordMatcher:
    """Finds any of `words` in a question (never matches when there are none)."""

    def __init__(self, words: Iterable[str]) -> None:
        parts = []
        for word in sorted({normalise(w) for w in words if w.strip()}, key=len, reverse=True):
            escaped = re.escape(word)
            if re.search(r"[a-z0-9]", word):
                escaped = rf"(?<![a-z0-9]){escaped}(?:e?s)?(?![a-z0-9])"
            parts.append(escaped)
        self._pattern = re.compile("|".join(parts)) if parts else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def heard_in(self, question: str) -> bool:
        return self._pattern is not None and self._pattern.search(normalise(question)) is not None
