"""How the values of an enum parameter (a place, a product code) are named and found in text.

Names are compared NFKC-normalised and case-folded, without spaces, hyphens and middle dots, so
"ab50", "AB-50" and "ＡＢ－５０" are one name; the same folding lets the generated parameter model
accept the spellings an LLM may use (`params.py`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from retrievers.sources.database.spec import EnumParam

_SEPARATORS = r"[\s\-‐‑‒–—―−・_]"


def fold(value: str) -> str:
    """How names are compared: NFKC, case-folded, without spaces, hyphens and middle dots."""
    return re.sub(_SEPARATORS + "+", "", unicodedata.normalize("NFKC", value).casefold())


def fold_text(text: str) -> str:
    """A question as it is searched: NFKC-normalised and case-folded (separators kept)."""
    return unicodedata.normalize("NFKC", text).casefold()


def _terms_pattern(terms: Mapping[str, str]) -> re.Pattern[str] | None:
    """One regex finding any of `terms` in folded text, spaces and hyphens optional. Longest first,
    so "Air Pro" wins over "Air"; Latin edges must not touch other letters or digits."""
    pieces = []
    for term in sorted(terms, key=lambda t: len(fold(t)), reverse=True):
        folded = fold_text(term)
        tokens = [re.escape(token) for token in re.split(_SEPARATORS + "+", folded) if token]
        if not tokens:
            continue
        body = (_SEPARATORS + "*").join(tokens)
        if re.match(r"[a-z0-9]", folded):
            body = r"(?<![a-z0-9])" + body
        if re.search(r"[a-z0-9]$", folded):
            body += r"(?![a-z0-9])"
        pieces.append(body)
    return re.compile("|".join(pieces)) if pieces else None


class Vocabulary:
    """Finds the values of one enum parameter, by their own names and their aliases."""

    def __init__(self, spec: EnumParam) -> None:
        terms = {value: value for value in spec.values} | dict(spec.aliases)
        self._by_fold = {fold(term): value for term, value in terms.items()}
        self._pattern = _terms_pattern(terms)

    def find(self, folded_text: str) -> tuple[list[str], str]:
        """The distinct values mentioned (in order) and the text with their mentions blanked."""
        if self._pattern is None:
            return [], folded_text
        found: list[str] = []
        for match in self._pattern.finditer(folded_text):
            value = self._by_fold.get(fold(match.group(0)))
            if value is not None and value not in found:
                found.append(value)
        return found, self._pattern.sub(" ", folded_text)
