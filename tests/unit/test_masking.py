"""The masker on the labelled set (tests/data/masking_cases.jsonl) and on properties every text must
keep: masking twice changes nothing, nothing is left to find, full-width originals are what is
replaced, records are masked at any depth and never changed in place."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from retrievers.errors import UserInputError
from retrievers.masking import Finding, Kind, find, mask, mask_value
from retrievers.masking.evaluation import LabelledCase, load_cases, score

CASES_FILE = Path(__file__).resolve().parent.parent / "data" / "masking_cases.jsonl"
CASES = load_cases(CASES_FILE)
COVERED = [case for case in CASES if case.gap is None]


def _found(text: str) -> list[tuple[str, str]]:
    return [(finding.kind.value, text[finding.start : finding.end]) for finding in find(text)]


def _labelled(case: LabelledCase) -> list[tuple[str, str]]:
    return [(finding.kind.value, case.text[finding.start : finding.end]) for finding in case.expected]


def test_the_labelled_set_is_large_balanced_and_bilingual() -> None:
    sensitive = [case for case in CASES if case.expected]
    assert len(CASES) >= 150
    assert 0.4 <= len(sensitive) / len(CASES) <= 0.6
    assert {case.lang for case in CASES} == {"ja", "en"}
    assert {finding.kind for case in CASES for finding in case.expected} == set(Kind)


def _param(case: LabelledCase) -> object:
    """A case; a known gap is expected to be missed (strict: closing the gap fails until it is unmarked)."""
    gap = [pytest.mark.xfail(strict=True, reason=case.gap)] if case.gap else []
    return pytest.param(case, id=f"line{case.line}", marks=gap)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_each_labelled_case_is_found_exactly(case: LabelledCase) -> None:
    assert _found(case.text) == _labelled(case)


def test_recall_is_complete_for_phones_emails_and_cards() -> None:
    scores = score(CASES)
    for kind in (Kind.PHONE, Kind.EMAIL, Kind.CARD):
        assert scores[kind].recall == 1.0, kind
        assert scores[kind].found >= 10, kind  # enough cases for the figure to mean something


def test_score_counts_misses_and_false_findings() -> None:
    # Control: a finder that reports nothing, and one that reports every text whole.
    nothing = score(CASES, lambda text: [])
    assert nothing[Kind.PHONE].recall == 0.0 and nothing[Kind.PHONE].precision is None
    everything = score(CASES, lambda text: [Finding(0, len(text), Kind.PHONE)])
    assert everything[Kind.PHONE].precision is not None and everything[Kind.PHONE].precision < 0.2


def test_masking_twice_changes_nothing_and_leaves_nothing_to_find() -> None:
    for case in CASES:
        masked = mask(case.text)
        assert mask(masked) == masked, case.text
        assert find(masked) == [], case.text


def test_every_found_value_is_gone_and_the_rest_is_kept() -> None:
    for case in COVERED:
        masked = mask(case.text)
        for finding in case.expected:
            assert case.text[finding.start : finding.end] not in masked, case.text
        if not case.expected:
            assert masked == case.text
        else:  # what is around the values is kept as it was
            assert masked.startswith(case.text[: case.expected[0].start]), case.text
            assert masked.endswith(case.text[case.expected[-1].end :]), case.text


def test_placeholders_are_typed_and_readable() -> None:
    text = "電話は090-1234-5678、メールはtaro@example.jp、カードは4111 1111 1111 1111です"
    assert mask(text) == "電話は[PHONE]、メールは[EMAIL]、カードは[CARD]です"


def test_full_width_originals_are_replaced_even_after_characters_nfkc_expands() -> None:
    # ㈱ becomes three characters, ㍻ two: offsets read off the normalised text would be wrong.
    text = "㈱クモ ㍻ ＴＥＬ：０９０－１２３４－５６７８（携帯）"
    assert mask(text) == "㈱クモ ㍻ ＴＥＬ：[PHONE]（携帯）"
    assert _found("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐです") == [("EMAIL", "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ")]


def test_kanji_digits_count_when_they_follow_each_other() -> None:
    assert _found("電話は〇九〇ー一二三四ー五六七八です") == [("PHONE", "〇九〇ー一二三四ー五六七八")]
    assert find("六本木の三菱の一番館") == []  # one kanji digit alone is part of a name


def test_check_digits_decide_without_context_and_context_decides_without_them() -> None:
    assert _found("4111 1111 1111 1111") == [("CARD", "4111 1111 1111 1111")]
    assert find("4111 1111 1111 1112") == []  # Luhn fails, nothing says card
    assert _found("カード番号は4111 1111 1111 1112") == [("CARD", "4111 1111 1111 1112")]
    assert _found("6214 9832 0257") == [("MY_NUMBER", "6214 9832 0257")]
    assert find("6214 9832 0258") == []  # check digit fails
    assert _found("マイナンバーは6214 9832 0258") == [("MY_NUMBER", "6214 9832 0258")]


def test_numbers_the_product_works_with_are_kept_even_when_a_check_digit_passes() -> None:
    # 300012345678 passes both the My Number check digit and Luhn: alone it is masked ...
    assert _found("300012345678") == [("MY_NUMBER", "300012345678")]
    # ... named as a tracking, serial or ticket number, it is not.
    for text in ("追跡番号300012345678の荷物", "Serial number 300012345678", "受付番号は300012345678です"):
        assert find(text) == [], text
    # A 13-digit JAN barcode that happens to pass Luhn is not a card.
    assert find("4901234567894") == []


def test_a_phone_word_does_not_stretch_a_number_over_what_follows() -> None:
    assert _found("090-1234-5678 2回目の電話です") == [("PHONE", "090-1234-5678")]
    assert _found("03-1234-5678、090-8765-4321") == [("PHONE", "03-1234-5678"), ("PHONE", "090-8765-4321")]


def test_mask_value_masks_every_string_at_any_depth_and_keeps_the_rest() -> None:
    record = {
        "question": "My number is 090-1234-5678",
        "turns": [{"text": "カードは4111 1111 1111 1111"}, ("メール", "taro@example.jp")],
        "user_id": "C-101518",
        "count": 3,
        "score": 0.5,
        "ok": True,
        "missing": None,
        "090-1234-5678": "keys are field names",
    }
    before = copy.deepcopy(record)
    masked = mask_value(record)
    assert masked == record | {  # only the strings with values in them change; keys never do
        "question": "My number is [PHONE]",
        "turns": [{"text": "カードは[CARD]"}, ("メール", "[EMAIL]")],
    }
    assert masked["turns"][1] == ("メール", "[EMAIL]")  # a tuple stays a tuple
    assert record == before  # a copy: the product still uses the original
    assert mask_value(4111111111111111) == 4111111111111111  # numbers are not strings: kept
    assert mask_value("090-1234-5678") == "[PHONE]"


def test_a_bad_labelled_line_is_one_error_naming_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    bad_lines = {
        '{"lang": "fr", "text": "x", "findings": []}': "cases.jsonl:2: lang:",
        '{"lang": "ja", "text": "x", "findings": [{"kind": "NAME", "text": "x"}]}': "cases.jsonl:2: findings.0.kind:",
        '{"lang": "ja", "text": "abc", "findings": [{"kind": "PHONE", "text": "zz"}]}': "findings[0].text 'zz'",
        "{not json": "cases.jsonl:2: not JSON",
    }
    for line, message in bad_lines.items():
        path.write_text('{"lang": "en", "text": "ok", "findings": []}\n' + line + "\n", encoding="utf-8")
        with pytest.raises(UserInputError, match=message.replace(".", r"\.").replace("[", r"\[")):
            load_cases(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="no cases"):
        load_cases(path)
