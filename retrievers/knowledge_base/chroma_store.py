"""The Chroma collection of one knowledge base: the source of truth, and every call made to it.

Storage scheme: chunk ids are `doc_id::i`; every chunk carries its document's fields and content
hash (the version of the document it belongs to); the head chunk (`::0`) also carries the chunk
count, so "is this document stored, and unchanged?" is a lookup by id, never a scan (what counts
as stored: `consistency.py`). The collection's metadata holds the embedding model (checked on
open), `kb_version` (a stamp that changes with every committed write), `kb_format` (the storage
scheme), `kb_changes` (which documents each recent version changed: `change_log.py`) and, while a
write is under way, `kb_writing`: still there when a writer is found dead.

Every Chroma call of the knowledge base is a method here, and goes through `ChromaEndpoint.calling`:
failures become `ServiceError`, timeouts `ChromaTimeout` (the timeout itself is the client's,
`chroma_client.py`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Where
from chromadb.errors import NotFoundError

from retrievers.access import stored_roles
from retrievers.documents import Chunk, Document
from retrievers.errors import UserInputError
from retrievers.knowledge_base import change_log
from retrievers.knowledge_base.change_log import Change
from retrievers.knowledge_base.chroma_client import ChromaEndpoint

WRITE_BATCH = 1000  # chunks per Chroma upsert (Chroma's own cap is ~5k)
_PAGE = 5000  # chunks per page when reading many
_DOCUMENTS_PER_GET = 100  # documents per metadata-filtered read (their chunks come back in one page)
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]")
EMPTY_VERSION = "empty"  # the version of a collection nothing was ever written to
STORAGE_FORMAT = 2  # 2: every chunk carries its document's content hash

StoredChunk = tuple[str, dict[str, Any]]  # (text, metadata)
Row = tuple[str, str, dict[str, Any]]  # (chunk id, text, metadata)


@dataclass(frozen=True, slots=True)
class StoreState:
    """The collection's metadata, read fresh."""

    version: str
    writing: bool  # a write began and never finished: its writer died or failed half-way
    current_format: bool  # False: written by an older scheme, not verified since
    changes: list[Change]  # the recent versions' changes (`change_log.py`), oldest first


def chunk_metadata(doc: Document, chunk: Chunk, chunk_count: int, content_hash: str | None = None) -> dict[str, Any]:
    """What a stored chunk carries: its document's fields and hash; the head chunk also the count.
    `content_hash`: `doc.content_hash` when the caller has it (it hashes the whole text)."""
    meta: dict[str, Any] = dict(doc.metadata)
    meta.update(
        doc_id=doc.id,
        title=doc.title,
        category=doc.category,
        lang=doc.lang,
        source=doc.source,
        chunk_index=chunk.index,
        content_hash=content_hash or doc.content_hash,  # on every chunk: readers tell versions apart
        # Who may see it, on every chunk (the search masks chunks); written even when empty, since
        # an upsert keeps metadata keys it is not given: a document made public must lose its roles.
        roles=stored_roles(doc.roles),
        tenant=doc.tenant or "",
    )
    if chunk.pages is not None:  # a PDF's chunk: an answer can cite "page 3"
        first, last = chunk.pages
        meta.update(page=first, pages=str(first) if first == last else f"{first}-{last}")
    if chunk.index == 0:  # the head chunk describes the document
        meta.update(chunk_count=chunk_count)
    return meta


def document_chunk_ids(doc_id: str, head: dict[str, Any]) -> list[str]:
    """Ids of every chunk of a stored document, from its head chunk's metadata."""
    return [Chunk.make_id(doc_id, i) for i in range(int(head.get("chunk_count", 1) or 1))]


