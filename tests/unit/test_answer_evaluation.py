"""The scoring of `voicerag eval-answers` (graph/answer_evaluation.py): reading a question file, what
counts as grounded, a fact, a decline, and the figures over rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graph.answer_evaluation import (
    AnswerQuestion,
    contains_fact,
    decline_sentences,
    declined,
    figures,
    load_answer_questions,
    normalise,
    report,
    score,
)
from graph.persona import load_persona
from graph.turn_record import TurnRecord
from retrievers.errors import UserInputError

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = decline_sentences(load_persona(ROOT / "data" / "persona.yaml").phrases)


def record(answer: str, documents: tuple[str, ...] = (), total_ms: float | None = 50.0, **fields: object) -> TurnRecord:
    turn = TurnRecord("t", "s", "anonymous", "ask", answer=answer, documents=list(documents), total_ms=total_ms)
    for name, value in fields.items():
        setattr(turn, name, value)
    return turn


WARRANTY = AnswerQuestion("How long is the warranty?", ("warranty-en", "warranty-ja"), "2 years", "en", "support")
OUT_OF_SCOPE = AnswerQuestion("Who wrote Hamlet?", (), None, "en", "out_of_scope")


@pytest.mark.parametrize(
    ("answer", "expect", "found"),
    [
        ("It costs ¥12,800 (tax included).", "12800", True),
        ("It costs ¥12800.", "12,800", True),
        ("価格は１２，８００円です。", "12,800円", True),  # full-width digits and comma: NFKC
        ("The warranty is 2 years.", "2 YEARS", True),
        ("The warranty is 2years.", "2 years", True),  # spaces do not count
        ("The warranty is 12 years.", "2 years", True),  # a substring: expect should carry its context
        ("It costs ¥12,800.", "12,900", False),
        ("The list is 1, 2, 3.", "1,2,3", True),
    ],
)
def test_a_fact_is_found_after_nfkc_casefold_without_spaces_and_thousands_separators(
    answer: str, expect: str, found: bool
) -> None:
    assert contains_fact(answer, expect) is found


def test_normalise_keeps_commas_between_words() -> None:
    assert normalise("Black, Silver") == "black,silver"


def test_a_turn_that_used_nothing_declined_whatever_it_said() -> None:
    assert declined(record("I'm here to help with questions about Kumo Audio."), SENTENCES)  # small talk
    assert declined(record("I couldn't reach the weather service just now."), SENTENCES)  # a failed lookup


def test_a_turn_that_used_a_document_or_a_live_result_answered() -> None:
    assert not declined(record("Here is what our documents say: ...", ("warranty-en",)), SENTENCES)
    live = record("The store opens at 10:00.", sources={"database_query": {"status": "ok", "cached": False}})
    assert not declined(live, SENTENCES)
    failed_source = record("I couldn't reach it.", sources={"weather": {"status": "error"}})
    assert declined(failed_source, SENTENCES)


def test_the_persona_not_found_sentence_is_a_decline_even_with_documents() -> None:
    said = "申し訳ありません。その内容は手元の情報に見つからなかったため、確かなお答えができません。"
    assert said in SENTENCES
    assert declined(record(said, ("warranty-ja",)), SENTENCES)


def test_a_failed_or_cancelled_turn_is_no_decline() -> None:
    assert not declined(record("", failed="RuntimeError"), SENTENCES)
    assert not declined(record("", cancelled=True), SENTENCES)


def test_score_of_an_answerable_question() -> None:
    good = score(WARRANTY, record("It has a 2-year warranty: 2 years.", ("warranty-ja", "other")), SENTENCES)
    assert (good.grounded, good.fact, good.declined, good.latency_ms) == (True, True, False, 50.0)
    assert good.expected_docs == ["warranty-en", "warranty-ja"] and good.used == ["warranty-ja", "other"]
    wrong_doc = score(WARRANTY, record("Shipping is 660 yen.", ("shipping-en",)), SENTENCES)
    assert (wrong_doc.grounded, wrong_doc.fact, wrong_doc.declined) == (False, False, False)


def test_score_of_an_out_of_scope_question() -> None:
    declined_row = score(OUT_OF_SCOPE, record(SENTENCES[0]), SENTENCES)
    assert (declined_row.grounded, declined_row.fact, declined_row.declined) == (None, None, True)
    invented = score(OUT_OF_SCOPE, record("Here is what our documents say: ...", ("shipping-en",)), SENTENCES)
    assert invented.declined is False


def test_the_question_language_is_the_files_or_else_the_turns() -> None:
    unlabelled = AnswerQuestion("送料は？", ("s",), "660", None, None)
    assert score(unlabelled, record("660円", ("s",), language="ja"), SENTENCES).lang == "ja"


def test_figures_count_each_rate_over_the_questions_it_concerns() -> None:
    rows = [
        score(WARRANTY, record("2 years", ("warranty-en",), total_ms=10.0, degraded=True), SENTENCES),
        score(WARRANTY, record("660 yen", ("shipping-en",), total_ms=20.0), SENTENCES),
        score(WARRANTY, record(SENTENCES[0], total_ms=30.0), SENTENCES),  # missed: declined an answerable one
        score(OUT_OF_SCOPE, record(SENTENCES[0], total_ms=40.0), SENTENCES),
        score(OUT_OF_SCOPE, record("Hamlet is ...", ("plays",), total_ms=None), SENTENCES),  # no latency: left out
    ]
    result = figures(rows)
    assert (result["questions"], result["answerable"], result["out_of_scope"]) == (5, 3, 2)
    assert (result["grounded"], result["grounded_rate"]) == (1, 0.333)
    assert (result["facts"], result["with_expect"], result["fact_rate"]) == (1, 3, 0.333)
    assert (result["missed"], result["missed_rate"]) == (1, 0.333)
    assert (result["correct_decline_rate"], result["invented_answer_rate"]) == (0.5, 0.5)
    assert (result["degraded"], result["degraded_rate"]) == (1, 0.2)
    assert (result["latency_ms_p50"], result["latency_ms_p95"]) == (25.0, 38.5)


def test_figures_of_no_such_questions_are_none() -> None:
    result = figures([score(OUT_OF_SCOPE, record(SENTENCES[0], total_ms=None), SENTENCES)])
    assert result["grounded_rate"] is None and result["fact_rate"] is None and result["latency_ms_p50"] is None
    assert result["correct_decline_rate"] == 1.0


def test_report_groups_by_language_and_category_and_keeps_every_row() -> None:
    japanese = AnswerQuestion("保証は？", ("warranty-ja",), "2年", "ja", None)
    rows = [
        score(WARRANTY, record("2 years", ("warranty-en",)), SENTENCES),
        score(japanese, record("1年です", ("warranty-ja",)), SENTENCES),
    ]
    result = report(rows)
    assert set(result["by_language"]) == {"en", "ja"} and set(result["by_category"]) == {"support", "-"}
    assert result["by_language"]["ja"]["fact_rate"] == 0.0 and result["by_language"]["en"]["fact_rate"] == 1.0
    assert [row["text"] for row in result["rows"]] == ["How long is the warranty?", "保証は？"]
    assert json.loads(json.dumps(result)) == result  # JSON-ready


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_question_file_is_read_with_single_or_several_ids() -> None:
    questions = load_answer_questions(ROOT / "eval" / "answers" / "sample_kb.jsonl")
    assert len(questions) >= 30 and {q.lang for q in questions} == {"ja", "en"}
    assert sum(1 for q in questions if not q.answerable) >= 8
    assert all(q.expect for q in questions if q.answerable)


def test_blank_lines_are_skipped_and_fields_kept(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        '{"text": " 送料は？ ", "doc_id": "s", "expect": "660", "lang": "ja", "category": "general"}',
        "",
        '{"text": "Who wrote Hamlet?", "doc_id": null}',
    )
    first, second = load_answer_questions(path)
    assert first == AnswerQuestion("送料は？", ("s",), "660", "ja", "general")
    assert second == AnswerQuestion("Who wrote Hamlet?", (), None) and not second.answerable


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "questions.jsonl:2: not JSON"),
        ("[1, 2]", "questions.jsonl:2: expected an object"),
        ('{"text": "", "doc_id": null}', "questions.jsonl:2: text: expected a non-empty string"),
        ('{"text": "q"}', "questions.jsonl:2: doc_id: missing"),
        ('{"text": "q", "doc_id": 3, "expect": "x"}', "questions.jsonl:2: doc_id: expected a document id"),
        ('{"text": "q", "doc_id": [], "expect": "x"}', "questions.jsonl:2: doc_id: expected a document id"),
        ('{"text": "q", "doc_id": "d"}', "questions.jsonl:2: expect: missing"),
        ('{"text": "q", "doc_id": "d", "expect": " "}', "questions.jsonl:2: expect: expected a non-empty string"),
        ('{"text": "q", "doc_id": null, "lang": "fr"}', "questions.jsonl:2: lang: expected ja or en, got 'fr'"),
        ('{"text": "q", "doc_id": null, "category": 1}', "questions.jsonl:2: category: expected a string"),
        ('{"text": "q", "doc_id": null, "doc": "d"}', "questions.jsonl:2: doc: unknown field"),
    ],
)
def test_a_bad_line_is_named_with_its_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path, '{"text": "fine", "doc_id": null}', line)
    with pytest.raises(UserInputError) as raised:
        load_answer_questions(path)
    assert str(raised.value).startswith(str(tmp_path / message))
    assert "\n" not in str(raised.value)


def test_a_missing_empty_or_binary_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no such file"):
        load_answer_questions(tmp_path / "absent.jsonl")
    with pytest.raises(UserInputError, match="no questions"):
        load_answer_questions(write_lines(tmp_path, "", "  "))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserInputError, match="not UTF-8"):
        load_answer_questions(binary)
