"""Text normalisation for TTS: rewrite what speech engines misread, leave what they read well.

`speakable_text` is pure and fast (precompiled regexes, no model): it runs on every sentence the
voice agent speaks (`agent/tts.py`) and last in the answer shaping that produces `spoken`. The rules
live in `graph/tts_rules/` (one module per language); README "Numbers read naturally" says which
engine behaviour each one answers.
"""

from __future__ import annotations

from graph.tts_rules import en, ja
from retrievers.language import Language

_RULES = {"ja": ja.RULES, "en": en.RULES}


def speakable_text(text: str, language: Language) -> str:
    """The text as a TTS engine should receive it in `language`."""
    for pattern, replacement in _RULES[language]:
        text = pattern.sub(replacement, text)
    return text
