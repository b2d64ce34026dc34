"""`KeywordIndex` scores BM25 exactly as bm25s does ("lucene", k1 1.5, b 0.75), and a masked search
exactly as bm25s built on the unmasked chunks alone: bm25s is the oracle, on the sample knowledge
base and an eval set. Also: the access rule, applied to every chunk at once (`access_mask`)."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest
from helpers import REPO

from retrievers.access import ANONYMOUS, Viewer, stored_roles
from retrievers.documents import Chunk, Document, embedding_text, load_documents
from retrievers.evaluation import load_queries
from retrievers.keyword import KeywordIndex, tokenize
from retrievers.knowledge_base.chroma_store import chunk_metadata


def oracle(texts: list[str]) -> bm25s.BM25:
    index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    index.index([tokenize(text) for text in texts], show_progress=False)
    return index


def corpus(name: str) -> tuple[list[Document], list[str]]:
    if name == "sample":
        docs = load_documents([REPO / "data/knowledge_base"]).documents
        questions = [doc.title for doc in docs] + ["保証期間は？", "How long is the warranty on the KH-300?"]
        return docs, questions
    folder = REPO / ("eval/ja/jsquad_dev" if name == "jsquad" else "eval/en/squad_dev")
    docs = load_documents([folder / "corpus.jsonl"]).documents[:300]
    ids = {doc.id for doc in docs}
    return docs, [q.text for q in load_queries(folder / "queries.jsonl") if q.relevant & ids][:60]


@pytest.mark.parametrize("name", ["sample", "jsquad", "squad"])
def test_scores_equal_bm25s_unmasked_and_masked(name: str) -> None:
    docs, questions = corpus(name)
    texts = [embedding_text(doc.title, doc.text) for doc in docs]
    index = KeywordIndex([doc.id for doc in docs], texts, [{} for _ in docs])
    whole = oracle(texts)
    keep = np.random.default_rng(7).random(len(docs)) < 0.4
    subset = oracle([text for text, kept in zip(texts, keep, strict=True) if kept])
    differs = 0
    for question in questions:
        tokens = tokenize(question)
        assert np.allclose(index.scores(question), whole.get_scores(tokens), rtol=1e-5, atol=1e-5), question
        masked = index.scores(question, keep)
        assert np.allclose(masked[keep], subset.get_scores(tokens), rtol=1e-5, atol=1e-5), question
        assert not masked[~keep].any()
        differs += not np.allclose(masked[keep], index.scores(question)[keep], rtol=1e-4)
    assert differs > len(questions) // 2  # control: the subset's own statistics change the scores


def test_a_query_repeating_a_token_counts_it_each_time_as_bm25s_does() -> None:
    texts = ["返品は30日以内", "保証は1年", "返品と交換の違い"]
    index = KeywordIndex(["a", "b", "c"], texts, [{}, {}, {}])
    question = "返品の返品"
    assert tokenize(question).count("返") == 2
    assert np.allclose(index.scores(question), oracle(texts).get_scores(tokenize(question)))


def test_idf_and_coverage_follow_the_mask() -> None:
    index = KeywordIndex(["a", "b", "c"], ["warranty two years", "warranty card", "store hours"], [{}, {}, {}])
    only_c = np.array([False, False, True])
    assert index.idf("warranti") < index.idf("warranti", only_c)  # rare among what may be seen
    assert index.coverage("warranty store", "warranty", only_c) > index.coverage("warranty store", "warranty")


def test_a_saved_index_scores_masked_searches_as_it_did(tmp_path: Path) -> None:
    docs, questions = corpus("sample")
    texts = [embedding_text(doc.title, doc.text) for doc in docs]
    index = KeywordIndex([doc.id for doc in docs], texts, [{"lang": doc.lang} for doc in docs])
    index.save(tmp_path / "saved")
    loaded = KeywordIndex.load(tmp_path / "saved")
    mask = index.mask({"lang": "en"})
    for question in questions[:10]:
        assert np.array_equal(loaded.scores(question, mask), index.scores(question, mask))


# ---------------------------------------------------------------------------- who sees which chunk

RULES = [  # (roles, tenant) of a document
    ((), None),
    (("staff",), None),
    (("member", "staff"), None),
    ((), "acme"),
    (("staff",), "acme"),
]
EXPECTED = {  # who sees which of RULES, written out
    ANONYMOUS: [True, False, False, False, False],
    Viewer.of(["member"]): [True, False, True, False, False],
    Viewer.of(["staff"]): [True, True, True, False, False],
    Viewer.of([], "acme"): [True, False, False, True, False],
    Viewer.of(["staff"], "acme"): [True, True, True, True, True],
    Viewer.of(["staff"], "globex"): [True, True, True, False, False],
    Viewer.of(["Staff", "staff,member"], "ACME"): [True, False, False, False, False],  # exact names only
}


def test_the_access_rule_for_one_document_and_for_every_chunk_at_once() -> None:
    docs = [
        Document(id=f"d{n}", text="the same text", lang="en", roles=roles, tenant=tenant)
        for n, (roles, tenant) in enumerate(RULES)
    ]
    metadatas = [chunk_metadata(doc, Chunk(f"{doc.id}::0", doc.id, 0, doc.text), 1) for doc in docs]
    index = KeywordIndex([f"{doc.id}::0" for doc in docs], [doc.text for doc in docs], metadatas)
    for viewer, expected in EXPECTED.items():
        assert [viewer.can_see(roles, tenant) for roles, tenant in RULES] == expected, viewer
        mask = index.access_mask(viewer)
        assert (mask is None and all(expected)) or list(mask) == expected, viewer  # type: ignore[arg-type]


def test_chunks_stored_before_access_rules_are_public() -> None:
    index = KeywordIndex(["a::0", "b::0"], ["old", "new"], [{}, {"roles": stored_roles(["staff"]), "tenant": ""}])
    assert list(index.access_mask(ANONYMOUS)) == [True, False]  # type: ignore[arg-type]
    assert index.access_mask(Viewer.of(["staff"])) is None  # sees everything: no mask at all


def test_viewers_with_different_roles_never_share_a_key() -> None:
    keys = {viewer.key for viewer in EXPECTED}
    assert len(keys) == len(EXPECTED)
    assert Viewer.of(["a,b"]).key != Viewer.of(["a", "b"]).key
    assert Viewer.of("b, a").key == Viewer.of(["a", "b"]).key
