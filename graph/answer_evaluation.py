"""Answer quality: scoring the graph's answers to a question file (`voicerag eval-answers`, the
answer-quality notebook). Pure functions over finished turns' `TurnRecord`s; running the turns is
the command's job (`voicerag/cli/eval_answers.py`).

A question file is JSONL, one question a line:
`{"text": ..., "doc_id": "<id>" | ["<id>", ...] | null, "expect": "...", "lang": "ja"|"en", "category": ...}`.
`doc_id` null: the knowledge base holds no answer and the agent must decline (`expect` then optional);
a list: any of these documents answers (a topic in both languages, or an FAQ and a page).

Per question:
- grounded: an expected document is among the documents the answer could use (the graded ones,
  `TurnRecord.documents`);
- fact: the answer contains `expect`, both compared after NFKC and case folding, without spaces
  and without the separators of thousands ("¥12,800" holds "12800");
- declined: the turn finished having used nothing — no graded document, no live result — so what
  it said can only be one of the persona's fixed sentences (not found, a lookup that failed, a
  small-talk reply); or the answer holds the persona's `not_found` sentence. A chat model saying
  "I don't know" in its own words is not recognised: it counts as an answer (an over-count of
  invented answers, never an under-count).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from graph.persona import Phrases
from graph.turn_record import TurnRecord
from retrievers.errors import UserInputError
from retrievers.evaluation import percentiles
from retrievers.language import Language

FIELDS = ("text", "doc_id", "expect", "lang", "category")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3})")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class AnswerQuestion:
    text: str
    doc_ids: tuple[str, ...]  # any of them answers; empty: out of scope, the agent must decline
    expect: str | None  # what the answer must contain
    lang: Language | None = None
    category: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.doc_ids)


@dataclass(frozen=True, slots=True)
class AnswerRow:
    """One question's outcome (a row of `--json`)."""

    text: str
    lang: Language | None
    category: str | None
    expected_docs: list[str] | None  # None: out of scope
    expected_text: str | None
    answer: str
    used: list[str]  # the graded documents' ids
    live: list[str]  # the sources that answered (status ok)
    grounded: bool | None  # None: out of scope
    fact: bool | None  # None: nothing to find (no `expect`)
    declined: bool
    degraded: bool
    latency_ms: float | None

    @property
    def answerable(self) -> bool:
        return self.expected_docs is not None


def load_answer_questions(path: Path) -> list[AnswerQuestion]:
    """The questions of a file; a problem is one line naming the file, the line and the field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a folder, not a question file") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: is not UTF-8 text") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror})") from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            questions.append(_question(line, f"{path}:{number}"))
    if not questions:
        raise UserInputError(f"{path}: no questions")
    return questions


def _question(line: str, where: str) -> AnswerQuestion:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(record, dict):
        raise UserInputError(f"{where}: expected an object with text, doc_id and expect")
    if unknown := sorted(set(record) - set(FIELDS)):  # a typo ("doc": ...) would silently change the question
        raise UserInputError(f"{where}: {unknown[0]}: unknown field (expected {', '.join(FIELDS)})")
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise UserInputError(f"{where}: text: expected a non-empty string")
    if "doc_id" not in record:
        raise UserInputError(f"{where}: doc_id: missing (null when the knowledge base has no answer)")
    ids = _doc_ids(record["doc_id"], where)
    expect = record.get("expect")
    if expect is not None and (not isinstance(expect, str) or not expect.strip()):
        raise UserInputError(f"{where}: expect: expected a non-empty string or null")
    if ids and expect is None:
        raise UserInputError(f"{where}: expect: missing (what the answer must contain)")
    lang = record.get("lang")
    if lang not in (None, "ja", "en"):
        raise UserInputError(f"{where}: lang: expected ja or en, got {lang!r}")
    category = record.get("category")
    if category is not None and not isinstance(category, str):
        raise UserInputError(f"{where}: category: expected a string")
    return AnswerQuestion(text.strip(), ids, expect, lang, category)


def _doc_ids(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.strip() for i in ids):
        raise UserInputError(f"{where}: doc_id: expected a document id, a list of them, or null")
    return tuple(i.strip() for i in ids)


def normalise(text: str) -> str:
    """NFKC, case-folded, without spaces or thousands separators: how `expect` is looked for."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _THOUSANDS.sub("", _SPACES.sub("", folded))


