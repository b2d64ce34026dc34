"""Ingest is crash-safe (issue 13, item 1): `voicerag ingest` killed with SIGKILL at any point of its
write, then run again, leaves exactly what a clean ingest leaves; until then readers see each
document whole, in one version, or not at all.

The scenario: a knowledge base ingested from `kb/docs.jsonl` (version "alpha"), then the file
edited (version "bravo": a large new document, one grown, one shrunk, one edited, one unchanged,
one removed: 2,103 chunks, three write batches and a batch of heads, 1,122 stale chunks to delete) and
ingested again, killed at every progress point of that write (embedded Chroma) or at a few (a
`chroma run` server). The run that was killed is the real CLI (`tests/ingest_driver.py`, with a
stand-in embedding model); the re-run and the readers are a knowledge base in this process.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import jsonl, write
from ingest_driver import ChromaServer, HashModel, cli_env, points, run_cli, start_cli

from retrievers.documents import Document, chunk_document, embedding_text, load_documents
from retrievers.embeddings import Embeddings, VectorCache
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base import IngestReport, KnowledgeBaseManager, make_chroma_client
from retrievers.knowledge_base.change_log import documents_between

pytestmark = pytest.mark.integration

SIZE, OVERLAP = 100, 10  # small chunks: thousands of them from a few hundred kB
SETTINGS = {"CHUNK_SIZE": str(SIZE), "CHUNK_OVERLAP": str(OVERLAP), "COLLECTION": "crash-kb"}
WORDS = ["cable", "charger", "speaker", "warranty", "battery", "strap", "case", "remote"]


def text(version: str, doc_id: str, sentences: int) -> str:
    """Every sentence names its version: a passage joining two versions holds both words."""
    return " ".join(
        f"{version} {doc_id} note {i}: the {WORDS[i % len(WORDS)]} ships on day {i % 28 + 1}." for i in range(sentences)
    )


def record(doc_id: str, version: str, sentences: int) -> dict[str, Any]:
    return {"id": doc_id, "title": f"{doc_id} manual", "text": text(version, doc_id, sentences), "lang": "en"}


ALPHA = [
    record("keep", "alpha", 10),
    record("grow", "alpha", 6),
    record("shrink", "alpha", 1300),
    record("edit", "alpha", 380),
    record("gone", "alpha", 100),
]
BRAVO = [
    record("keep", "alpha", 10),  # unchanged
    record("grow", "bravo", 1500),
    record("shrink", "bravo", 3),
    record("edit", "bravo", 380),  # as many chunks as before, every one rewritten
    record("big", "bravo", 1900),  # new; "gone" is no longer in the file
]


@dataclass
class Scenario:
    cwd: Path
    before: Path  # the data dir after the "alpha" ingest, copied for each kill
    reference: dict[str, Any]  # what a clean "bravo" ingest into a fresh store leaves

    def docs(self) -> list[Document]:
        return load_documents([self.cwd / "kb" / "docs.jsonl"]).documents


def manager(data_dir: Path, chroma_url: str | None = None, collection: str = "crash-kb") -> KnowledgeBaseManager:
    """A knowledge base configured as the CLI configures it for these settings."""
    return KnowledgeBaseManager(
        make_chroma_client(data_dir, chroma_url),
        collection,
        Embeddings(HashModel(), VectorCache(data_dir / "embedding-cache.sqlite")),
        chunk_size=SIZE,
        chunk_overlap=OVERLAP,
        index_dir=data_dir / "keyword-index",
    )


async def observed(kb: KnowledgeBaseManager, docs: list[Document]) -> dict[str, Any]:
    """What a reader can tell about a knowledge base: every chunk (id, text, metadata), the
    collection's metadata but its version and change log (how it got there), the keyword index, and
    a search per document."""
    got = kb.collection.get(include=["documents", "metadatas"])
    meta = dict(kb.collection.metadata or {})
    meta.pop("kb_version", None)
    meta.pop("kb_changes", None)
    index = await kb.keyword_index()
    searches = {}
    for doc in docs:
        first = chunk_document(doc, size=SIZE, overlap=OVERLAP)[0]
        hits = await kb.search(embedding_text(doc.title, first.text), top_k=1)
        searches[doc.id] = [(hit["doc_id"], hit["chunk_index"], hit["text"]) for hit in hits]
    return {
        "chunks": {
            i: (t, m) for i, t, m in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True)
        },
        "collection": meta,
        "keyword_index": sorted(index.chunk_ids),
        "documents": await kb.count(),
        "searches": searches,
    }


async def observe(
    data_dir: Path, docs: list[Document], chroma_url: str | None = None, collection: str = "crash-kb"
) -> dict[str, Any]:
    kb = manager(data_dir, chroma_url, collection)
    try:
        return await observed(kb, docs)
    finally:
        await kb.close()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    cwd = tmp_path_factory.mktemp("crash")
    write(cwd, "kb/docs.jsonl", jsonl(*ALPHA))
    before = cwd / "before"
    first = run_cli(cwd, cli_env(before, **SETTINGS), "ingest", "kb")
    assert first.returncode == 0, first.stderr
    write(cwd, "kb/docs.jsonl", jsonl(*BRAVO))
    clean = cwd / "clean"
    done = run_cli(cwd, cli_env(clean, **SETTINGS), "ingest", "kb")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("5 added, 0 updated, 0 unchanged, 0 removed; 2108 chunks written")
    docs = load_documents([cwd / "kb" / "docs.jsonl"]).documents
    return Scenario(cwd, before, asyncio.run(observe(clean, docs)))


# Where the killed ingests die (each test also checks that its ingest died exactly there, so that
# no kill can miss): the write planned, nothing written; the collection marked as being written;
# after each write batch; every chunk but the heads; the heads too; half the stale chunks deleted;
# the keyword index read from Chroma, not saved (every stale chunk deleted: the same store); the
# index saved, the version not stamped; stamped.
KILL_POINTS = [
    "embed:2103/2103",
    "write:0/2103",
    "write:1000/2103",
    "write:2000/2103",
    "write:2099/2103",
    "write:2103/2103",
    "delete:1000/1122",
    "index:2108/2108",
    "stamp:0/1",
    "stamp:1/1",
]
UNMARKED = {"embed:2103/2103", "stamp:1/1"}  # killed before the write began, or after it ended
SERVER_KILL_POINTS = ["write:1000/2103", "write:2099/2103", "stamp:0/1"]


def whole_versions(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Each document's text as `get_document` joins it back from its chunks."""
    joined = {}
    for fields in docs:
        doc = Document(**fields)
        joined[doc.id] = "\n".join(chunk.text for chunk in chunk_document(doc, size=SIZE, overlap=OVERLAP))
    return joined


