"""find, mask, mask_value: every recogniser over the normalised view, overlaps resolved, spans
mapped back to the original text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar, cast

from retrievers.masking.addresses import find_addresses
from retrievers.masking.emails import find_emails
from retrievers.masking.findings import Finding, Kind
from retrievers.masking.numbers import find_numbers
from retrievers.masking.phrases import find_birth_dates, find_named_values
from retrievers.masking.view import view_of

T = TypeVar("T")

# (recogniser, whether what it finds always has a digit: a text without one skips it)
_RECOGNISERS: tuple[tuple[Callable[[str], Iterable[Finding]], bool], ...] = (
    (find_emails, False),
    (find_named_values, False),  # a password may have no digit
    (find_birth_dates, True),
    (find_addresses, True),
    (find_numbers, True),
)
_DIGIT = re.compile("[0-9]")
# Where two findings overlap and are as long, the more specific wins: an e-mail over the digits in
# it, a value named by its word (暗証番号, 免許証) over what its digits alone look like.
_PRECEDENCE = {kind: rank for rank, kind in enumerate((Kind.EMAIL, Kind.SECRET, Kind.ID_NUMBER, Kind.BIRTH_DATE))}


def _resolve(findings: Iterable[Finding]) -> list[Finding]:
    """The longest findings that do not overlap, in text order."""
    kept: list[Finding] = []
    ranked = sorted(findings, key=lambda f: (f.start - f.end, _PRECEDENCE.get(f.kind, len(_PRECEDENCE)), f.start))
    for finding in ranked:
        if all(finding.end <= other.start or other.end <= finding.start for other in kept):
            kept.append(finding)
    return sorted(kept)


def find(text: str) -> list[Finding]:
    """The sensitive values in `text`, in order, as spans of `text` itself (full-width forms too)."""
    view = view_of(text)
    digits = _DIGIT.search(view.text) is not None
    found = _resolve(
        f for recognise, needs_digit in _RECOGNISERS if digits or not needs_digit for f in recognise(view.text)
    )
    return [Finding(*view.original_span(f.start, f.end), f.kind) for f in found]


def mask(text: str) -> str:
    """`text` with each sensitive value replaced by its kind's placeholder (`[PHONE]`, `[EMAIL]`...)."""
    findings = find(text)
    if not findings:
        return text
    parts, at = [], 0
    for finding in findings:
        parts += [text[at : finding.start], finding.kind.placeholder]
        at = finding.end
    parts.append(text[at:])
    return "".join(parts)


def _masked(value: object) -> object:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {key: _masked(item) for key, item in value.items()}  # keys are field names: kept
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_masked(item) for item in value)
    return value


def mask_value(value: T) -> T:
    """A copy of a JSON-like value (a log record, an audit row) with every string in it masked, at
    any depth; dict keys, numbers, booleans and None are kept as they are. The input is unchanged."""
    return cast(T, _masked(value))
