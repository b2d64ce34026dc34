"""The text recognisers read, with the way back to the original's offsets.

Recognisers match NFKC text (full-width digits, ＠, －, ideographic spaces become ASCII), with kanji
digits read as digits when two or more follow each other (〇九〇 → 090: Japanese speech-to-text
writes numbers that way at times). What they find is mapped back, so the original characters,
whatever their width, are what gets masked.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_KANJI_DIGITS = str.maketrans("〇一二三四五六七八九", "0123456789")
_KANJI_DIGIT_RUN = re.compile("[〇一二三四五六七八九]{2,}")  # not one alone: 六本木, 三菱, 一丁目 are names


@dataclass(frozen=True, slots=True)
class View:
    text: str
    origin: tuple[int, ...] | None = None  # origin[i]: the original index of text[i]; None: the same

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


# Characters NFKC leaves as they are, the bulk of what a turn says: copied a run at a time.
_CHANGING = re.compile(
    "[^\u0020-\u007e\u3001\u3002\u3005\u300c-\u300f\u301c\u3041-\u3096\u30a1-\u30fa\u30fc\u4e00-\u9fff]"
)


@lru_cache(maxsize=4096)
def _nfkc(char: str) -> str:
    return unicodedata.normalize("NFKC", char)


def view_of(text: str) -> View:
    if text.isascii():
        return View(text)
    text = _KANJI_DIGIT_RUN.sub(lambda m: m.group().translate(_KANJI_DIGITS), text)  # one for one
    if unicodedata.is_normalized("NFKC", text):
        return View(text)
    # Character by character (not the whole string at once) so that every output character knows
    # its source; NFKC may turn one character into several (㈱ → (株)), never into none.
    parts: list[str] = []
    origin: list[int] = []
    at = 0
    for match in _CHANGING.finditer(text):
        index = match.start()
        parts.append(text[at:index])
        origin.extend(range(at, index))
        normal = _nfkc(match.group())
        parts.append(normal)
        origin.extend([index] * len(normal))
        at = index + 1
    parts.append(text[at:])
    origin.extend(range(at, len(text)))
    return View("".join(parts), tuple(origin))
