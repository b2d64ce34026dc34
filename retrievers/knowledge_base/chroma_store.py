"""The Chroma collection of one knowledge base: the source of truth, and every call made to Chroma.

Storage scheme: chunk ids are `doc_id::i`; every chunk carries its document's fields; the head
chunk (`::0`) also carries the content hash and chunk count, so "is this document stored, and
unchanged?" is a lookup by id, never a scan. The collection's metadata holds the embedding model
(checked on open) and `kb_version`, a stamp that changes with every write.

Every Chroma call of the knowledge base is a method here: the one place for call timeouts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

from retrievers.documents import Chunk, Document
from retrievers.errors import ServiceError, UserInputError

WRITE_BATCH = 1000  # chunks per Chroma upsert (Chroma's own cap is ~5k)
_PAGE = 5000  # chunks per page when reading many
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]")
EMPTY_VERSION = "empty"  # the version of a collection nothing was ever written to

StoredChunk = tuple[str, dict[str, Any]]  # (text, metadata)


def make_chroma_client(data_dir: Path, chroma_url: str | None) -> ClientAPI:
    """An embedded PersistentClient in `data_dir/chroma`, or an HttpClient for `chroma_url`."""
    settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(str(chroma_url))
        try:
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=settings,
            )
        except Exception as exc:
            raise ServiceError(f"CHROMA_URL: cannot reach Chroma at {chroma_url} ({exc})") from None
    return chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=settings)


def chunk_metadata(doc: Document, chunk: Chunk, chunk_count: int) -> dict[str, Any]:
    """What a stored chunk carries: its document's fields; the head chunk also hash and count."""
    meta: dict[str, Any] = dict(doc.metadata)
    meta.update(
        doc_id=doc.id,
        title=doc.title,
        category=doc.category,
        lang=doc.lang,
        source=doc.source,
        chunk_index=chunk.index,
    )
    if chunk.index == 0:  # the head chunk describes the document
        meta.update(content_hash=doc.content_hash, chunk_count=chunk_count)
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
        self._collection: Collection | None = None

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            self._collection = self._open()
        return self._collection

    def _open(self) -> Collection:
        try:
            collection = self.client.get_or_create_collection(
                self.name,
                embedding_function=None,  # never Chroma's default model: it downloads one
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedding_model": self.embedding_model, "kb_version": EMPTY_VERSION},
            )
        except Exception as exc:
            raise ServiceError(f"Chroma: cannot open collection {self.name!r} ({exc})") from None
        built_with = (collection.metadata or {}).get("embedding_model")
        if built_with and built_with != self.embedding_model:
            raise UserInputError(
                f"EMBEDDINGS: collection {self.name!r} was built with {built_with}, "
                f"not {self.embedding_model}; use another COLLECTION or re-create this one"
            )
        return collection

    # ---- the version stamp

    def read_version(self) -> str:
        """The collection's current version, read fresh (another process may have written)."""
        try:
            collection = self.client.get_collection(self.name, embedding_function=None)
        except NotFoundError:  # nothing ingested yet (or deleted): an empty knowledge base
            self._collection = None
            collection = self.collection
        return str((collection.metadata or {}).get("kb_version", EMPTY_VERSION))

    def stamp_version(self, version: str) -> None:
        """Announce a new version: every process rebuilds (or loads) its keyword index on seeing it."""
        self.collection.modify(metadata={"embedding_model": self.embedding_model, "kb_version": version})

    # ---- reads

    def count(self) -> int:
        return self.collection.count()

    def all_chunks(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(id, text, metadata) of every chunk, page by page."""
        offset = 0
        while True:
            page = self.collection.get(include=["documents", "metadatas"], limit=_PAGE, offset=offset)
            for chunk_id, text, meta in zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True):
                yield chunk_id, text or "", dict(meta or {})
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    def heads(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Head-chunk metadata of the given documents that exist, by id (a lookup by id, no scan)."""
        heads: dict[str, dict[str, Any]] = {}
        ids = [Chunk.make_id(doc_id, 0) for doc_id in doc_ids]
        for start in range(0, len(ids), _PAGE):
            page = self.collection.get(ids=ids[start : start + _PAGE], include=["metadatas"])
            for meta in page["metadatas"] or []:
                if meta:
                    heads[str(meta["doc_id"])] = dict(meta)
        return heads

    def heads_from_sources(self, sources: set[str]) -> dict[str, dict[str, Any]]:
        """Head-chunk metadata, by document id, of the documents ingested from one of `sources`."""
        found: dict[str, dict[str, Any]] = {}
        for source in sorted(sources):
            page = self.collection.get(where={"$and": [{"source": source}, {"chunk_index": 0}]}, include=["metadatas"])
            for meta in page["metadatas"] or []:
                if meta:
                    found[str(meta["doc_id"])] = dict(meta)
        return found

    def chunks_by_id(self, chunk_ids: Sequence[str]) -> dict[str, StoredChunk]:
        """The chunks that exist among `chunk_ids`: id → (text, metadata)."""
        if not chunk_ids:
            return {}
        page = self.collection.get(ids=list(chunk_ids), include=["documents", "metadatas"])
        return {
            chunk_id: (text or "", dict(meta or {}))
            for chunk_id, text, meta in zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True)
        }

    def nearest(self, vector: np.ndarray, limit: int) -> list[tuple[str, float]]:
        """(chunk id, cosine) of the `limit` chunks nearest to `vector`, best first (unfiltered)."""
        result = self.collection.query(query_embeddings=[vector], n_results=max(1, limit), include=["distances"])
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
        """Write chunks in batches of `WRITE_BATCH`; `on_batch` gets the number written so far."""
        for start in range(0, len(ids), WRITE_BATCH):
            stop = start + WRITE_BATCH
            self.collection.upsert(
                ids=list(ids[start:stop]),
                embeddings=vectors[start:stop],
                documents=list(texts[start:stop]),
                metadatas=list(metadatas[start:stop]),
            )
            if on_batch:
                on_batch(min(stop, len(ids)))

    def delete(self, chunk_ids: Sequence[str]) -> None:
        for start in range(0, len(chunk_ids), WRITE_BATCH):
            self.collection.delete(ids=list(chunk_ids[start : start + WRITE_BATCH]))
