"""Speech shaping: markup gone, the budget kept, the rest offered, a yes recognised."""

from __future__ import annotations

import pytest

from graph.speakable import Budget, past_budget, shape_answer, spoken_length, strip_markup, wants_details
from retrievers.language import Language

OFFER = {"en": "Want the details?", "ja": "詳しくお伝えしましょうか？"}

MARKUP_CASES: list[tuple[Language, str, str]] = [
    ("en", "**Free** shipping over ¥5,000.", "Free shipping over ¥5,000."),
    ("en", "# Warranty\nTwo years.", "Warranty. Two years."),
    ("en", "- Mon-Sat 10:00-20:00\n- Sun 10:00-19:00", "Mon-Sat 10:00-20:00. Sun 10:00-19:00"),
    ("en", "1. Unplug it.\n2. Hold the button.", "Unplug it. Hold the button."),
    ("en", "| Item | Details |\n|---|---|\n| Warranty | 2 years |", "Item, Details. Warranty, 2 years"),
    ("en", "See [our returns page](https://kumo.example/returns).", "See our returns page."),
    ("en", "Call us 🎧 today! 👍🏽", "Call us today!"),
    ("en", "Details at https://kumo.example/a?b=1 for you.", "Details at for you."),
    ("en", "Use `KH-300` mode.", "Use KH-300 mode."),
    ("en", "> Quoted text", "Quoted text"),
    ("en", "Text\n\n---\n\nMore", "Text. More"),
    ("ja", "**保証期間**\n- 1年間：KA-100\n- 2年間：KH-300", "保証期間。1年間：KA-100。2年間：KH-300"),
    ("ja", "| 製品 | 価格 |\n|:--|--:|\n| KH-300 | 24,800円 |", "製品、価格。KH-300、24,800円"),
    ("ja", "詳しくは https://kumo.example/ja をご覧ください。", "詳しくはをご覧ください。"),
    ("ja", "温度は25℃です。😀", "温度は25℃です。"),
]


@pytest.mark.parametrize(("language", "text", "spoken"), MARKUP_CASES)
def test_markup_is_turned_into_plain_spoken_sentences(language: Language, text: str, spoken: str) -> None:
    assert strip_markup(text, language) == spoken


def test_an_answer_within_budget_is_said_whole_with_no_offer() -> None:
    shaped = shape_answer("The KH-300 has a 2-year warranty.", "en", Budget(), OFFER["en"])
    assert shaped.spoken == "The KH-300 has a 2-year warranty."
    assert shaped.rest == ""


@pytest.mark.parametrize("language", ["en", "ja"])
def test_a_long_answer_is_cut_at_a_sentence_and_the_rest_offered(language: Language) -> None:
    sentence = (
        "The warranty lasts two years from purchase. " if language == "en" else "保証期間はご購入日から2年間です。"
    )
    budget = Budget(max_chars_ja=40, max_words_en=20)
    shaped = shape_answer(sentence * 5, language, budget, OFFER[language])
    assert shaped.spoken.endswith(OFFER[language])
    said = shaped.spoken.removesuffix(OFFER[language])
    assert spoken_length(said, language) <= budget.limit(language)
    assert said.count(sentence.strip()) == 2  # whole sentences only
    assert shaped.rest.count(sentence.strip()) == 3  # nothing lost


def test_the_lead_counts_against_the_budget() -> None:
    shaped = shape_answer("One two three. Four five six.", "en", Budget(max_words_en=7), "More?", lead="Our docs say: ")
    assert shaped.spoken == "Our docs say: One two three. More?"
    assert shaped.rest == "Four five six."


@pytest.mark.parametrize(
    ("language", "sentence", "said"),
    [
        (
            "ja",
            "KH-300の保証期間は2年間で、延長保証に加入すると合計3年間になり、偶発的な故障も1回修理できます。",
            "KH-300の保証期間は2年間で、延長保証に加入すると合計3年間になり。",
        ),
        (
            "en",
            "The warranty is two years, extendable to three, covering one accidental repair too.",
            "The warranty is two years.",
        ),
    ],
)  # fmt: skip
def test_a_first_sentence_over_budget_is_cut_at_a_clause_so_the_fact_is_still_said(
    language: Language, sentence: str, said: str
) -> None:
    shaped = shape_answer(sentence, language, Budget(max_chars_ja=40, max_words_en=6), OFFER[language])
    assert shaped.spoken == said + (" " if language == "en" else "") + OFFER[language]
    assert shaped.rest


def test_a_stream_is_stopped_at_the_first_sentence_end_past_the_budget() -> None:
    budget = Budget(max_words_en=5)
    assert not past_budget("One two three four five six seven", "en", budget)  # mid-sentence: go on
    assert past_budget("One two three four five six seven. ", "en", budget)
    assert not past_budget("One two. ", "en", budget)
    assert past_budget("あ" * 130 + "。", "ja", Budget())


@pytest.mark.parametrize(
    ("reply", "yes"),
    [
        ("yes", True), ("Yes, please.", True), ("Sure, go ahead", True), ("tell me more", True), ("OK", True),
        ("はい", True), ("はい、お願いします。", True), ("詳しく教えてください", True), ("ええ、ぜひ", True),
        ("no thanks", False), ("はい、KH-300の値段は？", False), ("yes, what about the KS-50?", False),
        ("教えてください、保証は？", False), ("", False),
    ],
)  # fmt: skip
def test_a_yes_to_the_offer_is_recognised_and_a_new_question_is_not(reply: str, yes: bool) -> None:
    assert wants_details(reply) is yes


def test_a_clause_cut_never_splits_a_number_or_a_time() -> None:
    shaped = shape_answer(
        "A full service costs ¥6,500 and takes two hours, at 10:00 or later.", "en", Budget(max_words_en=9), "?"
    )
    assert shaped.spoken == "A full service costs ¥6,500 and takes two hours. ?"


def test_a_streamed_sentence_end_is_seen_without_the_next_token_but_not_inside_a_decimal() -> None:
    budget = Budget(max_words_en=3)
    assert past_budget("The warranty lasts two years.", "en", budget)  # the next token brings its own space
    assert not past_budget("The battery lasts 3.", "en", budget)  # maybe 3.5: wait
