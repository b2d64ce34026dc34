"""Ingest is concurrency-safe (issue 13, item 2): writers of one knowledge base take turns, whatever
the store (embedded Chroma: a file lock; a `chroma run` server: a Redis lock with REDIS_URL, else a
file lock), and the CLI says when it waits. Two `voicerag ingest` runs with 15 overlapping documents
(different versions of the same ids) leave every document whole in one version, and a third run
reports exactly what changed.

Processes are the real CLI (`tests/ingest_driver.py`, with a stand-in embedding model); a run paused
at a checkpoint holds the lock while the other one starts, so the order is known.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings
from helpers import jsonl, write
from ingest_driver import ChromaServer, Ran, Running, cli_env, run_cli, start_cli

from retrievers.documents import Document, chunk_document, load_documents
from retrievers.embeddings import VectorCache

pytestmark = pytest.mark.integration

SETTINGS = {"CHUNK_SIZE": "100", "CHUNK_OVERLAP": "10"}
SHARED = [f"doc-{i:02d}" for i in range(15)]
WAITING = "waiting for another writer of {!r}…"


def text(version: str, doc_id: str, sentences: int) -> str:
    return " ".join(f"{version} {doc_id} point {i}: the strap fits size {i % 9 + 1}." for i in range(sentences))


@dataclass
class Corpora:
    cwd: Path
    a: dict[str, Document]  # a/docs.jsonl: the 15 shared ids ("alpha") and 3 of its own
    b: dict[str, Document]  # b/docs.jsonl: the 15 shared ids ("bravo", longer) and 2 of its own


@pytest.fixture
def corpora(tmp_path: Path) -> Corpora:
    a = [{"id": i, "text": text("alpha", i, 30), "lang": "en"} for i in [*SHARED, "a-1", "a-2", "a-3"]]
    b = [{"id": i, "text": text("bravo", i, 45), "lang": "en"} for i in [*SHARED, "b-1", "b-2"]]
    files = write(tmp_path, "a/docs.jsonl", jsonl(*a)), write(tmp_path, "b/docs.jsonl", jsonl(*b))
    loaded = [{doc.id: doc for doc in load_documents([file]).documents} for file in files]
    return Corpora(tmp_path, *loaded)


def stored_versions(client: chromadb.api.ClientAPI, corpora: Corpora, collection: str = "voicerag") -> dict[str, str]:
    """Document id → the input ("a" or "b") it is stored from, checking every document is exactly
    that version: its chunk ids, texts and content hash, nothing more, nothing less."""
    got = client.get_collection(collection).get(include=["documents", "metadatas"])
    chunks: dict[str, dict[str, tuple[str, Any]]] = {}
    for chunk_id, chunk_text, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True):
        chunks.setdefault(str(meta["doc_id"]), {})[chunk_id] = (chunk_text, meta["content_hash"])
    found = {}
    for doc_id, stored in chunks.items():
        candidates = [(name, docs[doc_id]) for name, docs in (("a", corpora.a), ("b", corpora.b)) if doc_id in docs]
        whole = [
            name
            for name, doc in candidates
            if stored == {c.id: (c.text, doc.content_hash) for c in chunk_document(doc, size=100, overlap=10)}
        ]
        assert len(whole) == 1, f"{doc_id} is stored as neither version whole: {sorted(stored)}"
        found[doc_id] = whole[0]
    return found


def embedded(data_dir: Path) -> chromadb.api.ClientAPI:
    return chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))


@dataclass
class Contest:
    first: Running  # paused while holding the lock until `resume()`
    second: Running  # waiting for it
    resume_file: Path

    def resume(self) -> None:
        self.resume_file.touch()


def first_holds_the_lock_while_second_waits(
    corpora: Corpora, env_a: dict[str, str], env_b: dict[str, str], collection: str = "voicerag"
) -> Contest:
    """`voicerag ingest a` paused just after taking the lock (its write marked, nothing written),
    and `voicerag ingest b` started after it, once `b` said it waits."""
    resume = corpora.cwd / "resume"
    first = start_cli(corpora.cwd, {**env_a, "PAUSE_AT": "write:0/", "RESUME_FILE": str(resume)}, "ingest", "a")
    first.wait_for("@ write:0/")
    second = start_cli(corpora.cwd, env_b, "ingest", "b")
    second.wait_for(WAITING.format(collection))
    return Contest(first, second, resume)


def both_finish(contest: Contest) -> tuple[Ran, Ran]:
    contest.resume()
    a, b = contest.first.wait(), contest.second.wait()
    assert (a.returncode, b.returncode) == (0, 0), (a.stderr, b.stderr)
    return a, b


def test_a_second_writer_waits_for_the_first_then_writes_exactly_its_changes(corpora: Corpora) -> None:
    data_dir = corpora.cwd / "data"
    env = cli_env(data_dir, **SETTINGS)
    a, b = both_finish(first_holds_the_lock_while_second_waits(corpora, env, env))
    assert a.stdout.splitlines()[-1].startswith("18 added, 0 updated, 0 unchanged, 0 removed; ")
    # `b` planned before it got the lock (against an empty store), then again under it.
    assert b.stdout.splitlines()[-1].startswith("2 added, 15 updated, 0 unchanged, 0 removed; ")
    lock = data_dir / "chroma" / "voicerag.writer.lock"
    assert b.stderr.splitlines() == [f"{WAITING.format('voicerag')} (lock: {lock})"]
    assert a.stderr == ""
    stored = stored_versions(embedded(data_dir), corpora)
    assert stored == {**{i: "b" for i in SHARED}, "a-1": "a", "a-2": "a", "a-3": "a", "b-1": "b", "b-2": "b"}
    third = run_cli(corpora.cwd, env, "ingest", "a")
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines()[-1].startswith("0 added, 15 updated, 3 unchanged, 0 removed; ")
    assert set(stored_versions(embedded(data_dir), corpora).values()) == {"a", "b"}


def test_two_writers_started_together_leave_each_document_whole_and_in_one_version(corpora: Corpora) -> None:
    data_dir = corpora.cwd / "data"
    env = cli_env(data_dir, **SETTINGS)
    # The embedding cache's SQLite file, created by both at once, can refuse one ("database is
    # locked" on `PRAGMA journal_mode=WAL`): a separate issue (retrievers/embeddings.py), not a writer's.
    VectorCache(data_dir / "embedding-cache.sqlite").close()
    runs = [start_cli(corpora.cwd, env, "ingest", name) for name in ("a", "b")]
    a, b = (run.wait() for run in runs)
    assert (a.returncode, b.returncode) == (0, 0), (a, b)
    stored = stored_versions(embedded(data_dir), corpora)
    last = {stored[i] for i in SHARED}
    assert len(last) == 1, stored  # one whole ingest after the other, never interleaved
    earlier = "a" if last == {"b"} else "b"
    again = run_cli(corpora.cwd, env, "ingest", earlier)
    own = 3 if earlier == "a" else 2
    assert again.stdout.splitlines()[-1].startswith(f"0 added, 15 updated, {own} unchanged, 0 removed; "), again


def test_a_writer_that_waits_too_long_gives_up_naming_the_lock_and_writes_nothing(corpora: Corpora) -> None:
    data_dir = corpora.cwd / "data"
    env = cli_env(data_dir, **SETTINGS)
    contest = first_holds_the_lock_while_second_waits(corpora, env, {**env, "INGEST_LOCK_TIMEOUT_S": "1"})
    b = contest.second.wait()  # while `a` still holds the lock
    contest.resume()
    a = contest.first.wait()
    assert (a.returncode, b.returncode) == (0, 1), (a.stderr, b.stderr)
    lock = data_dir / "chroma" / "voicerag.writer.lock"
    assert b.stderr.splitlines() == [
        f"{WAITING.format('voicerag')} (lock: {lock})",
        f"error: gave up waiting for another writer of 'voicerag' after 1 s (lock: {lock})",
    ]
    assert [line for line in b.stdout.splitlines() if not line.startswith("@ ")] == []  # progress only, no summary
    assert set(stored_versions(embedded(data_dir), corpora).values()) == {"a"}


# ---------------------------------------------------------------------------- a `chroma run` server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with ChromaServer(tmp_path_factory.mktemp("chroma-server")) as server:
        yield server


def test_writers_on_two_machines_take_turns_through_redis(
    corpora: Corpora, chroma_server: ChromaServer, redis_url: str
) -> None:
    """Two data dirs (two machines): only the Redis lock stands between them."""
    collection = "concurrent-redis"
    settings = {**SETTINGS, "CHROMA_URL": chroma_server.url, "REDIS_URL": redis_url, "COLLECTION": collection}
    env_a, env_b = (cli_env(corpora.cwd / name, **settings) for name in ("machine-a", "machine-b"))
    _, b = both_finish(first_holds_the_lock_while_second_waits(corpora, env_a, env_b, collection))
    key = f"voicerag:kb-writer:{chroma_server.url}/{collection}"
    assert b.stderr.splitlines() == [f"{WAITING.format(collection)} (lock: {key})"]
    assert b.stdout.splitlines()[-1].startswith("2 added, 15 updated, 0 unchanged, 0 removed; ")
    client = chromadb.HttpClient(port=chroma_server.port, settings=ChromaSettings(anonymized_telemetry=False))
    assert {stored_versions(client, corpora, collection)[i] for i in SHARED} == {"b"}


def test_writers_of_a_server_without_redis_take_turns_on_one_machine_and_are_told_so(
    corpora: Corpora, chroma_server: ChromaServer
) -> None:
    collection = "concurrent-file"
    env = cli_env(corpora.cwd / "data", **SETTINGS, CHROMA_URL=chroma_server.url, COLLECTION=collection)
    a, b = both_finish(first_holds_the_lock_while_second_waits(corpora, env, env, collection))
    note = "note: CHROMA_URL without REDIS_URL: writers are serialised on this machine only; set REDIS_URL"
    assert a.stderr.startswith(note)
    assert b.stderr.startswith(note) and WAITING.format(collection) in b.stderr
    client = chromadb.HttpClient(port=chroma_server.port, settings=ChromaSettings(anonymized_telemetry=False))
    assert {stored_versions(client, corpora, collection)[i] for i in SHARED} == {"b"}
