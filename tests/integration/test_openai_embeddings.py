"""OpenAI(-compatible) embeddings for ingest, against a local fake server speaking the real wire format:
batched under a size and token cap, several requests at once (bounded), retried on 429 / 5xx with
`retry-after` honoured, vectors in input order, one clear error when it finally fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer, fake_embedding

from retrievers.embeddings import Embeddings, OpenAIBatching, OpenAIModel, VectorCache, estimated_tokens
from retrievers.errors import ServiceError

pytestmark = pytest.mark.integration

TEXTS = [f"chunk {i}: 返品は購入後{i}日以内に受け付けます。 Returns within {i} days." for i in range(60)]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def model(server: FakeOpenAIServer, **batching: Any) -> OpenAIModel:
    options: dict[str, Any] = {"batch_size": 8, "concurrency": 4, "max_attempts": 4, "max_retry_s": 20.0}
    options |= {"max_wait_s": 5.0, **batching}
    return OpenAIModel("text-embedding-3-small", "sk-test", server.base_url, batching=OpenAIBatching(**options))


def expected(texts: list[str]) -> np.ndarray:
    return np.asarray([fake_embedding(t) for t in texts], dtype=np.float32)


def inputs_of(server: FakeOpenAIServer) -> list[list[str]]:
    return [r.body["input"] for r in server.embedding_requests]


def test_vectors_come_back_in_input_order_when_concurrent_requests_finish_out_of_order(
    server: FakeOpenAIServer,
) -> None:
    # The first requests are the slowest: they finish last.
    server.script(*(Behaviour(first_token_delay_s=0.05 * (8 - n)) for n in range(8)))
    vectors = model(server, batch_size=8, concurrency=4).passages(TEXTS)
    np.testing.assert_allclose(vectors, expected(TEXTS), atol=1e-6)
    sent = inputs_of(server)
    assert len(sent) == 8 and all(len(batch) <= 8 for batch in sent)
    assert sorted(t for batch in sent for t in batch) == sorted(TEXTS)  # each text sent exactly once
    arrivals = [r.received_at for r in server.embedding_requests]
    assert max(arrivals[:4]) < min(r.received_at for r in server.embedding_requests[4:])  # 4 went out together


def test_concurrency_is_bounded(server: FakeOpenAIServer) -> None:
    server.set(first_token_delay_s=0.1)
    started = time.monotonic()
    model(server, batch_size=5, concurrency=3).passages(TEXTS)  # 12 requests
    assert server.max_embedding_in_flight == 3
    assert time.monotonic() - started >= 0.4 - 0.02  # 12 requests, 3 at a time, 0.1 s each


def test_requests_respect_the_token_cap(server: FakeOpenAIServer) -> None:
    long_texts = [("長い文章です。" * 40) + str(i) for i in range(30)]  # ~280 estimated tokens each
    cap = 1000
    vectors = model(server, batch_size=100, max_tokens=cap).passages(long_texts)
    np.testing.assert_allclose(vectors, expected(long_texts), atol=1e-6)
    sent = inputs_of(server)
    assert len(sent) > 1
    assert all(sum(estimated_tokens(t) for t in batch) <= cap for batch in sent)


def test_a_429_then_success_waits_what_retry_after_asks(server: FakeOpenAIServer) -> None:
    server.script(Behaviour(status=429, retry_after_s=1.5))
    vectors = model(server, concurrency=1).passages(TEXTS[:8])
    np.testing.assert_allclose(vectors, expected(TEXTS[:8]), atol=1e-6)
    first, second = server.embedding_requests
    assert first.body["input"] == second.body["input"]
    assert second.received_at - first.received_at >= 1.5


def test_retry_after_zero_retries_at_once_instead_of_backing_off(server: FakeOpenAIServer) -> None:
    server.script(Behaviour(status=429, retry_after_s=0))
    model(server, concurrency=1, backoff_s=3.0).passages(TEXTS[:8])
    first, second = server.embedding_requests
    assert second.received_at - first.received_at < 1.5  # the backoff alone would wait 3 s or more


def test_server_errors_are_retried_with_backoff(server: FakeOpenAIServer) -> None:
    server.script(Behaviour(status=503), Behaviour(status=500))
    vectors = model(server, concurrency=1).passages(TEXTS[:8])
    np.testing.assert_allclose(vectors, expected(TEXTS[:8]), atol=1e-6)
    times = [r.received_at for r in server.embedding_requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.5 and times[2] - times[1] >= 0.5  # exponential backoff, jittered


def test_gives_up_after_the_attempts_with_one_clear_line(server: FakeOpenAIServer) -> None:
    server.set(status=429, retry_after_s=0.05)
    with pytest.raises(ServiceError) as caught:
        model(server, concurrency=1, max_attempts=3).passages(TEXTS[:8])
    message = str(caught.value)
    assert "\n" not in message
    assert "text-embedding-3-small" in message and server.base_url in message
    assert "gave up after 3 attempts" in message and "HTTP 429" in message and "Rate limit" in message
    assert len(server.embedding_requests) == 3


def test_gives_up_rather_than_wait_past_the_retry_budget(server: FakeOpenAIServer) -> None:
    server.set(status=429, retry_after_s=4)
    started = time.monotonic()
    with pytest.raises(ServiceError, match="HTTP 429"):
        model(server, concurrency=1, max_retry_s=1.0, max_wait_s=10.0).passages(TEXTS[:8])
    assert time.monotonic() - started < 2.0
    assert len(server.embedding_requests) == 1


def test_a_wrong_key_fails_at_once(server: FakeOpenAIServer) -> None:
    server.script(Behaviour(status=401))
    with pytest.raises(ServiceError, match="HTTP 401") as caught:
        model(server).passages(TEXTS[:8])
    assert "gave up after" not in str(caught.value)
    assert len(server.embedding_requests) == 1


def test_a_failing_batch_stops_the_batches_not_yet_sent(server: FakeOpenAIServer) -> None:
    server.set(status=400)
    with pytest.raises(ServiceError, match="HTTP 400"):
        model(server, batch_size=2, concurrency=2).passages(TEXTS)  # 30 requests
    assert len(server.embedding_requests) < 30


def test_queries_are_not_retried(server: FakeOpenAIServer) -> None:
    """A caller is waiting: a rate-limited query fails at once (the turn falls back)."""
    server.script(Behaviour(status=429, retry_after_s=5))
    with pytest.raises(ServiceError, match="HTTP 429"):
        model(server).queries(["返品の期限は?"])
    assert len(server.embedding_requests) == 1
    np.testing.assert_allclose(model(server).queries(["返品の期限は?"]), expected(["返品の期限は?"]), atol=1e-6)


def test_ingest_through_embeddings_reports_progress_and_caches(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(first_token_delay_s=0.05)
    embeddings = Embeddings(model(server, batch_size=4, concurrency=2), VectorCache(tmp_path / "vectors.sqlite"))
    done: list[int] = []
    vectors = embeddings.embed_passages(TEXTS, progress=done.append)
    np.testing.assert_allclose(vectors, expected(TEXTS), atol=1e-6)
    assert sum(done) == len(TEXTS) and len(done) == 15  # progress after every request (of 4)
    assert server.max_embedding_in_flight == 2
    sent = len(server.embedding_requests)
    again = embeddings.embed_passages(TEXTS)
    np.testing.assert_array_equal(again, vectors)
    assert len(server.embedding_requests) == sent  # nothing embedded twice
    embeddings.close()


def test_a_slow_request_does_not_hold_up_the_others(server: FakeOpenAIServer, tmp_path: Path) -> None:
    """Requests are a pipeline, not rounds: while one is slow, the other slot keeps going, and each
    finished batch is cached and reported at once (a failure later loses none of it)."""
    server.script(Behaviour(first_token_delay_s=2.0))
    server.set(first_token_delay_s=0.05)
    cache = VectorCache(tmp_path / "vectors.sqlite")
    embeddings = Embeddings(model(server, batch_size=4, concurrency=2), cache)
    started = time.monotonic()
    reported: list[float] = []
    vectors = embeddings.embed_passages(TEXTS[:32], progress=lambda n: reported.append(time.monotonic() - started))
    np.testing.assert_allclose(vectors, expected(TEXTS[:32]), atol=1e-6)
    assert len(reported) == 8
    assert sum(1 for at in reported if at < 1.8) == 7  # all but the slow one, before it finished
    assert server.max_embedding_in_flight == 2
    embeddings.close()


def test_when_one_batch_fails_the_others_stop_waiting_to_retry(server: FakeOpenAIServer) -> None:
    server.script(Behaviour(status=429, retry_after_s=10), Behaviour(status=400, first_token_delay_s=0.2))
    started = time.monotonic()
    with pytest.raises(ServiceError, match="HTTP 400"):
        model(server, batch_size=4, concurrency=2, max_wait_s=10.0).passages(TEXTS[:8])
    assert time.monotonic() - started < 3  # not the 10 s the rate-limited batch was told to wait
    time.sleep(0.5)
    assert len(server.embedding_requests) == 2  # and it never tried again
