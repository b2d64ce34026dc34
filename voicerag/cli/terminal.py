"""What reaches the terminal is inert text: no escape sequences, control characters or bidi overrides.

Document text, titles, ids and error messages come from files and servers we do not control; printed
raw, an ANSI/OSC sequence could clear the screen, rewrite what was said or write to the clipboard.
Text is cleaned before it is printed; JSON escapes what it would otherwise pass through (C1 controls
and bidi overrides are valid JSON string characters).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-character escapes.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]")
# C0 controls but tab and newline, DEL, C1 controls, and the bidi overrides/isolates that reorder text.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_UNSAFE}]")


def safe(text: str) -> str:
    """`text` without escape sequences and control characters (tabs and newlines kept)."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def json_text(value: Any, *, indent: int | None = None) -> str:
    """JSON with Japanese kept readable and every control or bidi character escaped (`\\u009b`)."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def stream(text: str) -> None:
    """Write a piece of a streamed answer now (no newline)."""
    sys.stdout.write(safe(text))
    sys.stdout.flush()
