"""The HTTP stack's pieces on their own: cache keys, the in-process cache, the allow-list, redirects,
Retry-After, the retry policy, the breaker's accounting, body limits and the simple auth flows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from retrievers.http.auth import ApiKeyAuth, BearerAuth, OAuth2ClientCredentials
from retrievers.http.body import parse_json, read_limited
from retrievers.http.breaker import HostBreakers
from retrievers.http.cache import InMemoryResponseCache, RedisResponseCache, cache_key, make_response_cache
from retrievers.http.retry import AttemptFailed, RetryPolicy, parse_retry_after
from retrievers.http.transport import HostPolicy, host_key, refuse_cross_origin_redirect
from retrievers.turn.deadline import turn_deadline
from retrievers.turn.failures import FetchError

# ------------------------------------------------------------------------------------ cache keys


def key(url: str, params: dict[str, Any] | None = None, **options: Any) -> str:
    return cache_key(options.pop("namespace", "src"), options.pop("method", "GET"), url, params, **options)


def test_cache_keys_are_normalised() -> None:
    base = key("https://api.example.com/v1/items", {"a": 1, "b": "x"})
    assert key("HTTPS://API.Example.com:443/v1/items", {"b": "x", "a": 1}) == base
    assert key("https://api.example.com./v1/items?b=x", {"a": "1"}) == base  # query in the URL, trailing dot
    assert key("https://api.example.com/v1/items?a=1&b=x#fragment") == base
    assert key("https://api.example.com/v1/items", {"a": 1, "b": "x"}, method="get") == base
    assert key("http://h/x", {"flag": True}) == key("http://h/x?flag=true")
    assert key("http://h", None) == key("http://h/")
    assert base.startswith("src:")


@pytest.mark.parametrize(
    "other",
    [
        {"url": "https://api.example.com/v1/items", "params": {"a": 2, "b": "x"}},
        {"url": "https://api.example.com/v1/other", "params": {"a": 1, "b": "x"}},
        {"url": "https://api.example.com:8443/v1/items", "params": {"a": 1, "b": "x"}},
        {"url": "http://api.example.com/v1/items", "params": {"a": 1, "b": "x"}},
        {"url": "https://api.example.com/v1/items", "params": {"a": 1, "b": "x"}, "identity": "alice"},
        {"url": "https://api.example.com/v1/items", "params": {"a": 1, "b": "x"}, "namespace": "other"},
        {"url": "https://api.example.com/v1/items", "params": {"a": 1, "b": "x"}, "method": "HEAD"},
        {"url": "https://api.example.com/v1/items", "params": {"a": [1, 2], "b": "x"}},
    ],
)
def test_cache_keys_differ_when_the_request_differs(other: dict[str, Any]) -> None:
    assert key(other.pop("url"), other.pop("params"), **other) != key(
        "https://api.example.com/v1/items", {"a": 1, "b": "x"}
    )


def test_cache_keys_cover_the_body_whatever_its_key_order() -> None:
    one = key("http://h/graphql", method="POST", body={"query": "q", "variables": {"a": 1, "b": 2}})
    same = key("http://h/graphql", method="POST", body={"variables": {"b": 2, "a": 1}, "query": "q"})
    other = key("http://h/graphql", method="POST", body={"query": "q", "variables": {"a": 1, "b": 3}})
    assert one == same != other
    assert key("http://h/graphql", identity="alice") != key("http://h/graphql", identity="bob")


@pytest.mark.parametrize("namespace", ["", "a:b", "we*ther", "a b"])
def test_a_namespace_that_could_clash_or_glob_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError):
        cache_key(namespace, "GET", "http://h/", None, None, None)


# ------------------------------------------------------------------------------- in-process cache


async def test_in_memory_entries_expire_each_after_its_own_ttl() -> None:
    cache = InMemoryResponseCache()
    await cache.set("ns:short", {"v": 1}, 0.05)
    await cache.set("ns:long", {"v": 2}, 5)
    await cache.set("ns:never", {"v": 3}, 0)
    assert await cache.get("ns:short") == {"v": 1}
    assert await cache.get("ns:never") is None
    await asyncio.sleep(0.08)
    assert await cache.get("ns:short") is None
    assert await cache.get("ns:long") == {"v": 2}


async def test_in_memory_cache_is_bounded_and_skips_what_cannot_fit() -> None:
    cache = InMemoryResponseCache(max_chars=100)
    for i in range(10):
        await cache.set(f"ns:{i}", "x" * 20, 60)  # 22 characters as JSON
    assert len(cache) == 4
    assert await cache.get("ns:9") == "x" * 20 and await cache.get("ns:0") is None
    await cache.set("ns:huge", "x" * 500, 60)
    assert await cache.get("ns:huge") is None


async def test_in_memory_clear_by_namespace_and_copies_on_read() -> None:
    cache = InMemoryResponseCache()
    for name in ("a:1", "a:2", "ab:1", "b:1"):
        await cache.set(name, {"list": [1]}, 60)
    assert await cache.clear("a") == 2
    assert await cache.get("ab:1") is not None and await cache.get("a:1") is None
    got = await cache.get("b:1")
    assert isinstance(got, dict)
    got["list"].append(2)
    assert await cache.get("b:1") == {"list": [1]}
    assert await cache.clear() == 2


def test_make_response_cache_picks_redis_only_when_configured() -> None:
    assert isinstance(make_response_cache(None), InMemoryResponseCache)
    assert isinstance(make_response_cache(""), InMemoryResponseCache)
    assert isinstance(make_response_cache("redis://127.0.0.1:1/0"), RedisResponseCache)  # no connection yet


# ------------------------------------------------------------------------------ hosts, redirects


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/x", True),
        ("https://API.EXAMPLE.COM./x", True),
        ("http://api.example.com:8080/x", True),
        ("https://evil.com/x", False),
        ("https://api.example.com.evil.com/x", False),
        ("https://eu.weather.example.org/x", True),
        ("https://weather.example.org/x", False),  # the wildcard is for subdomains only
        ("https://xn--bcher-kva.de/", True),
        ("https://bücher.de/", True),
        ("http://127.0.0.1/", False),
        ("http://10.0.0.1/", True),  # listed exactly
        ("http://localhost/", False),
        ("http://foo.localhost/", False),
        ("http://[::1]/", False),
        ("http://[fd00::1]:81/", True),
        ("ftp://api.example.com/", False),
        ("file:///etc/passwd", False),
    ],
)
def test_the_allow_list(url: str, allowed: bool) -> None:
    policy = HostPolicy(["api.example.com", "*.weather.example.org", "bücher.de", "10.0.0.1", "fd00::1"])
    assert policy.allows(httpx.URL(url)) is allowed


def test_wildcards_never_match_ip_literals_or_localhost() -> None:
    policy = HostPolicy(["*.0.0.1", "*.localhost"])
    assert not policy.allows(httpx.URL("http://127.0.0.1/"))
    assert not policy.allows(httpx.URL("http://a.localhost/"))
    with pytest.raises(FetchError) as caught:
        policy.check(httpx.URL("http://127.0.0.1/"))
    assert caught.value.kind == "forbidden_host"


def test_host_keys() -> None:
    assert host_key(httpx.URL("https://API.example.com:443/x")) == "api.example.com"
    assert host_key(httpx.URL("http://api.example.com:8080/x")) == "api.example.com:8080"
    assert host_key(httpx.URL("http://[::1]:8080/x")) == "[::1]:8080"


def redirect(source: str, location: str) -> httpx.Response:
    return httpx.Response(302, headers={"Location": location}, request=httpx.Request("GET", source))


@pytest.mark.parametrize(
    ("source", "location", "refused"),
    [
        ("https://a.example.com/x", "/y", False),
        ("https://a.example.com/x", "https://A.example.com/y", False),
        ("http://a.example.com/x", "https://a.example.com/y", False),  # upgrade
        ("https://a.example.com/x", "http://a.example.com/y", True),  # downgrade
        ("https://a.example.com/x", "https://b.example.com/y", True),
        ("https://a.example.com/x", "//169.254.169.254/latest", True),
    ],
)
async def test_redirects_stay_on_their_host(source: str, location: str, refused: bool) -> None:
    if refused:
        with pytest.raises(FetchError) as caught:
            await refuse_cross_origin_redirect(redirect(source, location))
        assert caught.value.kind == "forbidden_host"
    else:
        await refuse_cross_origin_redirect(redirect(source, location))


# ----------------------------------------------------------------------------------- retry-after


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    for unreadable in (None, "", "soon", "inf", "nan"):
        assert parse_retry_after(unreadable) is None


# ---------------------------------------------------------------------------------- retry policy


class Flaky:
    """Fails with the given errors, then returns "ok"; records when each call happened."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(**options: Any) -> RetryPolicy:
    return RetryPolicy(**({"max_retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.02} | options))


async def test_retries_what_is_worth_retrying_until_it_works() -> None:
    flaky = Flaky(
        AttemptFailed("server_error", "503", status=503), AttemptFailed("unreachable", "refused", unsent=True)
    )
    assert await policy().retrying(idempotent=True, what="t")(flaky) == "ok"
    assert len(flaky.calls) == 3


async def test_gives_up_after_max_retries_with_the_last_failure() -> None:
    flaky = Flaky(*(AttemptFailed("server_error", f"50{i}", status=500 + i) for i in range(5)))
    with pytest.raises(AttemptFailed) as caught:
        await policy().retrying(idempotent=True, what="t")(flaky)
    assert caught.value.status == 502 and len(flaky.calls) == 3


async def test_what_may_have_reached_a_non_idempotent_endpoint_is_not_retried() -> None:
    sent = Flaky(AttemptFailed("timeout", "read timeout"))
    with pytest.raises(AttemptFailed):
        await policy().retrying(idempotent=False, what="t")(sent)
    unsent = Flaky(AttemptFailed("rate_limited", "429", status=429, unsent=True))
    assert await policy().retrying(idempotent=False, what="t")(unsent) == "ok"
    final = Flaky(FetchError("bad_response", "404", status=404))
    with pytest.raises(FetchError):
        await policy().retrying(idempotent=True, what="t")(final)
    assert (len(sent.calls), len(unsent.calls), len(final.calls)) == (1, 2, 1)


async def test_retry_after_is_a_minimum_wait_and_never_stretches_past_the_deadline() -> None:
    honoured = Flaky(AttemptFailed("rate_limited", "429", unsent=True, retry_after_s=0.1))
    assert await policy().retrying(idempotent=True, what="t")(honoured) == "ok"
    assert honoured.calls[1] - honoured.calls[0] >= 0.1
    too_long = Flaky(AttemptFailed("rate_limited", "429", unsent=True, retry_after_s=0.5))
    started = time.monotonic()
    with turn_deadline(0.3), pytest.raises(AttemptFailed):
        await policy().retrying(idempotent=True, what="t")(too_long)
    assert time.monotonic() - started < 0.2 and len(too_long.calls) == 1
    over_max = Flaky(AttemptFailed("rate_limited", "429", unsent=True, retry_after_s=20))
    with pytest.raises(AttemptFailed):
        await policy(max_wait_s=10).retrying(idempotent=True, what="t")(over_max)


async def test_backoff_is_shortened_to_fit_the_deadline() -> None:
    flaky = Flaky(AttemptFailed("server_error", "503"))
    started = time.monotonic()
    with turn_deadline(0.2):
        assert await policy(backoff_s=5.0, backoff_max_s=5.0).retrying(idempotent=True, what="t")(flaky) == "ok"
    assert time.monotonic() - started < 0.2


async def test_retries_stop_when_told_to_give_up() -> None:
    flaky = Flaky(AttemptFailed("server_error", "503"))
    with pytest.raises(AttemptFailed):
        await policy().retrying(idempotent=True, what="t", give_up=lambda: True)(flaky)
    assert len(flaky.calls) == 1


# --------------------------------------------------------------------------------------- breaker


async def fail_with(kind: str, status: int | None = None) -> None:
    raise FetchError(kind, kind, status=status)  # type: ignore[arg-type]


async def ok() -> str:
    return "ok"


async def test_only_the_hosts_own_trouble_counts_toward_opening() -> None:
    breakers = HostBreakers(threshold=2, cooldown_s=60)
    for kind, status in (("bad_response", 404), ("auth", 401), ("too_large", None), ("rate_limited", 429)):
        with pytest.raises(FetchError):
            await breakers.call("h", lambda k=kind, s=status: fail_with(k, s))  # type: ignore[misc]
    assert breakers.state("h") == "closed"
    with pytest.raises(FetchError):
        await breakers.call("h", lambda: fail_with("server_error", 500))
    with pytest.raises(FetchError):
        await breakers.call("h", lambda: fail_with("bad_response", 404))  # the host answered: count reset
    with pytest.raises(FetchError):
        await breakers.call("h", lambda: fail_with("timeout"))
    assert breakers.state("h") == "closed"
    with pytest.raises(FetchError):
        await breakers.call("h", lambda: fail_with("rate_limited"))  # our own limit: neutral, no reset
    with pytest.raises(FetchError):
        await breakers.call("h", lambda: fail_with("unreachable"))
    assert breakers.states() == {"h": "open"}
    with pytest.raises(FetchError) as caught:
        await breakers.call("h", ok)
    assert caught.value.kind == "breaker_open"
    assert breakers.state("other") == "closed"


async def hang() -> None:
    await asyncio.sleep(10)


async def test_a_call_cancelled_by_the_deadline_counts_one_cancelled_early_does_not() -> None:
    breakers = HostBreakers(threshold=1, cooldown_s=60)
    with turn_deadline(5.0), pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):  # the caller gives up with time left: says nothing of the host
            await breakers.call("h", hang)
    assert breakers.state("h") == "closed"
    with turn_deadline(0.02), pytest.raises(TimeoutError):
        async with asyncio.timeout(0.03):  # cancelled because the turn's time ran out: a timeout
            await breakers.call("h", hang)
    assert breakers.state("h") == "open"


async def test_half_open_after_the_cool_down_then_closed_by_a_good_probe() -> None:
    breakers = HostBreakers(threshold=1, cooldown_s=0.05)
    with pytest.raises(FetchError):
        await breakers.call("h", lambda: fail_with("server_error", 503))
    assert breakers.state("h") == "open"
    await asyncio.sleep(0.07)
    assert breakers.state("h") == "half-open"
    assert await breakers.call("h", ok) == "ok"
    assert breakers.state("h") == "closed"
    assert breakers.transitions == {"h → open": 1, "h → half-open": 1, "h → closed": 1}


# ------------------------------------------------------------------------------------------ body


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_the_body_limit_with_and_without_content_length() -> None:
    assert await read_limited(httpx.Response(200, content=b"12345"), 5) == b"12345"
    with pytest.raises(FetchError) as declared:
        await read_limited(httpx.Response(200, content=b"123456"), 5)
    with pytest.raises(FetchError) as streamed:
        await read_limited(httpx.Response(200, content=stream(b"123", b"456", b"789")), 5)
    assert declared.value.kind == streamed.value.kind == "too_large"


def test_json_parsing() -> None:
    assert parse_json(b'{"a": [1]}', 200) == {"a": [1]}
    assert parse_json(b"  ", 204) is None
    for bad in (b"{", b"<html>", b"\xff\xfe"):
        with pytest.raises(FetchError) as caught:
            parse_json(bad, 200)
        assert caught.value.kind == "bad_response"


# ------------------------------------------------------------------------------------------ auth


def authorised(auth: httpx.Auth, url: str = "https://api.example.com/v1?q=1") -> httpx.Request:
    return next(auth.sync_auth_flow(httpx.Request("GET", url)))


def test_api_keys_and_bearer_tokens() -> None:
    in_header = authorised(ApiKeyAuth("X-Api-Key", "k1"))
    assert in_header.headers["X-Api-Key"] == "k1" and in_header.url.params.get("X-Api-Key") is None
    in_query = authorised(ApiKeyAuth("key", "k2", location="query"))
    assert dict(in_query.url.params) == {"q": "1", "key": "k2"}
    assert authorised(BearerAuth("t")).headers["Authorization"] == "Bearer t"
    assert "k1" not in repr(ApiKeyAuth("X-Api-Key", "k1"))
    with pytest.raises(ValueError):
        ApiKeyAuth("k", "v", location="cookie")  # type: ignore[arg-type]


def test_oauth2_is_async_only_and_hides_its_secret() -> None:
    auth = OAuth2ClientCredentials("https://id.example.com/token", "client", "very-secret")
    assert "very-secret" not in repr(auth)
    with pytest.raises(RuntimeError):
        authorised(auth)