def contains_fact(answer: str, expect: str) -> bool:
    return normalise(expect) in normalise(answer)


def decline_sentences(phrases: Phrases) -> tuple[str, ...]:
    """The persona's sentences that say "not found", in both languages."""
    return (phrases.not_found.en, phrases.not_found.ja)


def declined(record: TurnRecord, sentences: Sequence[str]) -> bool:
    """The finished turn used no document and no live result, or said a not-found sentence."""
    if record.failed or record.cancelled:
        return False
    live = any(source.get("status") == "ok" for source in record.sources.values())
    if not record.documents and not live:
        return True
    answer = normalise(record.answer)
    return any(normalise(sentence) in answer for sentence in sentences)


def score(question: AnswerQuestion, record: TurnRecord, sentences: Sequence[str]) -> AnswerRow:
    """One question's row, from the record of the turn that answered it."""
    answerable = question.answerable
    return AnswerRow(
        text=question.text,
        lang=question.lang or record.language,
        category=question.category,
        expected_docs=list(question.doc_ids) if answerable else None,
        expected_text=question.expect,
        answer=record.answer,
        used=list(record.documents),
        live=[name for name, source in record.sources.items() if source.get("status") == "ok"],
        grounded=bool(set(question.doc_ids) & set(record.documents)) if answerable else None,
        fact=contains_fact(record.answer, question.expect) if question.expect else None,
        declined=declined(record, sentences),
        degraded=record.degraded,
        latency_ms=record.total_ms,
    )


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 3) if total else None


def figures(rows: Sequence[AnswerRow]) -> dict[str, Any]:
    """Counts and rates of a set of rows. Rates are over the questions they concern (grounded and
    missed over the answerable, fact over those with `expect`, declines over the out-of-scope);
    None when there are none."""
    answerable = [r for r in rows if r.answerable]
    out_of_scope = [r for r in rows if not r.answerable]
    with_fact = [r for r in rows if r.fact is not None]
    counts = {
        "questions": len(rows),
        "answerable": len(answerable),
        "out_of_scope": len(out_of_scope),
        "grounded": sum(1 for r in answerable if r.grounded),
        "facts": sum(1 for r in with_fact if r.fact),
        "with_expect": len(with_fact),
        "missed": sum(1 for r in answerable if r.declined),  # declined a question it could answer
        "correct_declines": sum(1 for r in out_of_scope if r.declined),
        "invented_answers": sum(1 for r in out_of_scope if not r.declined),
        "degraded": sum(1 for r in rows if r.degraded),
    }
    latencies = [r.latency_ms for r in rows if r.latency_ms is not None]
    return counts | {
        "grounded_rate": _rate(counts["grounded"], len(answerable)),
        "fact_rate": _rate(counts["facts"], len(with_fact)),
        "missed_rate": _rate(counts["missed"], len(answerable)),
        "correct_decline_rate": _rate(counts["correct_declines"], len(out_of_scope)),
        "invented_answer_rate": _rate(counts["invented_answers"], len(out_of_scope)),
        "degraded_rate": _rate(counts["degraded"], len(rows)),
        **(percentiles(latencies) if latencies else {"latency_ms_p50": None, "latency_ms_p95": None}),
    }


def grouped(rows: Iterable[AnswerRow], key: Callable[[AnswerRow], str | None]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[AnswerRow]] = defaultdict(list)
    for row in rows:
        groups[key(row) or "-"].append(row)
    return {name: figures(group) for name, group in sorted(groups.items())}


def report(rows: Sequence[AnswerRow]) -> dict[str, Any]:
    """The figures of every row, per language and per category, and the rows themselves."""
    return figures(rows) | {
        "by_language": grouped(rows, lambda r: r.lang),
        "by_category": grouped(rows, lambda r: r.category),
        "rows": [asdict(row) for row in rows],
    }
