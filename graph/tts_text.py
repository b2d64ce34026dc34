"""Text normalisation for TTS: rewrite what speech engines misread, leave what they read well.

`speakable_text` is pure and fast (precompiled regexes, no model): it runs on every sentence the
voice agent speaks (`agent/tts.py`) and last in the answer shaping that produces `spoken`. The rules
live in `graph/tts_rules/` (one module per language); README "Numbers read naturally" says which
engine behaviour each one answers.
"""

from __future__ import annotations

import re

from graph.tts_rules import en, ja
from retrievers.language import Language

_NUMBER_RULES = {"ja": ja.NUMBER_RULES, "en": en.NUMBER_RULES}
_WORD_RULES = {"ja": ja.WORD_RULES, "en": en.WORD_RULES}
_DIGIT = re.compile(r"\d")


def speakable_text(text: str, language: Language) -> str:
    """The text as a TTS engine should receive it in `language`."""
    rules = _WORD_RULES[language]
    if _DIGIT.search(text):
        rules = _NUMBER_RULES[language] + rules
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text
