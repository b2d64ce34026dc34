"""The rewrite rules behind `graph.tts_text.speakable_text`, one module per language plus shared ones."""

from __future__ import annotations

import re
from collections.abc import Callable

# A rule: a pattern and what a match becomes (a string template or a function of the match).
Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]
