"""Small talk: recognising greetings, thanks and goodbyes, and the fixed replies to them.

Small-talk turns skip every lookup and go straight to `generate`, which uses a chat model for
the reply when one is configured and the persona's fixed replies otherwise.
"""

from __future__ import annotations

import re
import unicodedata

from graph.persona import SmallTalkKind, SmallTalkReplies
from retrievers.language import Language

_SMALL_TALK_RULES: dict[SmallTalkKind, re.Pattern[str]] = {
    "greeting": re.compile(
        r"^(hi|hello|hey|hiya|good (morning|afternoon|evening|day)|nice to meet you|"
        r"こんにちは|こんばんは|おはよう(ございます)?|もしもし|はじめまして|よろしく(お願いします)?)"
    ),
    "thanks": re.compile(
        r"^(thanks?( you)?( (very|so) much)?( for (your|the) help)?|thank you|cheers|"
        r"(どうも)?ありがとう(ございます|ございました)?|どうも|助かりました)"
    ),
    "goodbye": re.compile(r"^(bye|goodbye|see you|have a nice day|さようなら|またね|失礼します|じゃあね|それでは)"),
    "how_are_you": re.compile(r"^(how are you( doing)?( today)?|how's it going|お元気ですか|元気(ですか)?|調子はどう)"),
}
_PUNCTUATION = re.compile(r"[\s\W_]+")


def small_talk_kind(question: str) -> SmallTalkKind | None:
    """The small-talk kind when the whole utterance is small talk, else None."""
    normal = unicodedata.normalize("NFKC", question).lower().strip()
    for kind, pattern in _SMALL_TALK_RULES.items():
        match = pattern.match(normal)
        if match and len(_PUNCTUATION.sub("", normal[match.end() :])) <= 2:
            return kind
    return None


def small_talk_reply(question: str, language: Language, replies: SmallTalkReplies) -> str:
    """The fixed reply (from the persona) to a small-talk turn, in the turn's language."""
    return replies.reply(small_talk_kind(question), language)
