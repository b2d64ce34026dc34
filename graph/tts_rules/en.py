"""English rules: only what engines are documented or reported to misread (phone numbers, 24-hour
times, slash dates, hyphen ranges, yen, rare units, abbreviations); $12, 15%, 5 km are left alone."""

from __future__ import annotations

import re

from graph.tts_rules import Rule
from graph.tts_rules.shared import (
    CHAIN,
    DASHES,
    MODEL_NUMBER,
    NUM,
    PAIR,
    PHONE,
    REFERENCE,
    SHORT_MODEL,
    TILDES,
    digit_groups,
    is_postal_code,
    is_range,
    model_number,
    phone,
    reference,
    short_model,
    split_chain,
    valid_date,
)

_DIGITS = dict(
    zip("0123456789", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"), strict=True)
)
_MONTHS = "January February March April May June July August September October November December".split()
_RANGE = f"[{DASHES}{TILDES}]"
_NUM = NUM
_DAYS = {
    "mon": "Monday",
    "tue": "Tuesday",
    "tues": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "thur": "Thursday",
    "thurs": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
_DAY = "|".join(sorted(_DAYS, key=len, reverse=True))
_UNITS = {
    "km/h": "kilometers per hour",
    "km2": "square kilometers",
    "km²": "square kilometers",
    "m2": "square meters",
    "m²": "square meters",
    "kWh": "kilowatt hours",
    "mAh": "milliamp hours",
    "Wh": "watt hours",
    "℃": "degrees Celsius",
    "°C": "degrees Celsius",
    "hrs": "hours",
    "hr": "hours",
    "mins": "minutes",
    "min": "minutes",
}
_UNIT = re.compile(
    rf"({_NUM})\s?({'|'.join(re.escape(unit) for unit in sorted(_UNITS, key=len, reverse=True))})(?![A-Za-z])"
)
_ABBREVIATIONS = {
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "approx.": "approximately",
    "vs.": "versus",
    "incl.": "including",
    "w/": "with",
    "&": "and",
}


def _postal_code(match: re.Match[str]) -> str:
    groups = split_chain(match.group(1))
    return digit_groups(groups, _DIGITS, " ", ", ") if is_postal_code(groups) else match.group(0)


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _date(month: str, day: str, year: str | None = None) -> str:
    spoken = f"{_MONTHS[int(month) - 1]} {_ordinal(int(day))}"
    return f"{spoken}, {year}" if year else spoken


def _clock(hour: str, minute: str) -> str:
    """14:30 -> 2:30 PM, 10:00 -> 10 AM (24-hour times are read "fourteen thirty" or garbled)."""
    h = int(hour) % 24
    meridiem = "AM" if h < 12 else "PM"
    h12 = h % 12 or 12
    return f"{h12} {meridiem}" if minute == "00" else f"{h12}:{minute} {meridiem}"


def _ampm(hour: str, minute: str | None, meridiem: str) -> str:
    return f"{int(hour)}{':' + minute if minute and minute != '00' else ''} {meridiem[0].upper()}M"


# Rules for text with a digit in it (most of them: skipped when there is none).
NUMBER_RULES: list[Rule] = [
    (PHONE, phone(_DIGITS, " ", ", ")),
    (REFERENCE, reference(_DIGITS, " ", ", ")),
    # 2026-04-02, 2026/4/2 -> April 2nd, 2026
    (
        re.compile(r"(?<![\d/])(\d{4})[/\-.](\d{1,2})[/\-.](\d{1,2})(?![\d/])"),
        lambda m: _date(m[2], m[3], m[1]) if valid_date(m[2], m[3]) else m[0],
    ),
    # 4/2 -> April 2nd (read as a fraction or "four slash two" otherwise); 4/2/2026 likewise
    (
        re.compile(r"(?<![\d/.])(\d{1,2})/(\d{1,2})(?:/(\d{4}))?(?![\d/])"),
        lambda m: _date(m[1], m[2], m[3]) if valid_date(m[1], m[2]) else m[0],
    ),
    # 9am–6pm -> 9 AM to 6 PM
    (
        re.compile(
            rf"(\d{{1,2}})(?::(\d{{2}}))?\s?([ap])(?:\.m\.?|m)\s?{_RANGE}\s?(\d{{1,2}})(?::(\d{{2}}))?\s?([ap])(?:\.m\.?|m)",
            re.I,
        ),
        lambda m: f"{_ampm(m[1], m[2], m[3])} to {_ampm(m[4], m[5], m[6])}",
    ),
    (
        re.compile(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s?([ap])(?:\.m\.?|m)(?![A-Za-z])", re.I),
        lambda m: _ampm(m[1], m[2], m[3]),
    ),
    # 10:00〜19:00 -> 10 AM to 7 PM
    (
        re.compile(rf"(?<![\d:])([01]?\d|2[0-4]):([0-5]\d)\s?{_RANGE}\s?([01]?\d|2[0-4]):([0-5]\d)(?![\d:])"),
        lambda m: f"{_clock(m[1], m[2])} to {_clock(m[3], m[4])}",
    ),
    # 14:30 -> 2:30 PM; 9:30 alone is read well (and may be a clock: "11:28 left"), so it stays
    (re.compile(r"(?<![\d:])(1[3-9]|2[0-4]|00?):([0-5]\d)(?![\d:]|\s?[AaPp]\.?[Mm])"), lambda m: _clock(m[1], m[2])),
    # ¥1,650, 148,000円, 1,650 JPY -> 1,650 yen
    (re.compile(rf"[¥￥]\s?({_NUM})"), r"\1 yen"),
    (re.compile(rf"({_NUM})\s?(?:円|JPY(?![A-Za-z]))"), r"\1 yen"),
    (re.compile(rf"(?<=yen)\s?{_RANGE}\s?(?=\d)"), " to "),
    (re.compile(rf"({_NUM})\s?km/h\b"), r"\1 kilometers per hour"),
    (_UNIT, lambda m: f"{m[1]} {_UNITS[m[2]]}"),
    # 3-5 days, $10–$20, 1999-2000 -> 3 to 5 days (a hyphen range is read "three five" or "minus")
    (PAIR, lambda m: f"{m[1]}{m[2]} to {m[4]}{m[5]}" if is_range(m) else m[0]),
    # 141-0031 (a postal code) -> digits; an address (2-14-5) is left as written
    (CHAIN, _postal_code),
    (MODEL_NUMBER, model_number),
    (SHORT_MODEL, short_model),
    (re.compile(r"\b[Nn]o\.\s?(?=\d)"), "number "),
]

# Rules for words and signs, applied to every sentence.
WORD_RULES: list[Rule] = [
    # Mon–Fri -> Monday to Friday
    (
        re.compile(rf"\b({_DAY})\.?\s?{_RANGE}\s?({_DAY})\b\.?", re.I),
        lambda m: f"{_DAYS[m[1].lower()]} to {_DAYS[m[2].lower()]}",
    ),
    (
        re.compile("|".join(rf"(?<![A-Za-z]){re.escape(key)}" for key in _ABBREVIATIONS)),
        lambda m: _ABBREVIATIONS[m[0]],
    ),
]
