"""The extractive answer reads the one or two units that answer the question: a sentence, a list
item with its heading, a table row with its column names — not the whole list."""

from __future__ import annotations

from helpers import REPO

from graph.extractive import extract_answer, spoken_units
from graph.speakable import Budget, shape_answer
from retrievers.knowledge_base.hits import SearchHit

KB = REPO / "data" / "knowledge_base"
PLANS = "# Care plans\n\n| Plan | Price | Years |\n|---|---|---|\n| Basic | ¥1,980 | 2 |\n| Plus | ¥3,980 | 3 |\n"
HOURS = (
    "# Umeda store\n\n**Opening hours**\n- Mon-Sat: 10:00-20:00\n- Sun: 10:00-19:00\n\n"
    "## Access\n\nThe store is near Umeda station."
)


def hit(text: str, lang: str = "en", title: str = "") -> SearchHit:
    return SearchHit(
        doc_id="d", title=title, score=1.0, text=text, dense=0.9, keyword=1.0, coverage=1.0,
        category="general", lang=lang, source="", chunk_index=0, metadata={},
    )  # fmt: skip


def test_each_table_row_is_a_unit_read_with_its_column_names() -> None:
    assert [u.text for u in spoken_units(PLANS)] == [
        "Care plans: Basic: Price ¥1,980, Years 2",
        "Care plans: Plus: Price ¥3,980, Years 3",
    ]


def test_the_table_row_asked_about_is_read_not_the_table() -> None:
    answer = extract_answer("How much is the Plus plan?", [hit(PLANS, title="Care plans")], "en")
    assert "¥3,980" in answer
    assert "¥1,980" not in answer


def test_each_list_item_is_a_unit_with_its_heading() -> None:
    assert [u.text for u in spoken_units(HOURS)][:2] == [
        "Opening hours: Mon-Sat: 10:00-20:00",
        "Opening hours: Sun: 10:00-19:00",
    ]


def test_two_items_of_one_list_are_read_under_their_heading_once() -> None:
    answer = extract_answer("What are the opening hours?", [hit(HOURS, title="Umeda store")], "en")
    assert answer == "Opening hours: Mon-Sat: 10:00-20:00, Sun: 10:00-19:00."


def test_the_warranty_question_reads_the_one_sentence_wanted_not_every_models_warranty() -> None:
    product = hit((KB / "product" / "product-kh300-ja.md").read_text(), "ja", "Kumo Halo KH-300")
    warranty = hit((KB / "support" / "support-warranty-ja.md").read_text(), "ja", "製品保証")
    answer = extract_answer("KH-300の保証期間は何年ですか？", [product, warranty], "ja")
    assert "2年間" in answer
    assert "KS-50" not in answer  # other models' warranties are not read out
    assert len(answer) <= 120  # was 230 characters before units were list items


def test_the_item_shaped_like_the_answer_wins_a_what_time_question() -> None:
    store = (
        "**梅田店の営業時間**\n- 月曜日〜土曜日：10:00〜20:00\n- 定休日：毎月第3水曜日は休業します\n"
        "- 年末年始は休業し、1月3日から営業します"
    )
    answer = extract_answer("梅田店の営業時間は？", [hit(store, "ja", "梅田店")], "ja")
    assert answer.startswith("梅田店の営業時間：月曜日〜土曜日：10:00〜20:00")


def test_japanese_read_to_an_english_caller_is_counted_in_characters_and_joined_without_spaces() -> None:
    shaped = shape_answer("抹茶をお出ししています。提供時間は午後2時からです。", "en", Budget(), "Want the details?")
    assert shaped.spoken == "抹茶をお出ししています。提供時間は午後2時からです。"
