"""Pure retrieval pieces: language detection, tokenizer, fusion, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from retrievers.evaluation import EvalQuery, percentiles, score_rankings
from retrievers.fusion import Standardiser, fuse_scores
from retrievers.keyword import KeywordIndex, tokenize
from retrievers.language import detect_language


@pytest.mark.parametrize(
    ("text", "language"),
    [("KH-300の保証期間は？", "ja"), ("東京天気", "ja"), ("What is the warranty?", "en"), ("KH-300", "en"), ("", "en")],
)
def test_language_is_decided_by_script(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_japanese_text_becomes_character_ngrams_plus_latin_words() -> None:
    tokens = tokenize("KH-300の保証")
    assert {"保", "保証", "の保"} <= set(tokens)
    assert {"kh", "300"} <= set(tokens)  # product codes also match English documents


def test_english_text_becomes_stemmed_words_without_stopwords() -> None:
    assert tokenize("What is the warranty on the Kumo Halo headphones?") == ["warranti", "kumo", "halo", "headphon"]


def test_keyword_index_ranks_the_matching_chunk_first_and_masks_exactly() -> None:
    index = KeywordIndex(
        ["a::0", "b::0", "c::0"],
        ["returns within 30 days", "warranty is two years", "返品は30日以内です"],
        [{"category": "support"}, {"category": "product"}, {"category": "support"}],
    )
    assert [index.chunk_ids[h.row] for h in index.search("warranty years", 3)] == ["b::0"]
    assert index.chunk_ids[index.search("返品できる期間", 3)[0].row] == "c::0"
    mask = index.mask({"category": "product"})
    assert index.search("returns within 30 days", 3, mask) == []
    assert index.mask({"category": ["product", "support"]}).sum() == 3  # type: ignore[union-attr]


def test_coverage_weighs_rare_words_over_common_ones() -> None:
    index = KeywordIndex(["a", "b", "c"], ["the store opens", "the store closes", "warranty two years"], [{}, {}, {}])
    assert index.coverage("warranty store", "warranty") > index.coverage("warranty store", "store")
    assert index.coverage("warranty", "nothing related") == 0.0


def test_standardised_fusion_rewards_agreement_and_keeps_single_signal_candidates() -> None:
    """`both` leads neither signal, but both signals rank it high: it wins the fusion."""
    dense = {"dense_top": 0.90, "both": 0.85, "x": 0.70, "y": 0.68}
    keyword = {"kw_top": 14.0, "both": 12.0, "z": 3.0, "w": 2.0}
    assert max(dense, key=dense.__getitem__) != "both" and max(keyword, key=keyword.__getitem__) != "both"
    fused = fuse_scores(dense, keyword, dense_weight=0.5)
    assert sorted(fused, key=fused.__getitem__, reverse=True)[:3] == ["both", "dense_top", "kw_top"]
    assert set(fused) == dense.keys() | keyword.keys()  # single-signal candidates are kept
    # control: found by one signal only, the same candidate no longer wins
    alone = fuse_scores(dense, {k: v for k, v in keyword.items() if k != "both"}, dense_weight=0.5)
    assert max(alone, key=alone.__getitem__) == "dense_top"


def test_fusion_with_one_signal_returns_its_scores() -> None:
    assert fuse_scores({}, {"a": 2.0}, dense_weight=0.5) == {"a": 2.0}
    assert fuse_scores({"a": 0.5}, {}, dense_weight=0.5) == {"a": 0.5}


def test_standardiser_gives_missing_candidates_the_pool_floor() -> None:
    standardise = Standardiser.of(np.array([1.0, 2.0, 3.0]))
    assert standardise(None) == pytest.approx(standardise(1.0))


def test_metrics_match_hand_computed_values() -> None:
    queries = [EvalQuery("q1", "x", frozenset({"d1"})), EvalQuery("q2", "y", frozenset({"d2"}))]
    metrics = score_rankings([["d1", "d3"], ["d3", "d4", "d2"]], queries)
    assert metrics["recall@1"] == 0.5 and metrics["recall@5"] == 1.0
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-4)
    assert metrics["ndcg@10"] == pytest.approx((1 + 0.5) / 2, abs=1e-4)
    assert percentiles([1, 2, 3, 4, 100])["latency_ms_p50"] == 3.0
