"""Rules both languages share: phone numbers, model numbers and the pieces dates and times are parsed from."""

from __future__ import annotations

import re
from collections.abc import Callable

DASHES = r"\-‐‑–—－"  # in character classes: hyphen (escaped), non-breaking hyphen, en, em and full-width dash
TILDES = "〜～~"
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


def phone(digit_names: dict[str, str], joiner: str, separator: str) -> Callable[[re.Match[str]], str]:
    """A phone number read digit by digit, `separator` (a pause) between its groups."""

    def read(match: re.Match[str]) -> str:
        groups = ([match.group(1)] if match.group(1) else []) + _PHONE_SEPARATORS.split(match.group(2))
        if not 9 <= sum(map(len, groups)) <= 13:
            return match.group(0)
        return separator.join(joiner.join(digit_names[d] for d in group) for group in groups)

    return read


def valid_date(month: str, day: str) -> bool:
    return 1 <= int(month) <= 12 and 1 <= int(day) <= 31
