"""Pure graph pieces: small-talk rules, follow-ups, extractive answers, turn-state reducers."""

from __future__ import annotations

import pytest

from graph.extractive import extract_answer, spoken_units
from graph.nodes.route import standalone_query
from graph.nodes.small_talk import small_talk_kind
from graph.state import merge_timings
from retrievers.knowledge_base import SearchHit


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("hello", "greeting"),
        ("Thank you very much!", "thanks"),
        ("こんにちは。", "greeting"),
        ("ありがとうございました", "thanks"),
        ("bye", "goodbye"),
        ("hi, what is the warranty?", None),
        ("こんにちは、送料はいくらですか", None),
        ("How much is shipping?", None),
    ],
)
def test_small_talk_rules_need_the_whole_utterance_to_be_small_talk(text: str, kind: str | None) -> None:
    assert small_talk_kind(text) == kind


def test_short_follow_ups_carry_the_previous_question() -> None:
    earlier = ["What is the price of the Kumo Halo?"]
    assert standalone_query("and the warranty?", earlier) == "What is the price of the Kumo Halo? and the warranty?"
    assert standalone_query("明日は？", ["東京の天気は？"]) == "東京の天気は？ 明日は？"
    full = "How do I reset my Kumo Air earbuds after pairing fails?"
    assert standalone_query(full, earlier) == full
    assert standalone_query("and the warranty?", []) == "and the warranty?"


def hit(text: str, lang: str = "en", title: str = "") -> SearchHit:
    return SearchHit(
        doc_id="d", title=title, score=1.0, text=text, dense=0.9, keyword=1.0, coverage=1.0,
        category="general", lang=lang, source="", chunk_index=0, metadata={},
    )  # fmt: skip


def test_list_items_are_read_with_the_heading_above_them() -> None:
    units = spoken_units("# Store\n\n**Opening hours**\n- Mon-Sat: 10:00-20:00\n- Sun: 10:00-19:00\n")
    assert [u.text for u in units] == ["Opening hours: Mon-Sat: 10:00-20:00", "Opening hours: Sun: 10:00-19:00"]


def test_extractive_answer_picks_the_sentence_that_answers_the_question() -> None:
    doc = hit(
        "The Kumo Stone is a small speaker. It costs ¥8,800 including tax. The battery lasts 12 hours.",
        title="Kumo Stone KS-50",
    )
    assert extract_answer("How much is the Kumo Stone?", [doc], "en").startswith("It costs ¥8,800")
    assert "12 hours" in extract_answer("How long does the battery last?", [doc], "en")


def test_extractive_answer_prefers_documents_in_the_question_language() -> None:
    docs = [hit("The warranty is two years.", "en"), hit("保証期間は2年間です。", "ja")]
    assert extract_answer("保証期間は？", docs, "ja") == "保証期間は2年間です。"


def test_parallel_nodes_add_their_timings_without_overwriting_each_other() -> None:
    assert merge_timings({"route": 2.0}, {"retrieve": 5.0}) == {"route": 2.0, "retrieve": 5.0}
    assert merge_timings(None, {"call_apis": 1.0}) == {"call_apis": 1.0}


def test_sentences_read_out_in_another_script_keep_their_own_spacing_and_full_stops() -> None:
    english = [hit("The warranty is two years. The warranty covers repairs.", "en", title="Warranty")]
    assert extract_answer("warranty", english, "ja") == "The warranty is two years. The warranty covers repairs."
    japanese = [hit("保証期間は2年間です\n\nバッテリー交換は有料です", "ja", title="保証")]
    assert extract_answer("保証期間", japanese, "en") == "保証期間は2年間です。"  # not "…です."


def test_a_follow_up_in_the_other_language_carries_only_names_and_codes() -> None:
    assert standalone_query("And how much does it cost?", ["KH-300の保証期間は何年ですか？"]) == (
        "KH-300 And how much does it cost?"
    )
    assert standalone_query("価格は？", ["What is the warranty on the Kumo Halo?"]) == (
        "What is the warranty on the Kumo Halo 価格は？"
    )
    # the same language: all of the previous question
    assert standalone_query("保証は？", ["返品できる期間は？"]) == "返品できる期間は？ 保証は？"
