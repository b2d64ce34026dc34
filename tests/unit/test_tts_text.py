"""TTS text normalisation, table-driven: tests/data/tts_cases.jsonl holds language, input, expected, why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graph.tts_text import speakable_text
from retrievers.language import Language

_CASES = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "data" / "tts_cases.jsonl").read_text("utf-8").splitlines()
]


@pytest.mark.parametrize("case", _CASES, ids=[f"{case['language']}:{case['input']}" for case in _CASES])
def test_the_engine_receives_the_speakable_form(case: dict[str, str]) -> None:
    language: Language = "ja" if case["language"] == "ja" else "en"
    assert speakable_text(case["input"], language) == case["expected"], case["why"]


def test_the_table_covers_both_languages_and_every_kind() -> None:
    assert len(_CASES) >= 100
    assert {case["language"] for case in _CASES} == {"ja", "en"}
    assert sum(case["input"] == case["expected"] for case in _CASES) >= 10  # what engines read well stays


def test_normalising_twice_changes_nothing_more() -> None:
    for case in _CASES:
        language: Language = "ja" if case["language"] == "ja" else "en"
        assert speakable_text(case["expected"], language) == case["expected"], case["input"]
