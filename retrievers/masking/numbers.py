"""Numbers someone owns: phone numbers, payment cards, My Numbers, postal codes, bank accounts.

A number is a run of digits joined by what people put between groups (hyphens and dashes of any
width, ー, spaces, 、, の, parentheses, dots after two digits: 0.12 is a decimal) and judged by its
digits, its grouping and the words around it (`context.py`). Where a run holds several numbers
("090-1234-5678 2回目", "03-…、090-…") the longest window of its pieces that is a number wins;
digits read one by one ("0 9 0 …") count from a 0 or a + or after a word such as 電話 or card.

- phone: with a leading +; or 0 and 10–11 digits (Japanese fixed lines, 0120/0800/0570, 050,
  070/080/090 mobiles, UK numbers); or 00/010 and a country code; or grouped like a North American
  number (415-555-0132, 1-800-555-0199); or 6–11 digits after a word such as 電話, TEL, phone, call;
- card: 13–19 digits, first 2–6, Luhn-valid (or any 13–19 digits after カード/card); a 13-digit
  number that is a valid JAN/EAN barcode is not a card;
- My Number: 12 digits with a valid check digit (or any 12 digits after マイナンバー/個人番号);
- postal code: 123-4567 after 〒/郵便/住所/postal/zip, or followed by a prefecture; 5 or 5+4 digits
  after zip/postal;
- bank account: 6–14 digits after 口座/account number.

Not numbers someone owns: runs glued to letters (KA-2026-000123, KH-300, 300W), prices (¥39,800,
148,000円: a comma never joins groups), dates and times (/ and : never join groups), decimals, and
numbers named as tracking, order, model or serial numbers, never taken for a card or My Number.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from stdnum import ean, luhn
from stdnum.jp import in_ as my_number

from retrievers.masking.context import Keywords, Role
from retrievers.masking.findings import Finding, Kind

DASHES = "\\-‐‑‒–—―−ー─━﹣"
_STRONG_JOIN = rf"[{DASHES}]|(?<=\))|(?=\()"  # joins one number's groups
# May also sit between two numbers ("090-1234-5678 2回"); a dot only after two digits ("0.12" is a decimal).
_WEAK_JOIN = rf"[ ]?[{DASHES}、・の][ ]?|(?<=[0-9]{{2}})[ ]?\.[ ]?|[ ]"
_RUN = re.compile(rf"(?:\+[ ]?)?\(?[0-9]+\)?(?:(?:{_STRONG_JOIN}|{_WEAK_JOIN})\(?[0-9]+\)?)*")
_CHUNK_SPLIT = re.compile(rf"(?<=[0-9)])(?:[ ]?[.、・の][ ]?|[ ][{DASHES}]?[ ]?|[{DASHES}][ ])(?=[(0-9])")
_DIGITS = re.compile("[0-9]+")
_GLUED_BEFORE = re.compile(rf"([A-Za-z]+)[{DASHES}_.#]?$|[0-9@¥$€£][{DASHES}_/.]?$")
_GLUED_AFTER = re.compile(rf"^(?:[{DASHES}_/.]?[A-Za-z0-9@]|\s?(?:円|万|ドル|yen|dollars?|%))", re.IGNORECASE)
_PHONE_LABELS = frozenset({"tel", "fax", "ph", "phone", "mobile", "mob", "cell", "no"})  # TEL03-1234-5678
_PREFECTURE_AFTER = re.compile(r"\s?(?:東京都|北海道|大阪府|京都府|[一-龥]{2,3}県)")
MAX_DIGITS = 19  # the longest number recognised (a card): longer windows are not tried
MAX_GROUPS = 6  # groups of a written number (+81 (0)90 1234 5678); read digit by digit, up to MAX_DIGITS


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A piece of a run between weak joins: all or part of one number."""

    start: int
    end: int
    groups: tuple[str, ...]  # its digit groups


def _glued_before(text: str, start: int) -> bool:
    """Letters, a digit or a currency sign stuck before the run: a code or a price, not a number."""
    before = _GLUED_BEFORE.search(text, max(0, start - 12), start)
    return before is not None and (before.group(1) or "").lower() not in _PHONE_LABELS


def _glued_after(text: str, end: int) -> bool:
    return _GLUED_AFTER.search(text[end : end + 8]) is not None


def _card_like(groups: list[int]) -> bool:
    return len(groups) == 1 or (groups[0] >= 4 and max(groups) <= 6)


