"""Follow-ups: short or elliptic turns that lean on the previous question ("and the warranty?",
"明日は？", "札幌店は？").

The one place that knows what a follow-up looks like. The router makes follow-ups standalone for
search (`graph/nodes/route.py`); sources that find their arguments by rules (weather, the database's
named queries) reuse the previous question's arguments, changed by what the follow-up names.
"""

from __future__ import annotations

import re

from retrievers.language import detect_language

_LEAD_IN = re.compile(
    r"^(and|also|what about|how about|then|so|what if|plus)\b|^(それ|じゃあ|では|あと|それで|ちなみに|で、|また)"
)
_TRAILING_PARTICLE = re.compile(r"(は|も|って)[？?]?$")
# "and in Osaka?", "what about tomorrow?", "大阪は？", "札幌の方は？": the thing the follow-up is about.
_SUBJECT = re.compile(
    r"^(?:and|what about|how about)\s+(?:in\s+)?(.+?)[?？]?$|^(.+?)(?:は|の方は)[？?]?$", re.IGNORECASE
)
# What a follow-up says besides the thing it names ("and in", "店は", "どうですか", punctuation).
_FILLER = re.compile(
    r"\b(and|what|how|about|in|at|the|our|your|store|stores|branch|shop|for|then|also|of|same|there|please|ok)\b"
    r"|支店|店舗|店|の方|では|でも|なら|だと|って|どうですか|どうでしょうか|どう|ですか|でしょうか|は|も|の|で|に"
    r"|[\s\W_]+"
)


def is_short(question: str, *, ja_chars: int = 12, en_words: int = 4) -> bool:
    """Short enough to be an elliptic turn: few characters in Japanese, few words in English."""
    if detect_language(question) == "ja":
        return len(question) <= ja_chars
    return len(question.split()) <= en_words


def is_follow_up(question: str) -> bool:
    """A turn that only makes sense with the previous question: short, or starting with "and",
    "what about", "じゃあ"..., or ending with a topic particle ("保証は？")."""
    text = question.strip().lower()
    return is_short(question) or bool(_LEAD_IN.search(text) or _TRAILING_PARTICLE.search(text))


def follow_up_subject(question: str) -> str | None:
    """What a follow-up asks about instead ("and in Osaka?" → "Osaka", "明日は？" → "明日"), or None."""
    match = _SUBJECT.search(question.strip())
    return (match.group(1) or match.group(2) or "") if match else None


def only_filler(text: str) -> bool:
    """True when `text` (a follow-up with the names it mentions blanked out) asks nothing else."""
    return not _FILLER.sub("", text)
