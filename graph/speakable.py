"""Speech shaping of an answer: what a caller should hear, before TTS normalisation.

An answer is heard, not read: markdown, table syntax, bullets, emoji and raw URLs are dropped or
turned into plain sentences, and the answer is cut to a length budget (`ANSWER_MAX_CHARS_JA`
characters in Japanese, `ANSWER_MAX_WORDS_EN` words in English) at a sentence boundary. What is
held back is offered ("Want the details?") and read when the caller says yes. The fact comes
first because the answer's sources put it first: the extractive answer picks the one or two
most relevant units, and the chat model is asked to lead with the fact (graph/prompts.py).

Streaming: a chat model's tokens go to TTS as they come (shaping them first would hold the first
sound back by a sentence); the prompt asks for the spoken style and the budget, the model is
stopped at the first sentence end past the budget (`past_budget`), and what it said is shaped for
the answer kept in the state and the conversation (LiveKit's own markdown and emoji filters clean
the voice stream itself).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from retrievers.language import Language, detect_language

_URL = re.compile(r"<?\b(?:https?://|www\.)[^\s<>）)」』]+>?")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")  # [text](url) → text; images → their alt text
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")  # |---|:--:|
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*")
_BULLET = re.compile(r"^\s*(?:[-*+•・]|\d{1,2}[.)])\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3}|~~|`+)")
_HR = re.compile(r"^\s*([-*_=])\1{2,}\s*$")
_SPACES = re.compile(r"[ \t\u3000]+")
# A sentence ends at 。！？ (Japanese) or at . ! ? followed by a space (English, not "3.5" or "e.g.x").
_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])|(?<=[.])(?=\s)")
# A stream that has just ended a sentence (tokens bring their leading space, so "purchase." ends one;
# "costs 3." may be a decimal, so a period after a digit waits for the next sentence end).
_COMPLETE = re.compile(r"(?:[。！？!?\n]|(?<!\d)[.])\s*$")
# Pictographs, dingbats, skin tones and the joiners/selectors that build emoji; ℃, ¥, % and the
# circled digits ❶ (U+2776-2793) that TTS can read are kept.
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u2775\u2794-\u27bf\u200d\ufe0e\ufe0f]")
_CLAUSE_END = re.compile(r"(?<=[、，；：])|(?<=[,;:])(?=\s)")  # not inside ¥6,500 or 10:00


def strip_markup(text: str, language: Language) -> str:
    """Plain spoken text: table rows read as "cell, cell", list items and headings as sentences,
    links as their text, raw URLs, emoji and emphasis marks gone."""
    comma, stop = ("、", "。") if language == "ja" else (", ", ".")
    lines: list[str] = []
    for raw in text.splitlines():
        line = _MD_LINK.sub(r"\1", raw)
        line = _URL.sub("", line)
        if not line.strip() or _TABLE_RULE.match(line) or _HR.match(line):
            continue
        line = _QUOTE.sub("", _HEADING.sub("", line))
        line = _BULLET.sub("", line)
        if line.count("|") >= 2 or line.strip().startswith("|"):  # a table row
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            line = comma.join(cell for cell in cells if cell)
        line = _EMOJI.sub("", _EMPHASIS.sub("", line))
        line = _SPACES.sub(" ", line).strip()
        if line:
            lines.append(line)
    joined = ""
    for index, line in enumerate(lines):  # each line is a spoken unit: ended like a sentence, but the last
        if joined:
            joined += "" if language == "ja" else " "
        last = index == len(lines) - 1
        joined += line if last or line[-1] in "。！？.!?:：" else line + stop
    return _tidy(joined, language)


def _tidy(text: str, language: Language) -> str:
    text = re.sub(r"\s+([,.!?、。！？])", r"\1", text)
    if language == "ja":  # no spaces between Japanese words, or where a URL or emoji was
        text = re.sub(r"(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])", "", text)
    text = re.sub(r"[:：]\s*$", "", text).strip()
    return re.sub(r"\(\s*\)|（\s*）", "", text).strip()


def spoken_length(text: str, language: Language) -> int:
    """What the budget counts: characters in Japanese (spaces aside), words in English."""
    if language == "ja":
        return len(re.sub(r"\s", "", text))
    return len(text.split())


def sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


@dataclass(frozen=True, slots=True)
class Budget:
    """How long a spoken answer may be (ANSWER_MAX_CHARS_JA, ANSWER_MAX_WORDS_EN)."""

    max_chars_ja: int = 120
    max_words_en: int = 45

    def limit(self, language: Language) -> int:
        return self.max_chars_ja if language == "ja" else self.max_words_en


@dataclass(frozen=True, slots=True)
class Shaped:
    spoken: str  # what is said now, the offer included when something is held back
    rest: str  # what is held back ("" when everything fits)


def shape_answer(text: str, language: Language, budget: Budget, offer: str, lead: str = "") -> Shaped:
    """`lead` (a fixed sentence such as "Here is what our documents say:") then as many whole
    sentences of `text` as fit the budget; the rest is held back and `offer` asks whether to read
    it. The budget counts the lead and the answer, not the offer. A first sentence longer than the
    whole budget is cut at a clause boundary (、 ,) so the fact is still said."""
    plain = strip_markup(text, language)
    # Counted in the passage's own script: a Japanese passage read to an English caller is in characters.
    language = detect_language(plain) if plain else language
    limit = budget.limit(language) - spoken_length(lead, language)
    said: list[str] = []
    pending = sentences(plain)
    used = 0
    while pending:
        size = spoken_length(pending[0], language)
        if used + size > limit:
            if not said:  # nothing said yet: say the first clauses of the first sentence
                head, tail = _cut_clauses(pending[0], language, limit)
                if head:
                    said.append(head)
                    pending[0] = tail
            break
        said.append(pending.pop(0))
        used += size
    rest = _join(pending, language)
    spoken = lead + _join(said, language)
    if rest:
        spoken = _join([spoken, offer.strip()], language)
    return Shaped(spoken, rest)


def _cut_clauses(sentence: str, language: Language, limit: int) -> tuple[str, str]:
    """The longest run of whole clauses within `limit`, ended as a sentence, and the rest."""
    head = ""
    for clause in _CLAUSE_END.split(sentence):
        if spoken_length(head + clause, language) > limit:
            break
        head += clause
    if not head:  # no clause fits: whole words (English) or characters (Japanese)
        head = sentence[:limit] if language == "ja" else " ".join(sentence.split()[:limit])
    tail = sentence[len(head) :].strip()
    head = head.rstrip("、，,;；:： ") + ("。" if language == "ja" else ".")
    return head, tail


def _join(parts: list[str], language: Language) -> str:
    joined = ""
    for part in parts:
        if not part:
            continue
        if joined and joined[-1] not in "。！？":  # Japanese sentences follow each other directly
            joined += " "
        joined += part
    return joined


def past_budget(text: str, language: Language, budget: Budget) -> bool:
    """A streamed answer has finished a sentence and is already over its budget: stop the model
    there (the answer is then shaped, and the rest offered)."""
    if not _COMPLETE.search(text[-4:]):  # most chunks end mid-sentence: only the tail is looked at
        return False
    return spoken_length(strip_markup(text, language), language) > budget.limit(language)


_YES = re.compile(
    r"^(yes|yeah|yep|sure|please|ok(ay)?|go ahead|tell me( more)?|more details?|the details|details please|"
    r"はい|ええ|うん|お願い(します|いたします)?|おねがいします|詳しく|くわしく|聞かせて|教えて(ください)?|ぜひ)"
)
_FILLER = re.compile(r"[\s\W_]+")


def wants_details(reply: str) -> bool:
    """The whole reply is a yes to "Want the details?" ("yes please", "はい、お願いします")."""
    normal = unicodedata.normalize("NFKC", reply).lower().strip()
    if not normal:
        return False
    while normal:
        match = _YES.match(normal)
        if not match:
            return False
        normal = _FILLER.sub(" ", normal[match.end() :]).strip()
    return True
