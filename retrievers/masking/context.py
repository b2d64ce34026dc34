"""Words that say what a nearby number is ("電話", "card number", "郵便番号", "追跡番号"...).

A number's role is the last such word between it and the previous number found (within the same
sentence and a few words), or else the first one just after it ("1234-5678-9012の荷物"). The role
lets short or ambiguous numbers be masked (a 7-digit bank account, a local phone number) and keeps
numbers the product itself works with (tracking, order, model, serial numbers) from being taken for
a My Number or a card by the chance of a valid check digit.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import Literal

Role = Literal["PHONE", "POSTAL_CODE", "CARD", "MY_NUMBER", "BANK_ACCOUNT", "NOT_PERSONAL"]

_WORDS: dict[Role, tuple[str, ...]] = {
    "PHONE": (
        "電話", "でんわ", "携帯", "ケータイ", "連絡先", "折り返し", "ファックス", "ファクス",
        "tel", "phone", "telephone", "call", "call me", "my number", "callback", "mobile", "cell", "fax",
        "contact number",
    ),
    "POSTAL_CODE": ("〒", "郵便", "住所", "postal", "zip", "zip code", "zipcode", "postcode", "post code", "address"),
    "CARD": ("カード", "クレジット", "デビット", "card", "credit", "debit", "visa", "mastercard", "amex", "jcb"),
    # In English "my number" is a phone number; a My Number there is known by its check digit.
    "MY_NUMBER": ("マイナンバー", "個人番号", "mynumber", "individual number"),
    "BANK_ACCOUNT": (
        "口座", "普通預金", "当座預金", "振込先", "account number", "bank account", "acct", "account no",
    ),
    # Numbers the product works with, about a thing, not a person.
    "NOT_PERSONAL": (
        "追跡", "伝票", "荷物", "配送", "送り状", "問い合わせ番号", "注文", "型番", "品番", "製品番号",
        "製造番号", "シリアル", "会員番号", "受付番号", "予約番号", "請求書", "領収書", "バーコード", "JAN",
        "tracking", "parcel", "package", "shipment", "waybill", "order", "model", "serial", "invoice",
        "receipt", "member number", "membership number", "ticket", "case number", "reference number", "booking",
        "reservation", "barcode", "EAN", "ISBN",
    ),
}  # fmt: skip
_ROLE_OF_WORD = {word.lower(): role for role, words in _WORDS.items() for word in words}
_SENTENCE_END = re.compile(r"[。！？!?\n]|\.\s")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
BEFORE = 30  # characters looked at before a number
AFTER = 8  # and after it


def alternation(words: Iterable[str]) -> str:
    """A regex matching any of `words`; Latin words only as whole words ("tel" is not in "hotel")."""
    ordered = sorted(words, key=len, reverse=True)
    return "|".join(rf"(?<![a-z]){re.escape(w)}(?![a-z])" if w.isascii() else re.escape(w) for w in ordered)


def lowered(text: str) -> str:
    """Letters in lower case, offsets unchanged (translate, slower, where lower() would move them: İ)."""
    low = text.lower()
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


def _latin_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()  # "" is not


def occurrences(text: str, word: str) -> Iterable[int]:
    """Where `word` starts in `text` (lowered); a Latin word only as a whole word."""
    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        if not word.isascii() or not (_latin_letter(text[at - 1 : at]) or _latin_letter(text[end : end + 1])):
            yield at
        at = text.find(word, at + 1)


class Keywords:
    """Every role word of a text, found once (plain substring searches: a regex alternation of a
    hundred words costs more than the masking itself)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._hits: list[tuple[int, int, Role]] | None = None  # (start, end, role), by end: on first use
        self._ends: list[int] = []

    def _index(self) -> list[tuple[int, int, Role]]:
        if self._hits is None:
            found = lowered(self.text)
            hits = sorted(
                (at + len(word), len(word), at, role)  # by end; at one end, the longest word last
                for word, role in _ROLE_OF_WORD.items()
                if word in found
                for at in occurrences(found, word)
            )
            self._ends = [hit[0] for hit in hits]
            self._hits = [(hit[2], hit[0], hit[3]) for hit in hits]
        return self._hits

    def role_before(self, start: int, *, since: int = 0) -> Role | None:
        """The role a number starting at `start` has from the words after `since` (the previous
        number found), in the same sentence, at most BEFORE characters back: the last one."""
        hits = self._index()
        low = max(since, start - BEFORE)
        ends = list(_SENTENCE_END.finditer(self.text, low, start))
        if ends:
            low = ends[-1].end()
        before = bisect.bisect_right(self._ends, start)  # the words ending before the number
        return hits[before - 1][2] if before and hits[before - 1][0] >= low else None

    def role_after(self, end: int, *, until: int | None = None) -> Role | None:
        """The role a number ending at `end` has from the first word after it, in the same sentence,
        at most AFTER characters on and before `until` (the next number)."""
        hits = self._index()
        high = min(end + AFTER, len(self.text) if until is None else until)
        stop = _SENTENCE_END.search(self.text, end, high)
        high = stop.start() if stop else high
        after = bisect.bisect_right(self._ends, end)
        return hits[after][2] if after < len(hits) and hits[after][0] >= end and hits[after][1] <= high else None
