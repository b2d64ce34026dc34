"""A saved keyword index records its tokenizer; one saved by another tokenizer is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from retrievers import keyword
from retrievers.keyword import IncompatibleIndexError, KeywordIndex, tokenizer_signature


def small_index() -> KeywordIndex:
    return KeywordIndex(
        ["a::0", "b::0", "c::0"],
        ["returns within 30 days", "warranty is two years", "返品は30日以内です"],
        [{"category": "support"}, {"category": "product"}, {"category": "support"}],
    )


def test_a_saved_index_with_the_same_tokenizer_is_loaded_as_it_was(tmp_path: Path) -> None:
    index = small_index()
    index.save(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "tokenizer.json").read_text())["signature"] == tokenizer_signature()
    loaded = KeywordIndex.load(tmp_path / "saved")
    assert loaded.chunk_ids == index.chunk_ids and loaded.metadatas == index.metadatas
    for query in ("warranty years", "返品できる期間"):
        assert loaded.search(query, 3) == index.search(query, 3)
    assert loaded.idf("warranti") == index.idf("warranti")


def _bump_version(m: pytest.MonkeyPatch) -> None:
    m.setattr(keyword, "TOKENIZER_VERSION", keyword.TOKENIZER_VERSION + 1)


def _other_stopwords(m: pytest.MonkeyPatch) -> None:
    m.setattr(keyword, "_STOPWORDS", keyword._STOPWORDS | {"within"})


def _trigrams(m: pytest.MonkeyPatch) -> None:
    m.setattr(keyword, "_JAPANESE_NGRAMS", (1, 2, 3))


def _other_k1(m: pytest.MonkeyPatch) -> None:
    m.setitem(keyword._BM25, "k1", 1.2)


@pytest.mark.parametrize("change", [_bump_version, _other_stopwords, _trigrams, _other_k1])
def test_a_saved_index_from_another_tokenizer_is_refused(
    tmp_path: Path, change: Callable[[pytest.MonkeyPatch], None]
) -> None:
    with pytest.MonkeyPatch.context() as m:
        change(m)
        other_signature = tokenizer_signature()
        small_index().save(tmp_path / "saved")
    assert other_signature != tokenizer_signature()
    with pytest.raises(IncompatibleIndexError, match="tokenizer"):
        KeywordIndex.load(tmp_path / "saved")


def test_a_saved_index_without_a_signature_is_refused(tmp_path: Path) -> None:
    small_index().save(tmp_path / "saved")
    (tmp_path / "saved" / "tokenizer.json").unlink()  # as saved before signatures, or a save cut short
    with pytest.raises(IncompatibleIndexError, match="unknown"):
        KeywordIndex.load(tmp_path / "saved")
