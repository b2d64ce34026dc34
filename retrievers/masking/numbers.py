"""Numbers someone owns: phone numbers, payment cards, My Numbers, postal codes, bank accounts.

A number is a run of digits joined by what people put between groups (hyphens and dashes of any
width, ー, spaces, dots, 、, parentheses) and judged by its digits, its grouping and the words around
it (`context.py`):

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
148,000円: a comma never joins groups), dates and times (/ and : never join groups), and numbers
named as tracking, order, model or serial numbers, which are never taken for a card or My Number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from stdnum import ean, luhn
from stdnum.jp import in_ as my_number

from retrievers.masking.context import Keywords, Role
from retrievers.masking.findings import Finding, Kind

DASHES = "\\-‐‑‒–—―−ー─━﹣"
_STRONG_JOIN = rf"[{DASHES}]|(?<=\))|(?=\()"  # joins one number's groups
_WEAK_JOIN = rf"[ ]?[{DASHES}.、・の][ ]?|[ ]"  # may also sit between two numbers ("090-1234-5678 2回")
_RUN = re.compile(rf"(?:\+[ ]?)?\(?[0-9]+\)?(?:(?:{_STRONG_JOIN}|{_WEAK_JOIN})\(?[0-9]+\)?)*")
_CHUNK_SPLIT = re.compile(rf"(?<=[0-9)])(?:[ ]?[.、・の][ ]?|[ ][{DASHES}]?[ ]?|[{DASHES}][ ])(?=[(0-9])")
_DIGITS = re.compile("[0-9]+")
_GLUED_BEFORE = re.compile(rf"([A-Za-z]+)[{DASHES}_.#]?$|[0-9@¥$€£][{DASHES}_/.]?$")
_GLUED_AFTER = re.compile(rf"^(?:[{DASHES}_/.]?[A-Za-z0-9@]|\s?(?:円|万|ドル|yen|dollars?|%))", re.IGNORECASE)
_PHONE_LABELS = frozenset({"tel", "fax", "ph", "phone", "mobile", "mob", "cell", "no"})  # TEL03-1234-5678
_PREFECTURE_AFTER = re.compile(r"\s?(?:東京都|北海道|大阪府|京都府|[一-龥]{2,3}県)")
MAX_WINDOW = 19  # chunks a number may span: a card read out digit by digit


def _glued(text: str, start: int, end: int) -> bool:
    """Letters, another digit or a currency sign stuck to the run: a code, a price, not a number."""
    before = _GLUED_BEFORE.search(text, max(0, start - 12), start)
    if before and (before.group(1) or "").lower() not in _PHONE_LABELS:
        return True
    return _GLUED_AFTER.search(text[end : end + 8]) is not None


def _card_like(groups: list[int]) -> bool:
    return len(groups) == 1 or (groups[0] >= 4 and max(groups) <= 6)


def classify(run: str, role: Role | None, prefecture_after: bool = False) -> Kind | None:
    """The kind of the number written `run` (digits and joins), given its role."""
    groups_text = _DIGITS.findall(run)
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
    if run.startswith("+"):
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


def _chunks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The run's pieces between weak joins: each is all or part of one number."""
    pieces, at = [], start
    for join in _CHUNK_SPLIT.finditer(text, start, end):
        pieces.append((at, join.start()))
        at = join.end()
    pieces.append((at, end))
    return pieces


def _cut_at_space(text: str, chunks: list[tuple[int, int]], i: int, j: int) -> bool:
    """Whether chunks[i:j] leaves a neighbour behind across a mere space ("4111 1111 1111 | 1112")."""
    before = i > 0 and not text[chunks[i - 1][1] : chunks[i][0]].strip()
    return before or (j < len(chunks) and not text[chunks[j - 1][1] : chunks[j][0]].strip())


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a parenthesis the run took from the prose around it: "(call 090-1234-5678)"."""
    run = text[start:end]
    if run.endswith(")") and run.count(")") > run.count("("):
        end -= 1
    if run.startswith("(") and run.count("(") > run.count(")"):
        start += 1
    return start, end


def find_numbers(text: str) -> Iterator[Finding]:
    runs = [_trim(text, *m.span()) for m in _RUN.finditer(text)]
    if not runs:
        return
    keywords = Keywords(text)
    since = 0  # a number's words are those after the previous number found
    for index, (run_start, run_end) in enumerate(runs):
        until = runs[index + 1][0] if index + 1 < len(runs) else len(text)
        chunks = _chunks(text, run_start, run_end)
        i = 0
        while i < len(chunks):  # the longest window of chunks that is a number, left to right
            for j in range(min(len(chunks), i + MAX_WINDOW), i, -1):
                start, end = chunks[i][0], chunks[j - 1][1]
                if _glued(text, start, end):
                    continue
                role = keywords.role_of(start, end, since=since if i == 0 else start, until=until)
                kind = classify(text[start:end], role, _PREFECTURE_AFTER.match(text, end) is not None)
                if kind and kind is not Kind.PHONE and _cut_at_space(text, chunks, i, j):
                    continue  # 12 of a card's 16 digits may pass the My Number check: not a number
                if kind:
                    yield Finding(start, end, kind)
                    i, since = j, end
                    break
            else:
                i += 1
