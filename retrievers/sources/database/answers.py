"""From rows to what is said: JSON-friendly values, and the query's templates → one sentence.

Rows are made JSON-friendly as they leave the database, so what is returned, cached and rendered
is the same whether it came from the database or from the cache.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from datetime import time as clock_time
from decimal import Decimal
from typing import Any

from retrievers.language import Language
from retrievers.sources.database.spec import AnswerSpec, DaysLabel, LanguageAnswer
from retrievers.turn.failures import FetchError


def json_value(value: Any) -> Any:
    """A column value as JSON can carry it: ISO dates, HH:MM times, plain numbers, hex bytes."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, clock_time):
        return value.strftime("%H:%M") if not value.second and not value.microsecond else value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


class _AnswerFormatter(string.Formatter):
    """`str.format` with None written as nothing and `{col:jdate}` for 2026年4月2日."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return ""
        if format_spec == "jdate":
            day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
            return f"{day.year}年{day.month}月{day.day}日"
        return str(super().format_field(value, format_spec))


_FORMATTER = _AnswerFormatter()


def _days_label(rows: Sequence[Mapping[str, Any]], days: DaysLabel) -> str:
    first, last = str(rows[0][days.column]), str(rows[-1][days.column])
    if len(rows) == 1:
        return first
    return f"{first}{days.pair if len(rows) == 2 else days.range}{last}"


def _groups(rows: Sequence[Mapping[str, Any]], group_by: list[str]) -> list[list[Mapping[str, Any]]]:
    """Consecutive rows equal on the `group_by` columns, together (each row alone without them)."""
    groups: list[list[Mapping[str, Any]]] = []
    for row in rows:
        key = [row.get(column) for column in group_by]
        if groups and group_by and [groups[-1][0].get(column) for column in group_by] == key:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def render_answer(
    answer: AnswerSpec, language: Language, arguments: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> str:
    """The sentence for `rows` (JSON-friendly) in `language`, from the query's templates."""
    spec: LanguageAnswer = getattr(answer, language)
    if not rows:
        return _FORMATTER.format(spec.none or "", **arguments)
    items = []
    for group in _groups(rows, answer.group_by):
        fields = {**arguments, **group[0]}
        if spec.days is not None:
            fields["days"] = _days_label(group, spec.days)
        template = spec.item
        if isinstance(template, dict):
            choice = str(group[0].get(answer.item_by or ""))
            if choice not in template and "default" not in template:
                raise FetchError("bad_response", f"no answer template for {answer.item_by}={choice!r}")
            template = template.get(choice, template.get("default", ""))
        items.append(_FORMATTER.format(template, **fields))
    return _FORMATTER.format(spec.text, **{**arguments, **rows[0], "items": spec.join.join(items)}).strip()