class ChromaStore:
    """One collection: opened lazily (with the embedding-model check), read and written in batches."""

    def __init__(self, client: ClientAPI, name: str, embedding_model: str) -> None:
        if not _COLLECTION_NAME.fullmatch(name):
            raise UserInputError(
                f"COLLECTION: {name!r} must be 3-512 characters of letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        self.client = client
        self.name = name
        self.embedding_model = embedding_model
        self.endpoint = ChromaEndpoint.of(client)
        self._collection: Collection | None = None

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            self._collection = self._open()
        return self._collection

    def _open(self) -> Collection:
        with self.endpoint.calling(f"opening collection {self.name!r}"):
            collection = self.client.get_or_create_collection(
                self.name,
                embedding_function=None,  # never Chroma's default model: it downloads one
                configuration={"hnsw": {"space": "cosine"}},
                metadata=self._metadata(EMPTY_VERSION, []),
            )
        built_with = (collection.metadata or {}).get("embedding_model")
        if built_with and built_with != self.embedding_model:
            raise UserInputError(
                f"EMBEDDINGS: collection {self.name!r} was built with {built_with}, "
                f"not {self.embedding_model}; use another COLLECTION or re-create this one"
            )
        return collection

    # ---- the collection's state: version stamp, write in progress, storage format

    def _metadata(self, version: str, changes: list[Change], writing: str | None = None) -> dict[str, Any]:
        """The collection's whole metadata (Chroma replaces it as a whole on every change)."""
        meta: dict[str, Any] = {
            "embedding_model": self.embedding_model,
            "kb_version": version,
            "kb_format": STORAGE_FORMAT,
        }
        if changes:
            meta["kb_changes"] = change_log.dump(changes)
        if writing:
            meta["kb_writing"] = writing
        return meta

    def read_state(self) -> StoreState:
        """The collection's state, read fresh (another process may have written)."""
        with self.endpoint.calling(f"reading collection {self.name!r}"):
            try:
                meta = self.client.get_collection(self.name, embedding_function=None).metadata or {}
            except NotFoundError:  # nothing ingested yet (or deleted): an empty knowledge base
                self._collection = None
                meta = self.collection.metadata or {}
        return StoreState(
            version=str(meta.get("kb_version", EMPTY_VERSION)),
            writing=bool(meta.get("kb_writing")),
            current_format=meta.get("kb_format") == STORAGE_FORMAT,
            changes=change_log.parse(meta.get("kb_changes")),
        )

    def read_version(self) -> str:
        return self.read_state().version

    def begin_write(self) -> None:
        """Mark a write as under way (the version stays: readers keep the last committed one)."""
        state = self.read_state()
        with self.endpoint.calling(f"marking a write on {self.name!r}"):
            self.collection.modify(metadata=self._metadata(state.version, state.changes, writing=uuid.uuid4().hex))

    def stamp_version(self, version: str, base: str | None = None, documents: Iterable[str] | None = None) -> None:
        """Announce a new version, and end the write under way: every process updates its keyword
        index on seeing it. `base` (the version written over) and `documents` (every document the
        write touched) go in the change log in the same call; without them the log says "unknown"
        (a repair), and readers compare every chunk."""
        changes = change_log.appended(self.read_state().changes, version, base or "", documents if base else None)
        with self.endpoint.calling(f"stamping a version on {self.name!r}"):
            self.collection.modify(metadata=self._metadata(version, changes))

    # ---- reads

    def count(self) -> int:
        with self.endpoint.calling(f"counting the chunks of {self.name!r}"):
            return self.collection.count()

    def pages(self, *, texts: bool) -> Iterator[list[Row]]:
        """Every chunk, page by page: (id, text or "", metadata)."""
        include: Any = ["documents", "metadatas"] if texts else ["metadatas"]
        offset = 0
        while True:
            with self.endpoint.calling(f"reading the chunks of {self.name!r}"):
                page = self.collection.get(include=include, limit=_PAGE, offset=offset)
            documents = page.get("documents") or [""] * len(page["ids"])
            metadatas = page["metadatas"] or [{}] * len(page["ids"])
            yield [
                (chunk_id, text or "", dict(meta or {}))
                for chunk_id, text, meta in zip(page["ids"], documents, metadatas, strict=True)
            ]
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    def all_chunks(self) -> Iterator[Row]:
        """(id, text, metadata) of every chunk."""
        for page in self.pages(texts=True):
            yield from page

    def heads(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Head-chunk metadata of the given documents that exist, by id (a lookup by id, no scan)."""
        heads: dict[str, dict[str, Any]] = {}
        ids = [Chunk.make_id(doc_id, 0) for doc_id in doc_ids]
        for start in range(0, len(ids), _PAGE):
            with self.endpoint.calling(f"reading documents of {self.name!r}"):
                page = self.collection.get(ids=ids[start : start + _PAGE], include=["metadatas"])
            for meta in page["metadatas"] or []:
                if meta:
                    heads[str(meta["doc_id"])] = dict(meta)
        return heads

    def heads_from_sources(self, sources: set[str]) -> dict[str, dict[str, Any]]:
        """Head-chunk metadata, by document id, of the documents ingested from one of `sources`."""
        found: dict[str, dict[str, Any]] = {}
        for source in sorted(sources):
            with self.endpoint.calling(f"reading documents of {self.name!r}"):
                page = self.collection.get(
                    where={"$and": [{"source": source}, {"chunk_index": 0}]}, include=["metadatas"]
                )
            for meta in page["metadatas"] or []:
                if meta:
                    found[str(meta["doc_id"])] = dict(meta)
        return found

    def chunks_of(self, doc_ids: Iterable[str]) -> list[Row]:
        """Every stored chunk of the given documents, whole or not (a metadata filter, no scan)."""
        wanted = sorted(doc_ids)
        rows: list[Row] = []
        for start in range(0, len(wanted), _DOCUMENTS_PER_GET):
            batch = wanted[start : start + _DOCUMENTS_PER_GET]
            where = cast(Where, {"doc_id": {"$in": batch}})  # mypy reads "$in" as a str, not Chroma's Literal
            with self.endpoint.calling(f"reading documents of {self.name!r}"):
                page = self.collection.get(where=where, include=["documents", "metadatas"])
            documents, metadatas = page["documents"] or [], page["metadatas"] or []
            rows.extend(
                (chunk_id, text or "", dict(meta or {}))
                for chunk_id, text, meta in zip(page["ids"], documents, metadatas, strict=True)
            )
        return rows

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, StoredChunk]:
        """The chunks that exist among `chunk_ids`: id → (text, metadata)."""
        if not chunk_ids:
            return {}
        with self.endpoint.calling(f"reading chunks of {self.name!r}"):
            page = self.collection.get(ids=list(chunk_ids), include=["documents", "metadatas"])
        return {
            chunk_id: (text or "", dict(meta or {}))
            for chunk_id, text, meta in zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True)
        }

    def nearest(self, vector: np.ndarray, limit: int, among: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the `limit` chunks nearest to `vector`, best first: of every chunk,
        or only of the chunks `among` (exact for a subset; slower than an unfiltered query)."""
        if among is not None and not among:
            return []
        restrict: dict[str, Any] = {} if among is None else {"ids": list(among)}
        with self.endpoint.calling(f"searching {self.name!r}"):
            result = self.collection.query(
                query_embeddings=[vector], n_results=max(1, limit), include=["distances"], **restrict
            )
        distances = (result["distances"] or [[]])[0]
        return [(chunk_id, 1.0 - float(dist)) for chunk_id, dist in zip(result["ids"][0], distances, strict=True)]

    # ---- writes (in batches; `writer.py` decides what and in which order)

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Write chunks in batches of `WRITE_BATCH`; `on_batch` gets the number written in each."""
        for start in range(0, len(ids), WRITE_BATCH):
            stop = min(start + WRITE_BATCH, len(ids))
            with self.endpoint.calling(f"writing chunks to {self.name!r}"):
                self.collection.upsert(
                    ids=list(ids[start:stop]),
                    embeddings=vectors[start:stop],
                    documents=list(texts[start:stop]),
                    metadatas=list(metadatas[start:stop]),
                )
            if on_batch:
                on_batch(stop - start)

    def delete(self, chunk_ids: Sequence[str], on_batch: Callable[[int], None] | None = None) -> None:
        """Delete chunks in batches; `on_batch` gets the number deleted in each."""
        for start in range(0, len(chunk_ids), WRITE_BATCH):
            batch = list(chunk_ids[start : start + WRITE_BATCH])
            with self.endpoint.calling(f"deleting chunks from {self.name!r}"):
                self.collection.delete(ids=batch)
            if on_batch:
                on_batch(len(batch))
