"""Extractive answers: the passage of the graded documents that best matches the question.

Used when no chat model is configured, or when it fails or is too slow (the degraded mode).
Nothing is paraphrased, so nothing can be invented: the agent reads out what the documents say.

Documents are cut into the smallest spoken units that still say what they are about: a prose
sentence, one list item read with its heading ("Umeda store hours: Sun 10:00-19:00"), one table
row read with its column names ("KH-300: warranty 2 years"), because a heading alone answers
nothing and a whole list answers every question but the one asked. Units are scored by how much
of the question they cover, with a few question words mapped to what answers them ("how much" →
prices), then the best one or two are read, the best first (the fact first: when the answer is cut
to its budget, what is cut is the second); two items under one heading are
read as one ("Hours: Mon-Sat 10-20, Sun 10-19"). The answer is then shaped for speech and cut to
its budget (graph/speakable.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from retrievers.keyword import tokenize
from retrievers.knowledge_base.hits import SearchHit
from retrievers.language import Language, detect_language

MAX_UNITS = 2
MAX_CHARS = 320
SECOND_UNIT_RATIO = 0.8  # a second unit is read only when nearly as good as the first
NEAR_TIE = 0.05  # scores this close differ by length alone: read in document order, else the best first

_SENTENCE_END = re.compile(r"(?<=[。！？!?])\s*|(?<=[.])\s+")
_BOLD_LINE = re.compile(r"^\*\*(.+?)\*\*:?$")
_RUN_IN_LABEL = re.compile(r"^\*\*(.+?)\*\*:?\s+(\S.*)$")  # "**Phone.** 0120-960-123 ..."
_HEADING = re.compile(r"^#{1,6}\s+(.+)$")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s+")
_INLINE_MARKUP = re.compile(r"\*\*|__|`|^\|\s*|\s*\|$")
_TABLE_RULE = re.compile(r"^:?-{2,}:?$")
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.DOTALL)

# What kind of words answer a kind of question; added to the question's tokens for scoring.
_ANSWER_HINTS: list[tuple[re.Pattern[str], list[str]]] = [
    (
        re.compile(r"how much|price|cost|fee|いくら|値段|価格|料金|費用|送料"),
        ["price", "cost", "fee", "yen", "円", "税込"],
    ),
    (re.compile(r"how long|battery|バッテリー|電池|何時間|どのくらい"), ["hours", "minutes", "時間", "分"]),
    (
        re.compile(r"when|what time|hours|open|close|何時|営業時間|いつ|定休日|休み"),
        ["open", "closed", "monday", "saturday", "sunday", "00", "曜日", "休業", "営業", "時"],
    ),
    (re.compile(r"warranty|guarantee|保証"), ["warranty", "year", "年間"]),
    (re.compile(r"where|address|どこ|場所|住所"), ["address", "located", "所在地", "駅"]),
    (re.compile(r"期間|いつまで|何日|how many days"), ["日以内", "days", "日間"]),
]
# What an answer looks like in the unit's own text (not its heading): a time for "what time", an
# amount for "how much". A list's "closed on Wednesdays" item then loses to its "10:00-20:00" item.
_ANSWER_SHAPES: list[tuple[re.Pattern[str], re.Pattern[str]]] = [
    (
        re.compile(r"what time|hours|open|close|何時|営業時間|いつから"),
        re.compile(r"\d{1,2}[:：]\d{2}|\d{1,2}時(?!間)|\d\s?[ap]\.?m\b", re.IGNORECASE),
    ),
    (re.compile(r"how much|price|cost|fee|いくら|値段|価格|料金|費用"), re.compile(r"[¥$￥]\s?\d|\d[\d,]*\s?円")),
]
SHAPE_BONUS = 0.3


@dataclass(frozen=True, slots=True)
class Unit:
    text: str  # what is read out
    scored: str  # what is matched against the question (includes the heading it sits under)
    doc_rank: int
    position: int
    heading: str = ""  # list items and table rows: what they sit under (two under one are read as one)
    body: str = ""  # list items and table rows: the item without its heading


def spoken_units(text: str, doc_rank: int = 0, title: str = "") -> list[Unit]:
    """Sentences, list items and table rows, each read with the heading it sits under. The title
    and heading are matched with each unit (so "It costs ¥12,800" is about the product in the title)."""
    text = _FRONT_MATTER.sub("", text)
    units: list[Unit] = []
    heading = ""

    def item(body: str) -> None:
        spoken = _join_items(heading, [body])
        units.append(Unit(spoken, f"{title} {heading} {body}", doc_rank, len(units), heading, body))

    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        first = _heading_text(lines[0])
        if first is not None:
            heading, lines = first, lines[1:]
            if not lines:
                continue  # a heading on its own labels the next block
        if lines[0].startswith("|"):
            for row in _table_rows(lines):
                item(row)
            continue
        if len(lines) > 1 or _LIST_ITEM.match(lines[0]):
            for line in lines:
                item(_clean(_LIST_ITEM.sub("", line)))
            continue
        label = _RUN_IN_LABEL.match(lines[0])
        paragraph_heading, paragraph = (_clean(label.group(1)), label.group(2)) if label else (heading, lines[0])
        for sentence in _SENTENCE_END.split(_clean(paragraph)):
            if len(sentence.strip()) > 1:
                units.append(Unit(sentence.strip(), f"{title} {paragraph_heading} {sentence}", doc_rank, len(units)))
    return units


def _table_rows(lines: list[str]) -> list[str]:
    """Each data row read as "first cell: column value, column value" ("KH-300: Warranty 2 years")."""
    rows = [[_clean(cell) for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    rows = [row for row in rows if not all(_TABLE_RULE.match(cell) or not cell for cell in row)]
    if len(rows) < 2:
        return [", ".join(cell for cell in row if cell) for row in rows]
    header, spoken = rows[0], []
    japanese = detect_language(" ".join(header)) == "ja"
    for row in rows[1:]:
        named = [f"{name} {cell}".strip() for name, cell in zip(header[1:], row[1:], strict=False) if cell]
        spoken.append(row[0] + ("：" if japanese else ": ") + ("、" if japanese else ", ").join(named))
    return spoken


def extract_answer(
    question: str, documents: list[SearchHit], language: Language, weight: Callable[[str], float] = lambda _: 1.0
) -> str:
    """The one or two units that best answer the question, from documents in the question's
    language when there are any, the best first. `weight(token)` (the knowledge base's
    idf) makes rare words count more than particles such as は and で."""
    same_language = [d for d in documents if d["lang"] == language] or documents
    wanted = {token: weight(token) for token in set(tokenize(question))}
    total = sum(wanted.values()) or 1.0
    hints: set[str] = set()
    for pattern, words in _ANSWER_HINTS:
        if pattern.search(question.lower()):
            hints.update(token for word in words for token in tokenize(word) if len(token) > 1)
    shapes = [shape for asks, shape in _ANSWER_SHAPES if asks.search(question.lower())]
    scored: list[tuple[float, Unit]] = []
    for rank, doc in enumerate(same_language):
        for unit in spoken_units(doc["text"], rank, doc["title"]):
            tokens = set(tokenize(unit.scored))
            if not tokens:
                continue
            coverage = sum(w for token, w in wanted.items() if token in tokens) / total
            hinted = 0.5 if hints & tokens else 0.0
            hinted += SHAPE_BONUS if any(shape.search(unit.body or unit.text) for shape in shapes) else 0.0
            # Best documents first; among equals, the shorter unit says it more directly.
            scored.append((coverage + hinted - 0.15 * rank - 0.0005 * len(unit.text), unit))
    if not scored:
        return ""
    scored.sort(key=lambda item: -item[0])
    best_score = scored[0][0]
    chosen = [scored[0][1]]
    for score, unit in scored[1:]:
        if len(chosen) == MAX_UNITS or score < best_score * SECOND_UNIT_RATIO or score <= 0:
            break
        if not any(_repeats(unit.text, other.text) for other in chosen):  # two documents often say the same
            chosen.append(unit)
            if best_score - score < NEAR_TIE:  # as good as each other: the author's order
                chosen.sort(key=lambda u: (u.doc_rank, u.position))
    if (
        len(chosen) == 2
        and chosen[0].heading
        and (chosen[0].doc_rank, chosen[0].heading)
        == (
            chosen[1].doc_rank,
            chosen[1].heading,
        )
    ):  # two items of one list: the heading once
        return _sentence(_join_items(chosen[0].heading, [chosen[0].body, chosen[1].body]))
    answer = ""
    for unit in chosen:
        if answer and len(answer) + len(unit.text) > MAX_CHARS:
            break
        answer = _joined(answer, _sentence(unit.text))
    return answer


def _repeats(text: str, other: str) -> bool:
    """True when `text` says nothing `other` does not already say."""
    tokens = set(tokenize(text))
    return not tokens or len(tokens - set(tokenize(other))) <= len(tokens) // 5


def _heading_text(line: str) -> str | None:
    for pattern in (_HEADING, _BOLD_LINE):
        match = pattern.match(line)
        if match:
            return _clean(match.group(1)).rstrip(":：")
    return None


def _clean(text: str) -> str:
    return _INLINE_MARKUP.sub("", text).strip()


def _join_items(heading: str, items: list[str]) -> str:
    """A heading and its list read as one unit: "Hours: Mon-Sat 10-20, Sun 10-19"."""
    japanese = detect_language(heading + " ".join(items)) == "ja"
    text = ""
    for item in items:
        if text:
            ends_sentence = text[-1] in "。！？.!?"
            text += ("" if japanese else " ") if ends_sentence else ("、" if japanese else ", ")
        text += item
    if not heading:
        return text
    return heading + ("：" if japanese else ": ") + text


def _sentence(text: str) -> str:
    """End a unit like a sentence, in its own script, so the next one does not run into it."""
    if text[-1] in "。！？.!?":
        return text
    return text + ("。" if detect_language(text) == "ja" else ".")


def _joined(answer: str, sentence: str) -> str:
    """Japanese sentences follow each other directly; after a Latin full stop comes a space
    ("purchases. Unopened", never "purchases.Unopened"), whatever the answer's language."""
    if not answer:
        return sentence
    return answer + ("" if answer[-1] in "。！？" else " ") + sentence
