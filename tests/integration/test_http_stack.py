"""The resilient HTTP stack against real servers on 127.0.0.1: a scriptable JSON API and Redis.

Nothing of httpx is mocked: requests cross real sockets, so "the server saw no request" is a fact
the server recorded, and times are measured on the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from fakes.api_server import PROTECTED_PATH, TOKEN_PATH, FakeApiServer, Reply
from fakes.redis_server import RedisServer, free_port
from hermetic import GUARD

from retrievers.errors import ServiceError
from retrievers.http.auth import ApiKeyAuth, BearerAuth, OAuth2ClientCredentials
from retrievers.http.cache import InMemoryResponseCache, RedisResponseCache, ResponseCache
from retrievers.http.client import HttpResponse, ResilientHttp
from retrievers.turn.deadline import turn_deadline
from retrievers.turn.failures import FetchError

pytestmark = pytest.mark.integration


def make_http(*, allowed: tuple[str, ...] = ("127.0.0.1",), **options: Any) -> ResilientHttp:
    http = ResilientHttp(allowed_hosts=allowed, **options)
    http.retry_policy.backoff_s = 0.02  # keep the suite fast; the policy is the same
    http.retry_policy.backoff_max_s = 0.1
    return http


@pytest.fixture
async def http() -> AsyncIterator[ResilientHttp]:
    client = make_http(cache=InMemoryResponseCache())
    yield client
    await client.aclose()


async def failure(call: Awaitable[HttpResponse]) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await call
    return caught.value


def host_of(server: FakeApiServer, host: str = "127.0.0.1") -> str:
    return f"{host}:{server.port}"


# ---------------------------------------------------------------------------------------- basics


async def test_success_returns_the_json_once_with_our_headers(http: ResilientHttp, api_server: FakeApiServer) -> None:
    response = await http.request_json("GET", api_server.url_for("/items"), params={"q": "kumo", "n": 3})
    assert response.status == 200 and response.cached is False and response.attempts == 1
    assert response.data["path"] == "/items" and response.data["query"] == {"q": "kumo", "n": "3"}
    assert response.data["headers"]["User-Agent"] == "voicerag/0.1"
    assert len(api_server.requests) == 1


async def test_a_500_is_retried_then_reported_as_a_server_error(
    http: ResilientHttp, api_server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    api_server.reply("/boom", status=500)
    with caplog.at_level(logging.INFO, logger="retrievers.http"):
        error = await failure(http.request_json("GET", api_server.url_for("/boom")))
    assert error.kind == "server_error" and error.status == 500
    assert len(api_server.requests_to("/boom")) == 3  # max_retries=2
    assert sum("retrying GET" in r.getMessage() for r in caplog.records) == 2  # one line per retry
    error = await failure(http.request_json("GET", api_server.url_for("/boom"), retries=0))
    assert len(api_server.requests_to("/boom")) == 4


async def test_503_twice_then_success(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.script("/flaky", Reply(status=503), Reply(status=503))
    api_server.reply("/flaky", json={"finally": True})
    response = await http.request_json("GET", api_server.url_for("/flaky"))
    assert response.data == {"finally": True} and response.attempts == 3


async def test_a_post_that_may_have_reached_the_server_is_not_retried(
    http: ResilientHttp, api_server: FakeApiServer
) -> None:
    api_server.reply("/orders", status=503)
    error = await failure(http.request_json("POST", api_server.url_for("/orders"), json={"item": 1}))
    assert error.kind == "server_error" and len(api_server.requests_to("/orders")) == 1
    # declared idempotent (a GraphQL query): retried
    await failure(http.request_json("POST", api_server.url_for("/orders"), json={"item": 1}, cacheable=True))
    assert len(api_server.requests_to("/orders")) == 4


async def test_429_retry_after_is_honoured(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.script("/limited", Reply(status=429, retry_after="0.3"))
    response = await http.request_json("GET", api_server.url_for("/limited"))
    assert response.attempts == 2
    first, second = api_server.requests_to("/limited")
    assert second.at - first.at >= 0.3


async def test_429_retry_after_beyond_the_deadline_fails_at_once(
    http: ResilientHttp, api_server: FakeApiServer
) -> None:
    api_server.reply("/limited", status=429, retry_after="5")
    started = time.perf_counter()
    with turn_deadline(1.0):
        error = await failure(http.request_json("GET", api_server.url_for("/limited")))
    assert error.kind == "rate_limited" and error.status == 429
    assert time.perf_counter() - started < 0.2  # no point waiting for a retry that cannot happen
    assert len(api_server.requests_to("/limited")) == 1


async def test_a_hanging_host_never_outlasts_the_deadline(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.reply("/hang", hang=True)
    started = time.perf_counter()
    with turn_deadline(0.4):
        error = await failure(http.request_json("GET", api_server.url_for("/hang"), timeout_s=3.0))
    elapsed = time.perf_counter() - started
    assert error.kind == "timeout"
    assert 0.3 < elapsed <= 0.4 + 0.05
    assert len(api_server.requests_to("/hang")) == 1  # no time for a second attempt


async def test_a_slow_host_times_out_per_attempt_and_is_retried(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.reply("/slow", delay_s=2.0)
    started = time.perf_counter()
    error = await failure(http.request_json("GET", api_server.url_for("/slow"), timeout_s=0.15, retries=1))
    assert error.kind == "timeout"
    assert time.perf_counter() - started < 0.6
    assert len(api_server.requests_to("/slow")) == 2


async def test_retries_stop_within_the_deadline(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.reply("/sluggish-503", status=503, delay_s=0.12)
    started = time.perf_counter()
    with turn_deadline(0.35):
        error = await failure(http.request_json("GET", api_server.url_for("/sluggish-503")))
    assert error.kind in ("server_error", "timeout")
    assert time.perf_counter() - started <= 0.35 + 0.05


async def test_connection_refused_is_unreachable() -> None:
    http = make_http()
    port = free_port()  # nothing listens there
    started = time.perf_counter()
    error = await failure(http.request_json("GET", f"http://127.0.0.1:{port}/x"))
    assert error.kind == "unreachable"
    assert time.perf_counter() - started < 1.0
    assert http.counters["attempts"] == 3  # refused connections are always retried
    await http.aclose()


async def test_malformed_json_is_a_bad_response_and_not_retried(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.reply("/broken", body=b'{"half": ')
    error = await failure(http.request_json("GET", api_server.url_for("/broken")))
    assert error.kind == "bad_response" and error.status == 200
    assert len(api_server.requests_to("/broken")) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_body_is_refused(http: ResilientHttp, api_server: FakeApiServer, chunked: bool) -> None:
    api_server.reply("/big", size=3_000_000, chunked=chunked)
    error = await failure(http.request_json("GET", api_server.url_for("/big")))
    assert error.kind == "too_large"
    assert len(api_server.requests_to("/big")) == 1
    api_server.reply("/small", size=1_000, chunked=chunked)
    response = await http.request_json("GET", api_server.url_for("/small"), max_bytes=1_000)
    assert response.data == "x" * 998


async def test_4xx_is_a_bad_response_not_retried_and_not_a_breaker_failure(api_server: FakeApiServer) -> None:
    http = make_http(breaker_threshold=2)
    api_server.reply("/missing", status=404)
    for _ in range(4):
        error = await failure(http.request_json("GET", api_server.url_for("/missing")))
        assert error.kind == "bad_response" and error.status == 404
    assert len(api_server.requests_to("/missing")) == 4
    assert http.breaker_states() == {host_of(api_server): "closed"}
    await http.aclose()


# ------------------------------------------------------------------------------------------ auth


async def test_oauth2_token_is_fetched_once_and_reused(http: ResilientHttp, api_server: FakeApiServer) -> None:
    auth = OAuth2ClientCredentials(
        api_server.url_for(TOKEN_PATH), api_server.client_id, api_server.client_secret, "read"
    )
    url = api_server.url_for(PROTECTED_PATH)
    responses = await asyncio.gather(*(http.request_json("GET", url, auth=auth) for _ in range(5)))
    responses += [await http.request_json("GET", url, auth=auth) for _ in range(3)]
    assert {r.data["token"] for r in responses} == {"token-1"}
    (token_request,) = api_server.requests_to(TOKEN_PATH)
    assert token_request.headers["Authorization"].startswith("Basic ")
    assert b"grant_type=client_credentials" in token_request.body and b"scope=read" in token_request.body
    assert len(api_server.requests_to(PROTECTED_PATH)) == 8


async def test_oauth2_client_secret_in_the_form(http: ResilientHttp, api_server: FakeApiServer) -> None:
    auth = OAuth2ClientCredentials(
        api_server.url_for(TOKEN_PATH), api_server.client_id, api_server.client_secret, client_auth="body"
    )
    assert (await http.request_json("GET", api_server.url_for(PROTECTED_PATH), auth=auth)).data["ok"] is True
    assert "Authorization" not in api_server.requests_to(TOKEN_PATH)[0].headers


async def test_oauth2_token_is_refreshed_after_it_expires(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.token_lifetime_s = 0.4
    auth = OAuth2ClientCredentials(api_server.url_for(TOKEN_PATH), api_server.client_id, api_server.client_secret)
    url = api_server.url_for(PROTECTED_PATH)
    assert (await http.request_json("GET", url, auth=auth)).data["token"] == "token-1"
    await asyncio.sleep(0.4)
    assert (await http.request_json("GET", url, auth=auth)).data["token"] == "token-2"
    assert len(api_server.requests_to(TOKEN_PATH)) == 2
    assert len(api_server.requests_to(PROTECTED_PATH)) == 2  # refreshed before use: no 401 on the way


async def test_oauth2_token_is_refreshed_once_on_401(http: ResilientHttp, api_server: FakeApiServer) -> None:
    auth = OAuth2ClientCredentials(api_server.url_for(TOKEN_PATH), api_server.client_id, api_server.client_secret)
    url = api_server.url_for(PROTECTED_PATH)
    await http.request_json("GET", url, auth=auth)
    api_server.revoke_tokens()
    response = await http.request_json("GET", url, auth=auth)
    assert response.data["token"] == "token-2" and response.attempts == 1
    assert len(api_server.requests_to(TOKEN_PATH)) == 2
    assert len(api_server.requests_to(PROTECTED_PATH)) == 3  # ok, 401, ok


async def test_a_second_401_is_an_auth_failure_not_a_loop(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.reject_all_tokens = True
    auth = OAuth2ClientCredentials(api_server.url_for(TOKEN_PATH), api_server.client_id, api_server.client_secret)
    error = await failure(http.request_json("GET", api_server.url_for(PROTECTED_PATH), auth=auth))
    assert error.kind == "auth" and error.status == 401
    assert len(api_server.requests_to(TOKEN_PATH)) == 2  # the first token and one refresh
    assert len(api_server.requests_to(PROTECTED_PATH)) == 2


async def test_refused_client_credentials_are_an_auth_failure(http: ResilientHttp, api_server: FakeApiServer) -> None:
    auth = OAuth2ClientCredentials(api_server.url_for(TOKEN_PATH), api_server.client_id, "wrong")
    error = await failure(http.request_json("GET", api_server.url_for(PROTECTED_PATH), auth=auth))
    assert error.kind == "auth"
    assert api_server.requests_to(PROTECTED_PATH) == []


async def test_a_token_endpoint_on_another_host_is_refused(http: ResilientHttp, api_server: FakeApiServer) -> None:
    auth = OAuth2ClientCredentials(api_server.url_for(TOKEN_PATH, host="localhost"), "id", "secret")
    error = await failure(http.request_json("GET", api_server.url_for(PROTECTED_PATH), auth=auth))
    assert error.kind == "forbidden_host"
    assert api_server.requests == []


async def test_api_key_in_a_header_in_the_query_and_a_bearer_token(
    http: ResilientHttp, api_server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = api_server.url_for("/echo")
    with caplog.at_level(logging.DEBUG):
        in_header = await http.request_json("GET", url, auth=ApiKeyAuth("X-Api-Key", "k-header"))
        in_query = await http.request_json(
            "GET", url, params={"q": "1"}, auth=ApiKeyAuth("appid", "k-query", location="query")
        )
        bearer = await http.request_json("GET", url, auth=BearerAuth("t-123"))
    assert in_header.data["headers"]["X-Api-Key"] == "k-header" and "appid" not in in_header.data["query"]
    assert in_query.data["query"] == {"q": "1", "appid": "k-query"}
    assert "X-Api-Key" not in in_query.data["headers"]
    assert bearer.data["headers"]["Authorization"] == "Bearer t-123"
    assert not any("k-query" in r.getMessage() for r in caplog.records)  # keys never reach the logs


# --------------------------------------------------------------------------------------- breaker


async def test_breaker_opens_fails_fast_probes_and_closes(
    api_server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    http = make_http(breaker_threshold=3, breaker_cooldown_s=0.3, max_retries=0)
    host, url = host_of(api_server), api_server.url_for("/svc")
    api_server.reply("/svc", status=500)
    with caplog.at_level(logging.WARNING, logger="retrievers.http.breaker"):
        for _ in range(3):
            assert (await failure(http.request_json("GET", url))).kind == "server_error"
        assert http.breaker_states() == {host: "open"}
        attempts = http.counters["attempts"]
        error = await failure(http.request_json("GET", url))
        assert error.kind == "breaker_open"  # fails fast: `make bench` (sources) measures how fast
        assert http.counters["attempts"] == attempts  # no attempt made ...
        assert len(api_server.requests_to("/svc")) == 3  # ... and the server saw nothing of it

        await asyncio.sleep(0.35)
        assert http.breaker_states() == {host: "half-open"}
        api_server.reply("/svc", json={"back": True})
        assert (await http.request_json("GET", url)).data == {"back": True}
        assert http.breaker_states() == {host: "closed"}
    changes = [r.getMessage() for r in caplog.records]
    assert any(f"{host}: open" in m for m in changes) and any(f"{host}: closed" in m for m in changes)
    assert http.metrics()["breaker_transitions"][f"{host} → open"] == 1
    await http.aclose()


async def test_a_bad_probe_opens_the_breaker_again(api_server: FakeApiServer) -> None:
    http = make_http(breaker_threshold=2, breaker_cooldown_s=0.25, max_retries=0)
    host, url = host_of(api_server), api_server.url_for("/svc")
    api_server.reply("/svc", status=503)
    for _ in range(2):
        await failure(http.request_json("GET", url))
    await asyncio.sleep(0.3)
    assert (await failure(http.request_json("GET", url))).kind == "server_error"  # the probe
    assert http.breaker_states() == {host: "open"}
    assert (await failure(http.request_json("GET", url))).kind == "breaker_open"
    assert len(api_server.requests_to("/svc")) == 3
    await http.aclose()


async def test_half_open_lets_one_probe_through(api_server: FakeApiServer) -> None:
    http = make_http(breaker_threshold=1, breaker_cooldown_s=0.2, max_retries=0)
    url = api_server.url_for("/svc")
    api_server.script("/svc", Reply(status=500))
    await failure(http.request_json("GET", url))
    await asyncio.sleep(0.25)
    api_server.reply("/svc", delay_s=0.2)
    outcomes = await asyncio.gather(*(http.request_json("GET", url) for _ in range(3)), return_exceptions=True)
    kinds = sorted("ok" if isinstance(o, HttpResponse) else getattr(o, "kind", repr(o)) for o in outcomes)
    assert kinds == ["breaker_open", "breaker_open", "ok"]
    assert len(api_server.requests_to("/svc")) == 2
    await http.aclose()


async def test_a_dead_host_behind_an_open_breaker_is_not_even_dialled() -> None:
    http = make_http(breaker_threshold=2, max_retries=0)
    url = f"http://127.0.0.1:{free_port()}/x"
    with GUARD.watching() as while_closed:
        for _ in range(2):
            assert (await failure(http.request_json("GET", url))).kind == "unreachable"
    assert any(event.startswith("socket.connect") for event in while_closed)  # control: dialling is seen
    with GUARD.watching() as while_open:
        for _ in range(50):
            assert (await failure(http.request_json("GET", url))).kind == "breaker_open"
    assert while_open == []  # no socket, no connect, no lookup: `make bench` (sources) has what it costs
    assert http.counters["attempts"] == 2
    await http.aclose()


# ------------------------------------------------------------------------------------ rate limit


async def test_outbound_rate_limit_per_host(api_server: FakeApiServer) -> None:
    http = make_http(allowed=("127.0.0.1", "localhost"), rate_limit="5/second")
    url = api_server.url_for("/r")
    for _ in range(5):
        await http.request_json("GET", url)
    started = time.perf_counter()
    with turn_deadline(0.2):  # no slot frees within the deadline: refused at once, nothing sent
        error = await failure(http.request_json("GET", url))
    assert error.kind == "rate_limited" and error.status is None
    assert time.perf_counter() - started < 0.1
    assert len(api_server.requests) == 5
    assert http.breaker_states()[host_of(api_server)] == "closed"

    started = time.perf_counter()  # another host has its own limit
    await http.request_json("GET", api_server.url_for("/r", host="localhost"))
    assert time.perf_counter() - started < 0.1

    with turn_deadline(2.0):  # a slot frees within the deadline: it waits for it
        await http.request_json("GET", url)
    assert 0.5 < time.perf_counter() - started < 1.3
    await http.aclose()


# ------------------------------------------------------------------------------------------ SSRF


async def test_a_host_not_on_the_allow_list_is_refused_before_sending(
    http: ResilientHttp, api_server: FakeApiServer
) -> None:
    error = await failure(http.request_json("GET", api_server.url_for("/x", host="localhost")))
    assert error.kind == "forbidden_host"
    assert api_server.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "2130706433", "[::ffff:127.0.0.1]", "0.0.0.0"])
async def test_ip_literals_are_refused_unless_listed(api_server: FakeApiServer, host: str) -> None:
    http = make_http(allowed=("localhost", "*.example.com"))
    error = await failure(http.request_json("GET", f"http://{host}:{api_server.port}/x"))
    assert error.kind == "forbidden_host"
    assert api_server.requests == []
    await http.aclose()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http:///nohost", "not a url"])
async def test_other_schemes_and_broken_urls_are_refused(http: ResilientHttp, url: str) -> None:
    assert (await failure(http.request_json("GET", url))).kind == "forbidden_host"


async def test_a_redirect_to_another_host_is_refused_even_if_allowed(api_server: FakeApiServer) -> None:
    http = make_http(allowed=("127.0.0.1", "localhost"))
    api_server.reply("/start", redirect_to=api_server.url_for("/target", host="localhost"))
    error = await failure(http.request_json("GET", api_server.url_for("/start")))
    assert error.kind == "forbidden_host"
    assert [r.path for r in api_server.requests] == ["/start"]
    api_server.reply("/elsewhere", redirect_to="http://169.254.169.254/latest/meta-data/")
    assert (await failure(http.request_json("GET", api_server.url_for("/elsewhere")))).kind == "forbidden_host"
    await http.aclose()


async def test_a_redirect_on_the_same_host_is_followed(http: ResilientHttp, api_server: FakeApiServer) -> None:
    api_server.reply("/old", redirect_to="/new")
    response = await http.request_json("GET", api_server.url_for("/old"))
    assert response.data["path"] == "/new"


# ----------------------------------------------------------------------------------------- cache


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[ResponseCache]:
    if request.param == "memory":
        yield InMemoryResponseCache()
        return
    redis_cache = RedisResponseCache(request.getfixturevalue("redis_url"))
    yield redis_cache
    await redis_cache.aclose()


@pytest.fixture
async def cached_http(cache: ResponseCache) -> AsyncIterator[ResilientHttp]:
    client = make_http(cache=cache)
    yield client
    await client.aclose()


@pytest.fixture
def ns() -> str:
    """A namespace of the test's own (the session's Redis may be shared)."""
    return f"t{uuid.uuid4().hex[:12]}"


async def test_a_cache_hit_is_cached_with_no_attempt(
    cached_http: ResilientHttp, api_server: FakeApiServer, ns: str
) -> None:
    url = api_server.url_for("/c")
    first = await cached_http.request_json("GET", url, params={"a": 1, "b": "x"}, cache_ttl_s=30, cache_namespace=ns)
    again = await cached_http.request_json("GET", url, params={"b": "x", "a": 1}, cache_ttl_s=30, cache_namespace=ns)
    assert first.cached is False and first.attempts == 1
    assert again.cached is True and again.attempts == 0 and again.status == 200
    assert again.data == first.data
    assert len(api_server.requests) == 1
    assert cached_http.metrics()["counters"]["cache_hits"] == 1


async def test_per_identity_results_are_cached_apart(
    cached_http: ResilientHttp, api_server: FakeApiServer, ns: str
) -> None:
    url = api_server.url_for("/me")
    for user in ("alice", "bob", "alice", "bob"):
        await cached_http.request_json("GET", url, cache_ttl_s=30, cache_namespace=ns, identity=user)
    assert len(api_server.requests) == 2


async def test_a_post_is_cached_only_when_declared_cacheable(
    cached_http: ResilientHttp, api_server: FakeApiServer, ns: str
) -> None:
    url = api_server.url_for("/graphql")
    query = {"query": "{ stock(sku: $sku) }", "variables": {"sku": "KH-300", "store": 1}}
    for _ in range(2):
        await cached_http.request_json("POST", url, json=query, cache_ttl_s=30, cache_namespace=ns)
    assert len(api_server.requests) == 2
    reordered = {"variables": {"store": 1, "sku": "KH-300"}, "query": query["query"]}
    for body in (query, reordered):
        await cached_http.request_json("POST", url, json=body, cache_ttl_s=30, cache_namespace=ns, cacheable=True)
    assert len(api_server.requests) == 3
    other = {"query": query["query"], "variables": {"sku": "KS-100"}}
    await cached_http.request_json("POST", url, json=other, cache_ttl_s=30, cache_namespace=ns, cacheable=True)
    assert len(api_server.requests) == 4


async def test_failures_and_zero_ttl_are_not_cached(
    cached_http: ResilientHttp, api_server: FakeApiServer, ns: str
) -> None:
    url = api_server.url_for("/once")
    api_server.script("/once", Reply(status=500))
    await failure(cached_http.request_json("GET", url, cache_ttl_s=30, cache_namespace=ns, retries=0))
    assert (await cached_http.request_json("GET", url, cache_ttl_s=30, cache_namespace=ns)).cached is False
    for _ in range(2):
        assert (await cached_http.request_json("GET", url, cache_namespace=ns)).cached is False
    assert len(api_server.requests) == 4


async def test_cached_entries_expire(cached_http: ResilientHttp, api_server: FakeApiServer, ns: str) -> None:
    url = api_server.url_for("/ttl")
    await cached_http.request_json("GET", url, cache_ttl_s=0.3, cache_namespace=ns)
    assert (await cached_http.request_json("GET", url, cache_ttl_s=0.3, cache_namespace=ns)).cached is True
    await asyncio.sleep(0.4)
    assert (await cached_http.request_json("GET", url, cache_ttl_s=0.3, cache_namespace=ns)).cached is False
    assert len(api_server.requests) == 2


async def test_clear_cache_drops_one_namespace(cached_http: ResilientHttp, api_server: FakeApiServer, ns: str) -> None:
    other = ns + "-other"
    for namespace, path in ((ns, "/a"), (ns, "/b"), (other, "/a")):
        await cached_http.request_json("GET", api_server.url_for(path), cache_ttl_s=30, cache_namespace=namespace)
    assert await cached_http.clear_cache(ns) == 2
    again = await cached_http.request_json("GET", api_server.url_for("/a"), cache_ttl_s=30, cache_namespace=ns)
    kept = await cached_http.request_json("GET", api_server.url_for("/a"), cache_ttl_s=30, cache_namespace=other)
    assert again.cached is False and kept.cached is True
    assert len(api_server.requests) == 4
    assert await cached_http.clear_cache(other) == 1


async def test_a_caller_cannot_change_what_is_cached(
    cached_http: ResilientHttp, api_server: FakeApiServer, ns: str
) -> None:
    url = api_server.url_for("/shared")
    first = await cached_http.request_json("GET", url, cache_ttl_s=30, cache_namespace=ns)
    first.data["path"] = "changed by a caller"
    assert (await cached_http.request_json("GET", url, cache_ttl_s=30, cache_namespace=ns)).data["path"] == "/shared"


# ------------------------------------------------------------------------------------ dead Redis


def dials(events: list[str], port: int) -> int:
    """How many of the watched events connect to `port` on loopback."""
    return sum(1 for event in events if event.startswith("socket.connect") and f", {port})" in event)


async def test_redis_killed_mid_run_costs_only_a_miss(
    redis_server: RedisServer, api_server: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisResponseCache(redis_server.url)
    http = make_http(cache=cache)
    url = api_server.url_for("/r")
    await http.request_json("GET", url, cache_ttl_s=30)
    assert (await http.request_json("GET", url, cache_ttl_s=30)).cached is True

    port = redis_server.port
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="retrievers.http"):
        response = await http.request_json("GET", url, cache_ttl_s=30)  # finds Redis gone
        with GUARD.watching() as later:
            responses = [await http.request_json("GET", url, cache_ttl_s=30) for _ in range(4)]
    assert all(r.cached is False and r.status == 200 for r in [response, *responses])  # served, as misses
    assert dials(later, port) == 0  # then Redis is left alone: no retry storm (`make bench` has the cost)
    assert cache.errors >= 1 and not cache.available
    assert sum("Redis cache unavailable" in r.getMessage() for r in caplog.records) == 1  # logged once
    fresh = RedisResponseCache(redis_server.url)
    with GUARD.watching() as control:
        assert await fresh.get("k") is None
    assert dials(control, port) >= 1  # control: a cache that has not given up does dial the dead Redis
    for closing in (http, cache, fresh):
        await closing.aclose()


async def test_an_unreachable_redis_is_a_miss_tried_once_then_left_alone() -> None:
    port = free_port()
    cache = RedisResponseCache(f"redis://127.0.0.1:{port}/0")
    with GUARD.watching() as first:
        assert await cache.get("ns:key") is None
    with GUARD.watching() as later:
        await cache.set("ns:key", {"a": 1}, 30)
        assert await cache.get("ns:key") is None
    with pytest.raises(ServiceError, match="REDIS_URL"):  # an operator's clear must not pass silently
        await cache.clear("ns")
    assert dials(first, port) >= 1 and dials(later, port) == 0
    await cache.aclose()