async def assert_readers_see_no_mixed_document(kb: KnowledgeBaseManager) -> None:
    """Each document is one version (alpha or bravo), whole, or absent; no passage joins both."""
    alpha, bravo = whole_versions(ALPHA), whole_versions(BRAVO)
    for doc_id in alpha.keys() | bravo.keys():
        assert await kb.get_document(doc_id) in (alpha.get(doc_id), bravo.get(doc_id), None), doc_id
    for fields in ALPHA + BRAVO:
        for hit in await kb.search(f"{fields['id']} note 1 cable ships", top_k=10):
            assert not ("alpha " in hit["text"] and "bravo " in hit["text"]), hit


async def assert_rerun_leaves_what_a_clean_ingest_does(
    kb: KnowledgeBaseManager, scenario: Scenario, point: str
) -> IngestReport:
    docs = scenario.docs()
    before = kb.store.read_version()
    report = await kb.index_documents(docs, prune_sources=True)
    assert report.recovered == (point not in UNMARKED)
    assert report.added + report.updated + report.unchanged == len(docs)
    assert await observed(kb, docs) == scenario.reference
    # The repair's removals are not listed: a reader on the version before must compare every chunk.
    listed = documents_between(kb.store.read_state().changes, before, kb.store.read_version())
    assert (listed is None) == report.recovered
    return report