def classify(groups_text: list[str], plus: bool, role: Role | None, prefecture_after: bool = False) -> Kind | None:
    """The kind of the number written as these digit groups (after a + or not), given its role."""
    digits, groups = "".join(groups_text), [len(g) for g in groups_text]
    n = len(digits)
    if role == "CARD" and 13 <= n <= 19:
        return Kind.CARD
    if role == "MY_NUMBER" and n == 12:
        return Kind.MY_NUMBER
    if role == "BANK_ACCOUNT" and 6 <= n <= 14:
        return Kind.BANK_ACCOUNT
    if (role == "POSTAL_CODE" and groups in ([3, 4], [7], [5], [5, 4])) or (prefecture_after and groups == [3, 4]):
        return Kind.POSTAL_CODE
    if role == "PHONE" and 6 <= n <= 11:  # local numbers; longer ones carry a + or a 0
        return Kind.PHONE
    if plus:
        return Kind.PHONE if 7 <= n <= 16 else None
    if digits[0] == "0" and (10 <= n <= 11 or (digits.startswith(("00", "010")) and 11 <= n <= 17)):
        return Kind.PHONE  # a trunk 0 and 9–10 digits, or an international prefix (00, 010) and more
    if groups in ([3, 3, 4], [1, 3, 3, 4]) and digits[-10] in "23456789" and (n == 10 or digits[0] == "1"):
        return Kind.PHONE  # North American: area code and exchange, 415-555-0132, 1-800-555-0199
    if role == "NOT_PERSONAL" or not _card_like(groups):
        return None
    if n == 12 and my_number.is_valid(digits):
        return Kind.MY_NUMBER
    if 13 <= n <= 19 and digits[0] in "23456" and luhn.is_valid(digits) and not (n == 13 and ean.is_valid(digits)):
        return Kind.CARD
    return None


def _chunks(text: str, start: int, end: int) -> list[_Chunk]:
    bounds, at = [], start
    for join in _CHUNK_SPLIT.finditer(text, start, end):
        bounds.append((at, join.start()))
        at = join.end()
    bounds.append((at, end))
    return [_Chunk(a, b, tuple(_DIGITS.findall(text, a, b))) for a, b in bounds]


def _cut_at_space(text: str, chunks: list[_Chunk], i: int, j: int) -> bool:
    """Whether chunks[i:j] leaves a neighbour behind across a mere space ("4111 1111 1111 | 1112")."""
    before = i > 0 and not text[chunks[i - 1].end : chunks[i].start].strip()
    return before or (j < len(chunks) and not text[chunks[j - 1].end : chunks[j].start].strip())


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop parentheses the run took from the prose around it: "(call 090-1234-5678)"."""
    run = text[start:end]
    if run.startswith("(") and run.endswith(")") and run.index(")") == len(run) - 1:
        return start + 1, end - 1  # "（03-5678-1234）": parentheses around the whole number
    if run.endswith(")") and run.count(")") > run.count("("):
        end -= 1
    if run.startswith("(") and run.count("(") > run.count(")"):
        start += 1
    return start, end


def _longest(chunks: list[_Chunk], total: list[int], i: int, spoken: bool) -> int:
    """The end of the longest window from chunk i worth trying: at most MAX_DIGITS digits, and
    MAX_GROUPS chunks unless `spoken` digits one by one (there, as many as are single digits)."""
    end = bisect.bisect_right(total, total[i] + MAX_DIGITS) - 1
    if spoken:
        singles = next((k for k in range(i, end) if len(chunks[k].groups) > 1 or len(chunks[k].groups[0]) > 1), end)
        return min(end, max(i + MAX_GROUPS, singles))
    return min(end, i + MAX_GROUPS)


def find_numbers(text: str) -> Iterator[Finding]:
    runs = [_trim(text, *m.span()) for m in _RUN.finditer(text)]
    if not runs:
        return
    keywords = Keywords(text)
    since = 0  # a number's words are those after the previous number found
    for index, (run_start, run_end) in enumerate(runs):
        until = runs[index + 1][0] if index + 1 < len(runs) else len(text)
        chunks = _chunks(text, run_start, run_end)
        total = list(accumulate((sum(map(len, chunk.groups)) for chunk in chunks), initial=0))
        glued = (_glued_before(text, run_start), _glued_after(text, run_end))
        i = 0
        while i < len(chunks):  # the longest window of chunks that is a number, left to right
            plus = i == 0 and text[run_start] == "+"
            before = keywords.role_before(chunks[i].start, since=since if i == 0 else chunks[i].start)
            # Digits read one by one make a number only after a word (カード, phone) or from a 0 or +.
            spoken = bool(before or plus or chunks[i].groups[0] == "0")
            for j in range(_longest(chunks, total, i, spoken), i, -1):
                if (i == 0 and glued[0]) or (j == len(chunks) and glued[1]):
                    continue
                start, end = chunks[i].start, chunks[j - 1].end
                role = before or keywords.role_after(end, until=until)
                groups = [group for chunk in chunks[i:j] for group in chunk.groups]
                kind = classify(groups, plus, role, _PREFECTURE_AFTER.match(text, end) is not None)
                if kind and kind is not Kind.PHONE and _cut_at_space(text, chunks, i, j):
                    continue  # 12 of a card's 16 digits may pass the My Number check: not a number
                if kind:
                    yield Finding(start, end, kind)
                    i, since = j, end
                    break
            else:
                i += 1
