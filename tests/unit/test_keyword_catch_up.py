"""A version written by another process is caught up from the chunks it changed, and the result equals
a rebuild from Chroma: same rows, same metadata, same scores (whole documents only, as a rebuild keeps).
Only the changed chunks' texts are read; a large change, a small index or chunks changing while being
read fall back to the rebuild. When the collection's change log names the changed documents, not even
the other chunks' metadata is listed: only those documents are read.

The "other process" writes raw chunks straight into a real embedded Chroma collection (tiny random
vectors: no model), including what a killed writer leaves (a document missing a chunk, chunks of two
versions, strays), so the consistency rule is exercised as well.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrievers.access import Viewer
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base import change_log, keyword_catch_up, make_chroma_client
from retrievers.knowledge_base.chroma_store import ChromaStore
from retrievers.knowledge_base.keyword_upkeep import KeywordUpkeep

WORDS = (
    "warranty battery colour repair parking sunday store hours return refund halo stone kumo manual "
    "charger cable screen water proof delivery week month price discount member card tokyo osaka"
).split()
QUERIES = ["warranty battery", "parking sunday hours", "refund return week", "kumo halo screen", "tokyo 渋谷"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChromaStore]:
    yield ChromaStore(make_chroma_client(tmp_path / "data", None), "catch-up", "test-model")


class OtherProcess:
    """Writes documents as chunks `doc::i` (head last), and stamps versions, as a writer elsewhere would."""

    def __init__(self, store: ChromaStore, seed: int) -> None:
        self.store, self.rng = store, random.Random(seed)
        self.docs: dict[str, int] = {}  # doc id → chunk count
        self.touched: set[str] = set()  # documents written or deleted since the last stamp

    def text(self) -> str:
        words = self.rng.choices(WORDS, k=self.rng.randint(3, 12))
        return " ".join(words) + (" 渋谷店の営業時間" if self.rng.random() < 0.1 else "")

    def write(self, doc_id: str, chunks: int, broken: bool = False) -> None:
        content_hash = uuid.uuid4().hex
        role = self.rng.choice(["", "staff"])
        metas: list[dict[str, Any]] = [
            {
                "doc_id": doc_id,
                "title": doc_id.title(),
                "category": self.rng.choice(["product", "support"]),
                "lang": "en",
                "chunk_index": i,
                "content_hash": content_hash,
                "roles": role,
                "tenant": "",
            }
            for i in range(chunks)
        ]
        metas[0]["chunk_count"] = chunks
        ids = [f"{doc_id}::{i}" for i in range(chunks)]
        if broken and chunks > 1:  # a killed writer: one chunk still of the old version
            metas[-1]["content_hash"] = "old"
        order = [*range(1, chunks), 0]  # the head last, as the writer does
        self.touched.add(doc_id)
        self.store.upsert(
            [ids[i] for i in order],
            np.random.default_rng(0).standard_normal((chunks, 8)).astype(np.float32),
            [self.text() for _ in order],
            [metas[i] for i in order],
        )
        stale = [f"{doc_id}::{i}" for i in range(chunks, self.docs.get(doc_id, 0))]
        if stale:
            self.store.delete(stale)
        self.docs[doc_id] = chunks

    def delete(self, doc_id: str) -> None:
        self.touched.add(doc_id)
        self.store.delete([f"{doc_id}::{i}" for i in range(self.docs.pop(doc_id))])

    def stamp(self, logged: bool) -> set[str]:
        """A new version; `logged`: with the documents it touched, as the product's writer stamps.
        Returns those documents."""
        base, touched = self.store.read_version(), set(self.touched)
        if logged:
            self.store.stamp_version(uuid.uuid4().hex, base, touched)
        else:
            self.store.stamp_version(uuid.uuid4().hex)  # a repair's stamp, or a writer before the log
        self.touched.clear()
        return touched

    def random_writes(self, count: int, logged: bool = False) -> set[str]:
        for _ in range(count):
            kind = self.rng.random()
            if kind < 0.35 or not self.docs:
                self.write(f"new-{uuid.uuid4().hex[:8]}", self.rng.randint(1, 4))
            elif kind < 0.7:
                self.write(self.rng.choice(sorted(self.docs)), self.rng.randint(1, 4))  # changed, maybe resized
            elif kind < 0.85:
                self.delete(self.rng.choice(sorted(self.docs)))
            else:
                self.write(self.rng.choice(sorted(self.docs)), self.rng.randint(2, 4), broken=True)
        if self.rng.random() < 0.5:  # a stray: a chunk with no head
            self.store.upsert(["stray-" + uuid.uuid4().hex[:6] + "::3"], np.ones((1, 8)), ["stray"], [{"doc_id": "x"}])
        return self.stamp(logged)


def assert_equals_a_rebuild(index: KeywordIndex, upkeep: KeywordUpkeep) -> None:
    rebuilt = KeywordUpkeep.build_from_chroma(upkeep)  # the class's own, not a test's counting one
    assert index.chunk_ids == rebuilt.chunk_ids and index.metadatas == rebuilt.metadatas
    for viewer in (Viewer.of([]), Viewer.of(["staff"])):
        for filters in ({}, {"category": "product"}):
            mask = index.visible(viewer, filters)
            other = rebuilt.visible(viewer, filters)
            assert (mask is None) == (other is None)
            for query in QUERIES:
                assert np.array_equal(index.scores(query, mask), rebuilt.scores(query, other)), query


class Reads:
    """Counts what the upkeep reads from Chroma: rebuilds, texts fetched by id, listings of every
    chunk's metadata, documents read by the change log."""

    def __init__(self, upkeep: KeywordUpkeep, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rebuilds = self.listings = 0
        self.fetched: list[str] = []
        self.documents: list[str] = []
        build, fetch = upkeep.build_from_chroma, upkeep.store.chunks_by_id
        pages, chunks_of = upkeep.store.pages, upkeep.store.chunks_of

        def counting_pages(*, texts: bool) -> Any:
            self.listings += not texts  # a rebuild reads the texts too
            return pages(texts=texts)

        def counting_chunks_of(doc_ids: Any) -> Any:
            self.documents.extend(doc_ids)
            return chunks_of(doc_ids)

        monkeypatch.setattr(upkeep.store, "pages", counting_pages)
        monkeypatch.setattr(upkeep.store, "chunks_of", counting_chunks_of)

        def counting_build(*args: Any) -> KeywordIndex:
            self.rebuilds += 1
            return build(*args)

        def counting_fetch(ids: Any) -> Any:
            self.fetched.extend(ids)
            return fetch(ids)

        monkeypatch.setattr(upkeep, "build_from_chroma", counting_build)
        monkeypatch.setattr(upkeep.store, "chunks_by_id", counting_fetch)


def started(store: ChromaStore, docs: int, seed: int) -> tuple[OtherProcess, KeywordUpkeep]:
    other = OtherProcess(store, seed)
    for n in range(docs):
        other.write(f"doc-{n:03d}", other.rng.randint(1, 5))
    other.stamp(logged=False)
    upkeep = KeywordUpkeep(store, None, refresh_interval_s=0)
    upkeep.refresh()
    return other, upkeep


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_writes_elsewhere_are_caught_up_equal_to_a_rebuild_reading_only_changed_texts(
    store: ChromaStore, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_catch_up, "MIN_CHUNKS", 50)
    other, upkeep = started(store, 60, seed)
    reads = Reads(upkeep, monkeypatch)
    for _ in range(3):
        before = upkeep.index
        assert before is not None
        other.random_writes(4)
        index = upkeep.refresh()
        assert upkeep.version == store.read_version()
        assert_equals_a_rebuild(index, upkeep)
        changed = {cid for cid, meta in zip(index.chunk_ids, index.metadatas, strict=True) if before.row(cid) is None}
        changed |= {
            cid
            for cid, meta in zip(index.chunk_ids, index.metadatas, strict=True)
            if (row := before.row(cid)) is not None and before.metadatas[row] != meta
        }
        assert set(reads.fetched) == changed and len(reads.fetched) == len(changed)  # no unchanged text read
        reads.fetched.clear()
    assert reads.rebuilds == 0


def test_a_large_change_is_rebuilt(store: ChromaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_catch_up, "MIN_CHUNKS", 10)
    other, upkeep = started(store, 20, seed=4)
    reads = Reads(upkeep, monkeypatch)
    for doc_id in sorted(other.docs)[:10]:
        other.write(doc_id, 2)  # half of the documents rewritten
    store.stamp_version(uuid.uuid4().hex)
    assert_equals_a_rebuild(upkeep.refresh(), upkeep)
    assert reads.rebuilds == 1 and reads.fetched == []


def test_a_small_index_is_rebuilt_at_the_default_threshold(store: ChromaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    other, upkeep = started(store, 20, seed=5)
    reads = Reads(upkeep, monkeypatch)
    other.random_writes(1)
    assert_equals_a_rebuild(upkeep.refresh(), upkeep)
    assert reads.rebuilds == 1


def test_chunks_changing_while_their_texts_are_read_fall_back_to_a_rebuild(
    store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_catch_up, "MIN_CHUNKS", 10)
    other, upkeep = started(store, 40, seed=6)
    other.write("doc-001", 2)
    store.stamp_version(uuid.uuid4().hex)
    fetch = store.chunks_by_id
    rebuilds: list[int] = []

    def written_meanwhile(ids: Any) -> Any:
        other.write("doc-001", 2)  # another write lands between the listing and the fetch
        monkeypatch.setattr(store, "chunks_by_id", fetch)
        return fetch(ids)

    build = upkeep.build_from_chroma

    def counting_build(*args: Any) -> KeywordIndex:
        rebuilds.append(1)
        return build(*args)

    monkeypatch.setattr(store, "chunks_by_id", written_meanwhile)
    monkeypatch.setattr(upkeep, "build_from_chroma", counting_build)
    assert_equals_a_rebuild(upkeep.refresh(), upkeep)  # the rebuild sees the newest chunks: exact
    assert rebuilds == [1]


def test_a_saved_copy_on_a_shared_disk_is_loaded_rather_than_caught_up(
    store: ChromaStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_catch_up, "MIN_CHUNKS", 10)
    other, _ = started(store, 30, seed=7)
    reader = KeywordUpkeep(store, tmp_path / "shared-index", refresh_interval_s=0)
    reader.refresh()
    reads = Reads(reader, monkeypatch)
    other.random_writes(2)
    writer = KeywordUpkeep(store, tmp_path / "shared-index", refresh_interval_s=0)
    writer.install(store.read_version())  # built and saved where the reader looks
    assert_equals_a_rebuild(reader.refresh(), reader)
    assert reads.rebuilds == 0 and reads.fetched == []  # loaded: neither rebuilt nor caught up


# ---------------------------------------------------------------------------------- the change log


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_logged_writes_elsewhere_are_caught_up_from_their_documents_alone_equal_to_a_rebuild(
    store: ChromaStore, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random writes (new, changed, resized, deleted, half-written documents, strays), stamped with
    the documents they touched: the reader reads those documents' chunks only — no listing of every
    chunk, no rebuild — one version behind or several, and ends equal to a rebuild."""
    other, upkeep = started(store, 60, seed)
    reads = Reads(upkeep, monkeypatch)
    for behind in (1, 3, 1):
        touched: set[str] = set()
        for _ in range(behind):
            touched |= other.random_writes(4, logged=True)
        index = upkeep.refresh()
        assert upkeep.version == store.read_version()
        assert_equals_a_rebuild(index, upkeep)
        assert set(reads.documents) == touched and reads.listings == 0
        reads.documents.clear()
    assert reads.rebuilds == 0 and reads.fetched == []


def test_a_version_with_no_list_on_the_way_falls_back_to_comparing_every_chunk(
    store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_catch_up, "MIN_CHUNKS", 50)
    other, upkeep = started(store, 60, seed=14)
    reads = Reads(upkeep, monkeypatch)
    other.random_writes(3, logged=True)
    other.random_writes(3, logged=False)  # a repair's stamp: what changed is not listed
    other.random_writes(3, logged=True)
    assert_equals_a_rebuild(upkeep.refresh(), upkeep)
    assert reads.listings == 1 and reads.documents == [] and reads.rebuilds == 0


def test_a_reader_further_behind_than_the_log_reaches_compares_every_chunk(
    store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_catch_up, "MIN_CHUNKS", 50)
    monkeypatch.setattr(change_log, "MAX_VERSIONS", 3)
    other, upkeep = started(store, 60, seed=15)
    reads = Reads(upkeep, monkeypatch)
    for _ in range(4):
        other.random_writes(1, logged=True)
    assert len(store.read_state().changes) == 3  # the reader's version fell off the log
    assert_equals_a_rebuild(upkeep.refresh(), upkeep)
    assert reads.listings == 1 and reads.documents == []


def test_a_document_half_written_during_a_catch_up_is_read_again_at_its_writes_version(
    store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader catches up while the next write is under way: that write's half-written document is
    left out (as a rebuild would), and the write's own log entry brings it back when stamped."""
    other, upkeep = started(store, 30, seed=16)
    other.write("doc-005", 3)
    other.stamp(logged=True)
    chunks_of = store.chunks_of

    def a_write_under_way(doc_ids: Any) -> Any:
        other.write("doc-005", 3, broken=True)  # the next writer has rewritten all but one chunk
        return chunks_of(doc_ids)

    monkeypatch.setattr(store, "chunks_of", a_write_under_way)
    index = upkeep.refresh()
    assert not any(cid.startswith("doc-005::") for cid in index.chunk_ids)  # not whole: left out
    monkeypatch.setattr(store, "chunks_of", chunks_of)
    other.write("doc-005", 3)  # that write completes
    other.stamp(logged=True)
    index = upkeep.refresh()
    assert [cid for cid in index.chunk_ids if cid.startswith("doc-005::")] == ["doc-005::0", "doc-005::1", "doc-005::2"]
    assert_equals_a_rebuild(index, upkeep)
