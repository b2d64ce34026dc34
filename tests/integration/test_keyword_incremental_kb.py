"""A write made by this process updates its keyword index without reading Chroma again: the derived
index equals the one a rebuild from Chroma gives, serves the new version at once, is saved in the
background for other processes; a write over another process's version still rebuilds."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from retrievers.access import Viewer
from retrievers.documents import Document
from retrievers.embeddings import Embeddings
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base import KnowledgeBaseManager, keyword_upkeep, make_chroma_client

pytestmark = pytest.mark.integration

LONG = " ".join(f"Section {i} of the Kumo Stone manual covers its battery and colours." for i in range(30))
DOCS = [
    Document(id="warranty", title="Warranty", text="The Kumo Halo KH-300 has a two year warranty.", lang="en"),
    Document(id="returns", title="Returns", text="Returns are accepted within 30 days.", lang="en", roles=("staff",)),
    Document(id="manual", title="Kumo Stone manual", text=LONG, lang="en", category="product"),
    Document(id="hours-ja", title="営業時間", text="渋谷店は毎日11時から20時まで営業しています。", lang="ja"),
]
QUERIES = ["warranty KH-300", "battery colours section 7", "渋谷店の営業時間", "returns within 30 days", "waterproof"]


def counting_rebuilds(kb: KnowledgeBaseManager) -> list[int]:
    rebuilds: list[int] = []
    build_from_chroma = kb.keyword_upkeep.build_from_chroma

    def counting() -> KeywordIndex:
        rebuilds.append(1)
        return build_from_chroma()

    kb.keyword_upkeep.build_from_chroma = counting  # type: ignore[method-assign,assignment]
    return rebuilds


def assert_equals_a_rebuild(kb: KnowledgeBaseManager) -> None:
    index = kb.keyword_upkeep.index
    assert index is not None and kb.index_version == kb.store.read_version()
    rebuilt = type(kb.keyword_upkeep).build_from_chroma(kb.keyword_upkeep)  # the original, uncounted
    assert index.chunk_ids == rebuilt.chunk_ids and index.metadatas == rebuilt.metadatas
    for viewer in (Viewer.of([]), Viewer.of(["staff"])):
        mask = index.visible(viewer, {"lang": "en"})
        assert (mask is None) == (rebuilt.visible(viewer, {"lang": "en"}) is None)
        for query in QUERIES:
            assert np.array_equal(index.scores(query, mask), rebuilt.scores(query, mask)), query


async def top(kb: KnowledgeBaseManager, query: str) -> list[str]:
    return [hit["doc_id"] for hit in await kb.search(query, top_k=3, dense=False, viewer=Viewer.of(["staff"]))]


async def test_writes_of_this_process_update_the_index_without_a_rebuild(kb: KnowledgeBaseManager) -> None:
    await kb.index_documents(DOCS)
    assert await top(kb, "warranty") == ["warranty"]
    rebuilds = counting_rebuilds(kb)
    versions = {kb.index_version}

    short = DOCS[2].model_copy(update={"text": "The Kumo Stone is waterproof to IPX7."})  # fewer chunks
    await kb.index_documents([short])
    assert (await top(kb, "waterproof IPX7"))[0] == "manual"
    assert_equals_a_rebuild(kb)
    versions.add(kb.index_version)

    await kb.index_documents([Document(id="new", title="Gift cards", text="Gift cards never expire.", lang="en")])
    assert (await top(kb, "gift cards expire"))[0] == "new"
    assert_equals_a_rebuild(kb)
    versions.add(kb.index_version)

    assert await kb.update_index("warranty", "The KH-300 warranty now lasts three years.")
    assert await top(kb, "warranty three years") == ["warranty"]
    assert_equals_a_rebuild(kb)
    versions.add(kb.index_version)

    assert await kb.delete("hours-ja")
    assert "hours-ja" not in await top(kb, "渋谷店の営業時間")
    assert_equals_a_rebuild(kb)
    versions.add(kb.index_version)

    assert rebuilds == [] and len(versions) == 5  # every write a new version, none read from Chroma


async def written_by_another_process(kb: KnowledgeBaseManager, embeddings: Embeddings, tmp_path: Path) -> None:
    """`kb` holds DOCS and has its index; then another process writes a document of its own."""
    await kb.index_documents(DOCS)
    await kb.search("warranty")
    other = KnowledgeBaseManager(
        make_chroma_client(tmp_path / "data", None), "test-kb", embeddings, chunk_size=400, chunk_overlap=40
    )
    try:
        await other.index_documents([Document(id="theirs", title="Repairs", text="Repairs take a week.", lang="en")])
    finally:
        await other.close()


@pytest.mark.parametrize("logged", [True, False], ids=["change-log", "no-change-log"])
async def test_a_write_over_another_process_s_version_catches_up_by_the_change_log_else_rebuilds(
    kb: KnowledgeBaseManager, embeddings: Embeddings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: bool
) -> None:
    await written_by_another_process(kb, embeddings, tmp_path)
    if not logged:  # the other write's documents are unknown (a repair's stamp)
        monkeypatch.setattr(keyword_upkeep, "documents_between", lambda *args: None)
    rebuilds = counting_rebuilds(kb)
    kb.refresh_interval_s = 3600  # this process has not noticed the other write
    await kb.index_documents([Document(id="mine", title="Parking", text="Parking is free on Sundays.", lang="en")])
    # Its index was not of the version written over: the other write's documents and its own are
    # read back from Chroma when the change log names them, else the index is rebuilt.
    assert rebuilds == ([] if logged else [1])
    assert await top(kb, "repairs week") == ["theirs"] and await top(kb, "parking sundays") == ["mine"]
    assert_equals_a_rebuild(kb)


async def test_a_derived_index_is_saved_in_the_background_and_loaded_by_the_next_process(
    kb: KnowledgeBaseManager, embeddings: Embeddings, tmp_path: Path
) -> None:
    await kb.index_documents(DOCS)
    await kb.search("warranty")
    for n in range(3):
        await kb.index_documents([Document(id=f"note{n}", title="Note", text=f"Note number {n} on kiosks.", lang="en")])
    kb.keyword_upkeep.wait_for_saves()
    assert kb.index_version is not None
    saved = kb.keyword_upkeep.saved_path(kb.index_version)
    assert saved is not None and [p.name for p in saved.parent.iterdir()] == [saved.name]  # only the newest

    fresh = KnowledgeBaseManager(
        make_chroma_client(tmp_path / "data", None), "test-kb", embeddings, index_dir=tmp_path / "keyword-index"
    )
    rebuilds = counting_rebuilds(fresh)
    try:
        index = await fresh.keyword_index()
        assert rebuilds == [] and fresh.index_version == kb.index_version
        mine = kb.keyword_upkeep.index
        assert mine is not None and index.chunk_ids == mine.chunk_ids
        for query in QUERIES:
            assert np.array_equal(index.scores(query), mine.scores(query)), query
    finally:
        await fresh.close()


@pytest.mark.parametrize("logged", [True, False], ids=["change-log", "no-change-log"])
async def test_a_refresh_finishing_after_a_write_does_not_put_back_the_older_version(
    kb: KnowledgeBaseManager, embeddings: Embeddings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logged: bool
) -> None:
    await written_by_another_process(kb, embeddings, tmp_path)
    if not logged:
        monkeypatch.setattr(keyword_upkeep, "documents_between", lambda *args: None)
    release, building = threading.Event(), threading.Event()
    # The refresh reads the other write's documents (change log), or every chunk (rebuild): held there.
    owner, name = (kb.store, "chunks_of") if logged else (kb.keyword_upkeep, "build_from_chroma")
    read = getattr(owner, name)

    def slow_first_read(*args: object) -> object:
        found = read(*args)
        if not building.is_set():  # the refresh's read: held until the write below is committed
            building.set()
            release.wait(30)
        return found

    monkeypatch.setattr(owner, name, slow_first_read)
    refresh = asyncio.create_task(asyncio.to_thread(kb.keyword_upkeep.refresh))
    assert await asyncio.to_thread(building.wait, 30)
    await kb.index_documents([Document(id="mine", title="Parking", text="Parking is free on Sundays.", lang="en")])
    written = kb.index_version
    release.set()
    await refresh
    assert kb.index_version == written == kb.store.read_version()
    assert await top(kb, "parking sundays") == ["mine"] and await top(kb, "repairs week") == ["theirs"]
