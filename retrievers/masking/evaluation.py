"""The masker measured on a labelled set: precision and recall per kind.

A labelled set is JSON lines, one case each:
`{"lang": "ja"|"en", "text": ..., "findings": [{"kind": "PHONE", "text": "090-1234-5678"}], "gap": ...}`.
`findings` are what must be found, in order, each by its exact text (an equal value said twice is
looked for after the previous one); a lookalike has none. `gap` (optional) says why a case is
missed today: it is still scored, and tests expect the miss until the gap is closed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrievers.errors import UserInputError
from retrievers.masking.findings import Finding, Kind
from retrievers.masking.masker import find


class _Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind
    text: str = Field(min_length=1)


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lang: Literal["ja", "en"]
    text: str
    findings: list[_Expected]
    gap: str | None = None


@dataclass(frozen=True, slots=True)
class LabelledCase:
    line: int
    lang: str
    text: str
    expected: tuple[Finding, ...]
    gap: str | None = None


def _spans(path: Path, line: int, case: _Case) -> tuple[Finding, ...]:
    spans, at = [], 0
    for index, expected in enumerate(case.findings):
        start = case.text.find(expected.text, at)
        if start < 0:
            raise UserInputError(f"{path}:{line}: findings[{index}].text {expected.text!r} is not in the text")
        spans.append(Finding(start, start + len(expected.text), expected.kind))
        at = start + len(expected.text)
    return tuple(spans)


def load_cases(path: Path) -> list[LabelledCase]:
    """The cases of a labelled set; a bad line is one error naming the file, the line and the field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    cases = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            case = _Case.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{number}: not JSON ({exc.msg})") from None
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(map(str, error["loc"])) or "the line"
            raise UserInputError(f"{path}:{number}: {field}: {error['msg']}") from None
        cases.append(LabelledCase(number, case.lang, case.text, _spans(path, number, case), case.gap))
    if not cases:
        raise UserInputError(f"{path}: no cases")
    return cases


@dataclass(slots=True)
class KindScore:
    found: int = 0  # found where the label says so, the same span
    wrong: int = 0  # found where the label does not say so (or a different span)
    missed: int = 0  # labelled and not found

    @property
    def precision(self) -> float | None:
        return self.found / (self.found + self.wrong) if self.found + self.wrong else None

    @property
    def recall(self) -> float | None:
        return self.found / (self.found + self.missed) if self.found + self.missed else None


def score(cases: Iterable[LabelledCase], finder: Callable[[str], list[Finding]] = find) -> dict[Kind, KindScore]:
    """Per kind: exact-span hits, false findings and misses of `finder` over the cases."""
    scores = {kind: KindScore() for kind in Kind}
    for case in cases:
        expected, found = set(case.expected), set(finder(case.text))
        for finding in found & expected:
            scores[finding.kind].found += 1
        for finding in found - expected:
            scores[finding.kind].wrong += 1
        for finding in expected - found:
            scores[finding.kind].missed += 1
    return scores
