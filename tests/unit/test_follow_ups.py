"""What a follow-up looks like, in one place for the router and the rule-based sources."""

from __future__ import annotations

import pytest

from retrievers.follow_ups import follow_up_subject, is_follow_up, is_short, only_filler


@pytest.mark.parametrize(
    "question", ["and the warranty?", "明日は？", "What about Osaka?", "じゃあ返品は", "保証も？", "How much?"]
)
def test_follow_ups(question: str) -> None:
    assert is_follow_up(question)


@pytest.mark.parametrize(
    "question", ["How do I reset my Kumo Air earbuds after pairing fails?", "KH-300の保証期間は何年ですか？"]
)
def test_standalone_questions(question: str) -> None:
    assert not is_follow_up(question)


def test_short_is_counted_in_characters_for_japanese_and_words_for_english() -> None:
    assert is_short("札幌店は？") and not is_short("札幌店の営業時間は何時から何時までですか")
    assert is_short("and in Sapporo?") and not is_short("and what about the store in Sapporo?")
    assert is_short("札幌店の営業時間は何時から", ja_chars=20)


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("and in Osaka?", "Osaka"),
        ("what about tomorrow?", "tomorrow"),
        ("大阪は？", "大阪"),
        ("札幌の方は？", "札幌"),
        ("Hello", None),
    ],
)
def test_the_subject_of_a_follow_up(question: str, subject: str | None) -> None:
    assert follow_up_subject(question) == subject


def test_only_filler_means_nothing_else_is_asked() -> None:
    assert only_filler(" and in   ?") and only_filler(" 店は？") and only_filler("")
    assert not only_filler(" の住所は？") and not only_filler("where is the ")