@pytest.mark.parametrize("point", KILL_POINTS)
async def test_an_ingest_killed_anywhere_then_run_again_equals_a_clean_ingest(
    scenario: Scenario, point: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(scenario.before, data_dir)
    killed = run_cli(scenario.cwd, {**cli_env(data_dir, **SETTINGS), "KILL_AT": point}, "ingest", "kb")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert points(killed.stdout)[-1] == point  # it died there, not before
    kb = manager(data_dir)
    try:
        await assert_readers_see_no_mixed_document(kb)
        await assert_rerun_leaves_what_a_clean_ingest_does(kb, scenario, point)
    finally:
        await kb.close()


async def test_an_ingest_killed_inside_a_chroma_write_then_run_again_equals_a_clean_ingest(
    scenario: Scenario, tmp_path: Path
) -> None:
    """Killed from outside, not at a checkpoint: 0.2 s into the second write batch (~0.5 s long)."""
    data_dir = tmp_path / "data"
    shutil.copytree(scenario.before, data_dir)
    running = start_cli(scenario.cwd, cli_env(data_dir, **SETTINGS), "ingest", "kb")
    running.wait_for("@ write:1000/")
    await asyncio.sleep(0.2)
    running.process.kill()
    killed = running.wait()
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert points(killed.stdout)[-1].startswith("write:")
    kb = manager(data_dir)
    try:
        # A control: the store itself now holds "grow" in both versions (its head still alpha, the
        # rest bravo), so the readers' check below has a mixture to keep out.
        raw = kb.store.chunks_by_id(["grow::0", "grow::1"])
        assert raw["grow::0"][0].startswith("alpha grow") and raw["grow::1"][0].startswith("bravo grow")
        await assert_readers_see_no_mixed_document(kb)
        await assert_rerun_leaves_what_a_clean_ingest_does(kb, scenario, "inside a write")
    finally:
        await kb.close()


def test_an_ingest_killed_while_repairing_is_repaired_by_the_next_and_the_cli_says_so(
    scenario: Scenario, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(scenario.before, data_dir)
    env = cli_env(data_dir, **SETTINGS)
    first = run_cli(scenario.cwd, {**env, "KILL_AT": "write:2000/"}, "ingest", "kb")
    second = run_cli(scenario.cwd, {**env, "KILL_AT": "repair:1000/"}, "ingest", "kb")
    assert (first.returncode, second.returncode) == (-signal.SIGKILL, -signal.SIGKILL)
    assert "repair:1000/" in points(second.stdout)[-1]
    third = run_cli(scenario.cwd, env, "ingest", "kb")
    assert third.returncode == 0, third.stderr
    assert third.stderr.startswith("repaired an earlier write that was cut short: removed ")
    summary = third.stdout.splitlines()[-1]
    # grow, shrink, edit (half rewritten) and big (headless) were removed by the repairs: added again.
    assert summary.startswith("4 added, 0 updated, 1 unchanged, 1 removed; 2103 chunks written")
    assert asyncio.run(observe(data_dir, scenario.docs())) == scenario.reference


# ---------------------------------------------------------------------------- a `chroma run` server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with ChromaServer(tmp_path_factory.mktemp("chroma-server")) as server:
        yield server


@pytest.mark.parametrize("point", SERVER_KILL_POINTS)
async def test_an_ingest_into_a_chroma_server_killed_then_run_again_equals_a_clean_ingest(
    scenario: Scenario, chroma_server: ChromaServer, point: str, tmp_path: Path
) -> None:
    collection = "crash-" + point.split("/")[0].replace(":", "-")
    source = (scenario.cwd / "kb" / "docs.jsonl").resolve().as_posix()
    kb = manager(tmp_path / "data", chroma_server.url, collection)
    try:
        await kb.index_documents([Document(**fields, source=source) for fields in ALPHA], prune_sources=True)
        env = cli_env(tmp_path / "data", **{**SETTINGS, "COLLECTION": collection, "CHROMA_URL": chroma_server.url})
        killed = run_cli(scenario.cwd, {**env, "KILL_AT": point}, "ingest", "kb")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert points(killed.stdout)[-1] == point
        await assert_readers_see_no_mixed_document(kb)
        await assert_rerun_leaves_what_a_clean_ingest_does(kb, scenario, point)
    finally:
        await kb.close()


# ---------------------------------------------------------------------------- stores written before this scheme


async def test_a_store_the_old_ingest_left_half_written_is_repaired_by_the_first_ingest(tmp_path: Path) -> None:
    """The issue's own damage: a head claiming 33 chunks with only 0-9 stored, no hash on the other
    chunks, no format mark, and the keyword index the old code saved (as the old ingest left them).
    Whole old documents keep serving, before that ingest and after it."""
    docs = [Document(**record(*fields)) for fields in (("manual", "alpha", 60), ("leaflet", "alpha", 8))]
    docs.append(Document(id="card", title="Card", text="A one-chunk card about the alpha charger.", lang="en"))
    model, rows = HashModel(), []
    for doc, kept in ((docs[0], 10), (docs[1], None), (docs[2], None)):
        chunks = chunk_document(doc, size=SIZE, overlap=OVERLAP)
        metas = [{"doc_id": doc.id, "title": doc.title, "chunk_index": c.index} for c in chunks]
        metas[0].update(content_hash=doc.content_hash, chunk_count=len(chunks))  # only the head had them
        rows += [
            (c.id, embedding_text(doc.title, c.text), c.text, meta) for c, meta in zip(chunks, metas, strict=True)
        ][:kept]
    old = make_chroma_client(tmp_path / "old", None).create_collection(
        "crash-kb", embedding_function=None, metadata={"embedding_model": model.name, "kb_version": "old"}
    )
    old.add(
        ids=[row[0] for row in rows],
        embeddings=model.passages([row[1] for row in rows]),
        documents=[row[2] for row in rows],
        metadatas=[row[3] for row in rows],  # type: ignore[misc]
    )
    old_metadata = [{"doc_id": row[3]["doc_id"]} for row in rows]  # what the old code indexed: no hashes
    KeywordIndex([r[0] for r in rows], [r[1] for r in rows], old_metadata).save(
        tmp_path / "old/keyword-index/crash-kb/old"
    )
    kb = manager(tmp_path / "old")
    try:
        card = embedding_text("Card", docs[2].text)
        hit = (await kb.search(card, top_k=1))[0]  # before any write: the old saved index is refused
        assert (hit["doc_id"], hit["text"]) == ("card", docs[2].text)
        report = await kb.index_documents(docs)
        assert (report.recovered, report.repaired, report.added, report.unchanged) == (True, 1, 1, 2)
        assert await kb.get_document("manual") == whole_versions([record("manual", "alpha", 60)])["manual"]
        first = chunk_document(docs[1], size=SIZE, overlap=OVERLAP)[0]
        hit = (await kb.search(embedding_text(docs[1].title, first.text), top_k=1))[0]
        assert (hit["doc_id"], hit["dense"]) == ("leaflet", 1.0)  # its old chunks still serve
        again = await kb.index_documents(docs)
        assert (again.recovered, again.unchanged, again.chunks_written) == (False, 3, 0)
    finally:
        await kb.close()
