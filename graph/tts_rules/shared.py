"""What both languages share: the patterns of phone, model, order and postal numbers and of number
pairs (ranges or not), and the helpers that read them digit by digit."""

from __future__ import annotations

import re
from collections.abc import Callable

DASHES = r"\-‐‑–—－"  # in character classes: hyphen (escaped), non-breaking hyphen, en, em and full-width dash
TILDES = "〜～~"
# A number: 148,000 or 1650 or 3.5 (a comma not followed by three digits ends it: "¥1, usable").
NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_PHONE_SEPARATORS = re.compile(f"[{DASHES}]")

# 2-5 hyphen-joined digit groups (an optional "(415) " area code in front): 0120-123-456, 03-1234-5678,
# 090-1234-5678, 1-800-555-0199. Fewer than 9 digits is a date or a range, not a phone number.
PHONE = re.compile(
    rf"(?<![0-9A-Za-z{DASHES}/])(?<!\d[.,])(?:\((\d{{2,4}})\)\s?)?(\d{{1,5}}(?:[{DASHES}]\d{{1,5}}){{1,4}})(?![0-9A-Za-z{DASHES}/]|[.,]\d)"
)

# Letters, a hyphen, digits: KH-300, RX-7, USB-C is not (no digit after the hyphen).
MODEL_NUMBER = re.compile(rf"(?<![A-Za-z0-9{DASHES}])([A-Za-z]{{1,5}})[{DASHES}](\d+[A-Za-z]*)(?![A-Za-z0-9{DASHES}])")
# One lowercase letter glued to a short number (e7, x5): engines may read "e7" as a word or a power.
SHORT_MODEL = re.compile(r"(?<![A-Za-z0-9.])([a-z])(\d{1,3})(?![A-Za-z0-9.%])")


def model_number(match: re.Match[str]) -> str:
    """KH-300 -> KH 300: a hyphen between letters and digits is read "minus" or "dash" by some engines."""
    return f"{match.group(1)} {match.group(2)}"


def short_model(match: re.Match[str]) -> str:
    """e7 -> E 7: a capital letter on its own is read as the letter."""
    return f"{match.group(1).upper()} {match.group(2)}"


# Letters then two or more hyphenated numbers: an order or ticket number (KA-2026-000123).
REFERENCE = re.compile(rf"(?<![A-Za-z0-9{DASHES}])([A-Za-z]{{1,5}})((?:[{DASHES}]\d+){{2,}})(?![A-Za-z0-9{DASHES}])")
# Two numbers joined by a dash or tilde: a range when ascending (3-5, $10–$20, 1999-2000).
PAIR = re.compile(
    rf"(?<![\dA-Za-z{DASHES}.,])([$€£]?)({NUM})\s?([{DASHES}{TILDES}])\s?([$€£]?)({NUM})"
    rf"(?!\d|[.,]\d|\s?[{DASHES}]\s?\d)"
)
# Hyphenated numbers left after ranges: addresses (2-14-5), postal codes (141-0031).
CHAIN = re.compile(rf"(?<![\dA-Za-z{DASHES}.,])(\d+(?:[{DASHES}]\d+){{1,3}})(?![\dA-Za-z{DASHES}]|[.,]\d)")


def digit_groups(groups: list[str], digit_names: dict[str, str], joiner: str, separator: str) -> str:
    """Digit by digit, `separator` (a pause) between the groups."""
    return separator.join(joiner.join(digit_names[d] for d in group) for group in groups)


def phone(digit_names: dict[str, str], joiner: str, separator: str) -> Callable[[re.Match[str]], str]:
    """A phone number read digit by digit, `separator` (a pause) between its groups."""

    def read(match: re.Match[str]) -> str:
        groups = ([match.group(1)] if match.group(1) else []) + _PHONE_SEPARATORS.split(match.group(2))
        if not 9 <= sum(map(len, groups)) <= 13:
            return match.group(0)
        return digit_groups(groups, digit_names, joiner, separator)

    return read


def reference(digit_names: dict[str, str], joiner: str, separator: str) -> Callable[[re.Match[str]], str]:
    """KA-2026-000123: the letters, then each number digit by digit (a caller writes it down)."""

    def read(match: re.Match[str]) -> str:
        groups = _PHONE_SEPARATORS.split(match.group(2))[1:]
        return match.group(1) + separator + digit_groups(groups, digit_names, joiner, separator)

    return read


def is_range(match: re.Match[str]) -> bool:
    """A tilde always; a dash when the numbers ascend and the second has no leading zero."""
    low, high = match.group(2), match.group(5)
    if match.group(3) in TILDES:
        return True
    if len(high) > 1 and high[0] == "0" and high[1] != ".":
        return False
    return float(low.replace(",", "")) < float(high.replace(",", ""))


def is_postal_code(groups: list[str]) -> bool:
    return len(groups) == 2 and len(groups[0]) == 3 and len(groups[1]) == 4


def split_chain(text: str) -> list[str]:
    return _PHONE_SEPARATORS.split(text)


def valid_date(month: str, day: str) -> bool:
    return 1 <= int(month) <= 12 and 1 <= int(day) <= 31
