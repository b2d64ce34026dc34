"""What the CLI prints is inert: hostile document text cannot drive the terminal."""

from __future__ import annotations

import json

import pytest

from voicerag.cli.terminal import json_text, safe

HOSTILE = [
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1b]52;c;cm0gLXJmIH4=\x07",  # OSC 52: write to the clipboard
    "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x9b31m",  # 8-bit CSI
    "a\rb",  # carriage return: overwrite what was printed
    "\u202eevil\u202c",  # right-to-left override
    "\x00\x07\x08",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_sequences_and_controls_are_removed(text: str) -> None:
    cleaned = safe(f"before {text} after")
    assert cleaned.startswith("before ") and cleaned.endswith(" after")
    assert not any((ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F for c in cleaned)
    assert "\u202e" not in cleaned and "\x1b" not in cleaned


def test_readable_text_is_kept() -> None:
    text = "保証期間は2年間です。\n\tKH-300: ¥39,800 — 30 h 🎧"
    assert safe(text) == text


def test_json_escapes_what_json_would_pass_through_and_stays_valid() -> None:
    value = {"answer": "返品は30日以内\x9b2J\u202e", "ok": "plain"}
    text = json_text(value)
    assert "\x9b" not in text and "\u202e" not in text and "返品は30日以内" in text
    assert json.loads(text) == value  # the escapes decode back to the same value
