"""`KeywordIndex.updated` (a write applied without a rebuild) gives exactly the index a rebuild from
scratch gives: after every step of seeded random add/update/delete sequences, the same rows, scores
(bit for bit), hits and ties, masks, filters, access control, idf. And a search running while the
index is replaced sees the old index or the new one, never a mixture."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REPO

from retrievers.access import ANONYMOUS, Viewer, stored_roles
from retrievers.documents import load_documents
from retrievers.keyword import KeywordIndex, tokenize

Chunks = dict[str, tuple[str, dict[str, Any]]]  # chunk id → (text, metadata)

QUERIES = [
    "How long is the warranty?",
    "Which university was founded first in the city",
    "the the the",  # stopwords only: no token
    "保証期間は何年ですか",
    "東京の大学",
    "KH-300の返品",
    "population of the capital in 1900",
]
VIEWERS = [ANONYMOUS, Viewer.of(["staff"]), Viewer.of([], "acme"), Viewer.of(["staff", "member"], "acme")]
FILTERS: list[dict[str, Any]] = [{}, {"category": "product"}, {"lang": "ja"}, {"category": ["support", "general"]}]
ACCESS = [((), ""), (("staff",), ""), (("member",), "acme"), ((), "acme")]


def paragraphs() -> list[tuple[str, str]]:
    """(text, language) of real paragraphs, both languages, plus exact duplicates (ties)."""
    texts: list[tuple[str, str]] = []
    for folder, lang in (("eval/ja/jsquad_dev", "ja"), ("eval/en/squad_dev", "en")):
        docs = load_documents([REPO / folder / "corpus.jsonl"]).documents[:40]
        texts += [(f"{doc.title}\n{doc.text[:400]}", lang) for doc in docs]
    texts += [("The warranty is two years.", "en")] * 3 + [("保証期間は2年です。", "ja")] * 3
    return texts


PARAGRAPHS = paragraphs()


def document(rng: random.Random, doc_id: str) -> Chunks:
    """A document of 1-4 chunks, with a random category, language and access rule."""
    roles, tenant = rng.choice(ACCESS)
    fields = {
        "doc_id": doc_id,
        "category": rng.choice(["product", "support", "general"]),
        "content_hash": f"{rng.random():.12f}",
        "roles": stored_roles(roles),
        "tenant": tenant,
    }
    chunks: Chunks = {}
    for i in range(rng.randint(1, 4)):
        text, lang = rng.choice(PARAGRAPHS)
        chunks[f"{doc_id}::{i}"] = (text, {**fields, "lang": lang})
    return chunks


def rebuilt(chunks: Chunks) -> KeywordIndex:
    ids = sorted(chunks)
    return KeywordIndex(ids, [chunks[i][0] for i in ids], [chunks[i][1] for i in ids])


def assert_same(index: KeywordIndex, expected: KeywordIndex) -> None:
    assert len(index) == len(expected)
    assert index.chunk_ids == expected.chunk_ids and index.metadatas == expected.metadatas
    assert all(index.row(chunk_id) == row for row, chunk_id in enumerate(expected.chunk_ids))
    assert index.row("absent::0") is None
    masks: list[np.ndarray | None] = [None]
    for viewer in VIEWERS:
        for filters in FILTERS:
            mask, wanted = index.visible(viewer, filters), expected.visible(viewer, filters)
            assert (mask is None and wanted is None) or np.array_equal(mask, wanted), (viewer, filters)  # type: ignore[arg-type]
            masks.append(mask)
    for query in QUERIES:
        for mask in masks:
            assert np.array_equal(index.scores(query, mask), expected.scores(query, mask)), query
            assert index.search(query, 5, mask) == expected.search(query, 5, mask), query
            assert index.query_weights(query, mask) == expected.query_weights(query, mask), query
            for token in tokenize(query):
                assert index.idf(token, mask) == expected.idf(token, mask), token
            text = "保証 warranty 大学"
            assert index.coverage(query, text, mask) == expected.coverage(query, text, mask), query


def random_write(rng: random.Random, chunks: Chunks, next_id: list[int]) -> tuple[list[str], Chunks]:
    """A write as the knowledge base makes one: (chunk ids removed, chunks added), applied to `chunks`."""
    doc_ids = sorted({meta["doc_id"] for _, meta in chunks.values()})
    kind = rng.choice(["add", "add", "update", "delete", "batch"]) if doc_ids else "add"
    targets: list[tuple[str, bool]] = []  # (document, written again?)
    if kind == "add":
        targets = [(f"doc{next_id[0]:03d}", True)]
        next_id[0] += 1
    elif kind == "update":
        targets = [(rng.choice(doc_ids), True)]
    elif kind == "delete":
        targets = [(rng.choice(doc_ids), False)]
    else:  # several documents at once, as one ingest
        targets = [(doc_id, rng.random() < 0.6) for doc_id in rng.sample(doc_ids, min(3, len(doc_ids)))]
        targets.append((f"doc{next_id[0]:03d}", True))
        next_id[0] += 1
    removed: list[str] = []
    added: Chunks = {}
    for doc_id, written in targets:
        old = [chunk_id for chunk_id, (_, meta) in chunks.items() if meta["doc_id"] == doc_id]
        new = document(rng, doc_id) if written else {}
        removed += [chunk_id for chunk_id in old if chunk_id not in new]  # stale: past the new count
        added |= new
    for chunk_id in removed:
        del chunks[chunk_id]
    chunks |= added
    return removed, added


def apply(index: KeywordIndex, removed: list[str], added: Chunks) -> KeywordIndex:
    ids = list(added)
    return index.updated(removed, ids, [added[i][0] for i in ids], [added[i][1] for i in ids])


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_writes_give_the_index_a_rebuild_gives(seed: int) -> None:
    rng = random.Random(seed)
    next_id = [0]
    chunks: Chunks = {}
    for n in range(rng.randint(0, 12)):
        chunks |= document(rng, f"doc{n:03d}")
        next_id[0] = n + 1
    index = rebuilt(chunks)
    for _ in range(25):
        removed, added = random_write(rng, chunks, next_id)
        before = index
        index = apply(index, removed, added)
        assert_same(index, rebuilt(chunks))
        assert before is not index
    assert len(index) > 0  # control: the sequence left something to search


def test_an_update_leaves_the_old_index_as_it_was() -> None:
    rng = random.Random(9)
    chunks = {**document(rng, "a"), **document(rng, "b")}
    old = rebuilt(chunks)
    snapshot = rebuilt(chunks)
    apply(old, ["a::0"], {"c::0": ("保証期間は3年、the warranty covers batteries", {"doc_id": "c"})})
    assert_same(old, snapshot)


def test_deleting_every_chunk_and_adding_to_an_empty_index() -> None:
    empty = KeywordIndex([], [], [])
    one = empty.updated([], ["a::0"], ["warranty two years"], [{"doc_id": "a"}])
    assert [h.row for h in one.search("warranty", 3)] == [0]
    none = one.updated(["a::0"], [], [], [])
    assert len(none) == 0 and none.search("warranty", 3) == [] and none.idf("warranti") == empty.idf("warranti")


def test_removing_an_absent_chunk_changes_nothing_and_repeated_ids_are_refused() -> None:
    index = rebuilt(document(random.Random(5), "a"))
    assert_same(index.updated(["nothing::0"], [], [], []), index)
    with pytest.raises(ValueError, match="repeat"):
        index.updated([], ["b::0", "b::0"], ["x", "y"], [{}, {}])


def test_an_updated_index_saves_and_loads_as_it_scores(tmp_path: Path) -> None:
    rng = random.Random(11)
    chunks: Chunks = {}
    for n in range(6):
        chunks |= document(rng, f"doc{n}")
    index = rebuilt(chunks)
    for _ in range(5):
        index = apply(index, *random_write(rng, chunks, [100 + _]))
    index.save(tmp_path / "saved")
    assert_same(KeywordIndex.load(tmp_path / "saved"), rebuilt(chunks))


def test_a_search_during_updates_sees_the_old_index_or_the_new_one() -> None:
    """One thread swaps in updated indexes (one reference, as the knowledge base does) while others
    search: every result is the result of one of the versions, never of a half-built index."""
    rng = random.Random(21)
    chunks: Chunks = {}
    for n in range(30):
        chunks |= document(rng, f"doc{n:03d}")
    writes = []
    replay = dict(chunks)
    for n in range(40):
        writes.append(random_write(rng, replay, [1000 + n]))
    expected: set[tuple[str, tuple[tuple[str, float], ...]]] = set()
    replay = dict(chunks)

    def results(index: KeywordIndex) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
        return [(q, tuple((index.chunk_ids[h.row], h.score) for h in index.search(q, 5))) for q in QUERIES]

    expected.update(results(rebuilt(replay)))
    for removed, added in writes:
        for chunk_id in removed:
            del replay[chunk_id]
        replay |= added
        expected.update(results(rebuilt(replay)))

    current = {"index": rebuilt(chunks)}
    seen: list[tuple[str, tuple[tuple[str, float], ...]]] = []
    done = threading.Event()

    def search() -> None:
        while not done.is_set():
            seen.extend(results(current["index"]))

    readers = [threading.Thread(target=search) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for removed, added in writes:
            current["index"] = apply(current["index"], removed, added)
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert seen and all(result in expected for result in seen)
    assert len(set(seen)) > len(QUERIES)  # control: the readers saw more than one version
