"""Language of a text, decided by script: Japanese when it has kana or enough CJK ideographs.

The product speaks Japanese and English; anything else is treated as English. A script test is
instant, needs no model and is right for the short questions a voice turn carries.
"""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["ja", "en"]

_KANA_RANGES = "\u3040-\u30ff\uff66-\uff9f"  # hiragana, katakana, half-width katakana
_IDEOGRAPH_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (kanji)
_KANA = re.compile(f"[{_KANA_RANGES}]")
_IDEOGRAPH = re.compile(f"[{_IDEOGRAPH_RANGES}]")
_JAPANESE_SCRIPT = re.compile(f"[{_KANA_RANGES}{_IDEOGRAPH_RANGES}]")
_LATIN = re.compile(r"[A-Za-z]")


def has_japanese(text: str) -> bool:
    """True when the text has any kana or kanji (the keyword tokenizer's switch to n-grams)."""
    return _JAPANESE_SCRIPT.search(text) is not None


def detect_language(text: str) -> Language:
    """`ja` if the text has kana, or more CJK ideographs than Latin letters; else `en`."""
    if _KANA.search(text):
        return "ja"
    ideographs = len(_IDEOGRAPH.findall(text))
    return "ja" if ideographs and ideographs >= len(_LATIN.findall(text)) else "en"
