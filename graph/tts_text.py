"""Text normalisation for TTS: rewrite what speech engines misread, leave what they read well.

`speakable_text` is pure and fast (compiled regexes, no model): it runs on every sentence the voice
agent speaks and last in the answer shaping that produces `spoken`.
"""

from __future__ import annotations

import re

from retrievers.language import Language

_JA_DIGITS = dict(
    zip("0123456789", ("ゼロ", "イチ", "ニー", "サン", "ヨン", "ゴー", "ロク", "ナナ", "ハチ", "キュー"), strict=True)
)
_EN_DIGITS = dict(
    zip("0123456789", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"), strict=True)
)

# A phone number: 2-5 digit groups joined by hyphens, 9-11 digits in all (JP landline, mobile, 0120).
_PHONE = re.compile(r"(?<![0-9A-Za-z-])(\+?\d{1,5}(?:[-‐－ー]\d{1,5}){1,3})(?![0-9A-Za-z-])")


def _phone(match: re.Match[str], language: Language) -> str:
    groups = re.split(r"[-‐－ー]", match.group(1).lstrip("+"))
    if not 9 <= sum(map(len, groups)) <= 12:
        return match.group(0)
    if language == "ja":
        return "、".join("".join(_JA_DIGITS[d] for d in group) for group in groups)
    return ", ".join(" ".join(_EN_DIGITS[d] for d in group) for group in groups)


def speakable_text(text: str, language: Language) -> str:
    """The text as a TTS engine should receive it in `language`."""
    return _PHONE.sub(lambda match: _phone(match, language), text)
