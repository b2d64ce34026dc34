"""E-mail addresses, written (taro@example.co.jp, ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ) or as speech-to-text
spells them out ("taro at example dot com", "taro アットマーク example ドット com")."""

from __future__ import annotations

import re
from collections.abc import Iterator

from retrievers.masking.context import alternation
from retrievers.masking.findings import Finding, Kind

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_WRITTEN = re.compile(
    rf"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{{0,63}} ?@ ?(?:{_LABEL}\.)+[A-Za-z]{{2,24}}(?![A-Za-z0-9-])"
)
_TLDS = "com|net|org|info|biz|io|me|app|dev|edu|gov|jp|us|uk|ca|au|de|fr|kr|cn|tw|sg|nz|ie|in"
_AT = r"(?: ?(?:アットマーク|アット|あっとまーく|あっと) ?| at )"
_DOT = r"(?: ?(?:ドット|どっと) ?| dot |\.)"
_SPOKEN = re.compile(
    rf"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9_%+-]*(?:{_DOT}[A-Za-z0-9][A-Za-z0-9_%+-]*)*"
    rf"{_AT}{_LABEL}(?:{_DOT}{_LABEL})*?{_DOT}(?:{_TLDS})(?![A-Za-z0-9-])",
    re.IGNORECASE,
)
# " at " is an ordinary English word ("the FAQ at kumo-audio.com"): only after a word about mail.
_MAIL_WORDS = re.compile(alternation(("メール", "アドレス", "mail", "email", "e-mail", "address")), re.IGNORECASE)
_SPOKEN_HINTS = ("アット", "あっと", " at ")
MAIL_CONTEXT = 30  # characters before an address spelt with " at " that must name mail


def find_emails(text: str) -> Iterator[Finding]:
    if "@" in text:
        for match in _WRITTEN.finditer(text):
            yield Finding(*match.span(), Kind.EMAIL)
    if any(hint in text for hint in _SPOKEN_HINTS):
        for match in _SPOKEN.finditer(text):
            spelt_at = re.search(" at ", match.group(), re.IGNORECASE)
            if not spelt_at or _MAIL_WORDS.search(text, max(0, match.start() - MAIL_CONTEXT), match.start()):
                yield Finding(*match.span(), Kind.EMAIL)
