"""`ResilientHttp`: the one HTTP client every external source calls (one per process).

A call goes, outermost first:

    allow-list and https check (fast refusal) → response cache (read-through; idempotent requests only)
    → circuit breaker per host (`breaker.py`) → retries within the deadline (`retry.py`)
    → one attempt: capped by the deadline, a streamed body read with a size limit
    → httpx.AsyncClient: auth flow (`auth.py`) → redirects (same origin only)
    → transports (`transport.py`): allow-list, https → rate limit per host → the network
      (`address_guard.py`: every resolved address checked, the connection made to a checked one;
      certificates always verified)

Every failure is a `FetchError` with a `kind` a source can say truthfully; httpx errors never leak.
Logs go to `retrievers.http.*`; `metrics()` and `breaker_states()` expose counters and breaker states.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from retrievers.http import observers
from retrievers.http.address_guard import DEFAULT_INSECURE_HOSTS, GuardedTransport, NetworkPolicy, Resolver
from retrievers.http.body import parse_json, read_limited
from retrievers.http.breaker import BreakerState, HostBreakers
from retrievers.http.cache import ResponseCache, cache_key
from retrievers.http.retry import IDEMPOTENT_METHODS, AttemptFailed, RetryPolicy, parse_retry_after, time_left
from retrievers.http.transport import (
    AllowListTransport,
    HostPolicy,
    RateLimitTransport,
    host_key,
    hostname,
    refuse_cross_origin_redirect,
)
from retrievers.turn.deadline import turn_deadline
from retrievers.turn.failures import FetchError

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10  # httpx counts auth-flow steps (token, 401, refresh) against this too


class _HideQuery(logging.Filter):
    """httpx logs each request's full URL at INFO: drop the query string, it may hold an API key."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], httpx.URL) and args[1].query:
            record.args = (args[0], args[1].copy_with(query=None), *args[2:])
        return True


logging.getLogger("httpx").addFilter(_HideQuery())


@dataclass(frozen=True)
class HttpResponse:
    data: Any  # parsed JSON (None for an empty body)
    status: int
    cached: bool
    elapsed_ms: float
    attempts: int  # 0 when served from cache


class ResilientHttp:
    """Cache, breaker, retries, rate limit, auth and an allow-list around one `httpx.AsyncClient`."""

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str],
        cache: ResponseCache | None = None,  # None: nothing is cached
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
        rate_limit: str = "20/second",  # `limits` notation, per host
        max_retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,  # the innermost one (the network by default;
        # e.g. `httpx.AsyncHTTPTransport(proxy=...)` for an outbound proxy, still under the allow-list
        # and the https rule; the proxy resolves names then, so the DNS rebinding guard is its job)
        user_agent: str = "voicerag/0.1",
        insecure_hosts: str | Iterable[str] = DEFAULT_INSECURE_HOSTS,  # plain http and private addresses
        resolver: Resolver | None = None,  # host names → addresses (default: the system's resolver)
        ssl_context: ssl.SSLContext | None = None,  # e.g. a private CA's; it must verify (default: certifi)
    ) -> None:
        self.hosts = HostPolicy(allowed_hosts)
        self.network = NetworkPolicy(insecure_hosts, resolver)
        self.cache = cache
        self.breakers = HostBreakers(breaker_threshold, breaker_cooldown_s)
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        self.counters: Counter[str] = Counter()
        network = transport or GuardedTransport(self.network, ssl_context=ssl_context)
        self._client = httpx.AsyncClient(
            transport=AllowListTransport(RateLimitTransport(network, rate_limit), self.hosts, self.network),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            event_hooks={"response": [refuse_cross_origin_redirect]},
        )

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout_s: float = 3.0,  # per attempt; the turn's deadline may cut it shorter
        cache_ttl_s: float = 0.0,  # 0: never cached
        cacheable: bool | None = None,  # None: GET/HEAD only; True for idempotent POSTs (GraphQL queries)
        cache_namespace: str = "http",  # e.g. the source name; `clear_cache(namespace)` drops it
        identity: str | None = None,  # part of the cache key when results are per user
        max_bytes: int = 2_000_000,
        retries: int | None = None,  # None: the client's max_retries
        refuse: Callable[[Any], str | None] | None = None,  # a reason to reject a 2xx body (never cached)
        decode: Decoder | None = None,  # a 2xx body → data (default: JSON)
    ) -> HttpResponse:
        """Send one request and return its JSON; raise `FetchError` on every failure."""
        started = time.perf_counter()
        method = method.upper()
        self.counters["requests"] += 1
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise self._failed(FetchError("forbidden_host", f"not a valid URL: {exc}")) from None
        try:
            self.hosts.check(target)
            self.network.check_scheme(target.scheme, hostname(target))
        except FetchError as exc:
            raise self._failed(exc) from None
        host = host_key(target)

        key = None
        if (
            self.cache is not None
            and cache_ttl_s > 0
            and (cacheable if cacheable is not None else method in ("GET", "HEAD"))
        ):
            key = cache_key(cache_namespace, method, target, params, json, identity)
            hit = await self._cache_get(key)
            if isinstance(hit, dict) and "data" in hit:
                self.counters["cache_hits"] += 1
                observers.cache_result("hit")
                return HttpResponse(hit["data"], int(hit.get("status", 200)), True, _ms(started), 0)
            self.counters["cache_misses"] += 1
            observers.cache_result("miss")

        if time_left() < self.retry_policy.min_attempt_s:  # before the breaker: not the host's fault
            raise self._failed(FetchError("timeout", f"no time left in the turn for {method} {host}"))
        attempts = 0

        async def attempt() -> tuple[int, Any]:
            nonlocal attempts
            attempts += 1
            self.counters["attempts"] += 1
            return await self._attempt(method, target, params, json, headers, auth, timeout_s, max_bytes, decode)

        policy = self.retry_policy if retries is None else dataclasses.replace(self.retry_policy, max_retries=retries)
        retrying = policy.retrying(
            idempotent=method in IDEMPOTENT_METHODS or cacheable is True,
            what=f"{method} {host}{target.path}",  # never the query: it may hold an API key
            give_up=lambda: self.breakers.is_open(host),
        )
        status: int
        data: Any
        try:
            status, data = await self.breakers.call(host, lambda: retrying(attempt))
        except FetchError as exc:
            raise self._failed(exc) from None
        finally:
            self.counters["retries"] += max(0, attempts - 1)
        reason = refuse(data) if refuse is not None else None
        if reason is not None:  # e.g. GraphQL `errors` in a 200: an answer, but not one to keep
            raise self._failed(FetchError("bad_response", reason, status=status))
        if key is not None:
            await self._cache_set(key, {"status": status, "data": data}, cache_ttl_s)
        return HttpResponse(data, status, False, _ms(started), attempts)

    async def _attempt(
        self,
        method: str,
        url: httpx.URL,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        auth: httpx.Auth | None,
        timeout_s: float,
        max_bytes: int,
        decode: Decoder | None = None,
    ) -> tuple[int, Any]:
        """One try, within `timeout_s` and the deadline (everything below sees it as `remaining()`)."""
        budget = min(timeout_s, time_left())
        if budget < self.retry_policy.min_attempt_s:
            raise FetchError("timeout", f"no time left for {method} {url.host}")
        try:
            with turn_deadline(budget):
                async with asyncio.timeout(budget):
                    request = self._client.build_request(
                        method, url, params=params, json=json, headers=headers, timeout=budget
                    )
                    response = await self._client.send(
                        request, auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT, stream=True
                    )
                    try:
                        return await self._read(method, response, max_bytes, decode)
                    finally:
                        await response.aclose()
        except FetchError:
            raise
        except TimeoutError:
            raise AttemptFailed("timeout", f"{url.host} did not answer within {budget * 1000:.0f} ms") from None
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise AttemptFailed("timeout", f"{url.host}: {type(exc).__name__}", unsent=True) from None
        except httpx.TimeoutException as exc:
            raise AttemptFailed("timeout", f"{url.host}: {type(exc).__name__}") from None
        except httpx.ConnectError as exc:
            raise AttemptFailed("unreachable", f"{url.host}: {exc or 'connection failed'}", unsent=True) from None
        except (httpx.TooManyRedirects, httpx.DecodingError) as exc:
            raise FetchError("bad_response", f"{url.host}: {exc}") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise FetchError("forbidden_host", f"{url.host}: {exc}") from None
        except httpx.TransportError as exc:  # the connection broke mid-way
            raise AttemptFailed("unreachable", f"{url.host}: {type(exc).__name__} {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError("bad_response", f"{url.host}: {type(exc).__name__} {exc}") from None

    @staticmethod
    async def _read(
        method: str, response: httpx.Response, max_bytes: int, decode: Decoder | None = None
    ) -> tuple[int, Any]:
        status = response.status_code
        host = response.request.url.host
        if 200 <= status < 300:
            body = b"" if method == "HEAD" else await read_limited(response, max_bytes)
            return status, decode(response, body) if decode is not None else parse_json(body, status)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            raise AttemptFailed(
                "rate_limited", f"{host} answered 429", status=status, unsent=True, retry_after_s=retry_after
            )
        if status >= 500:
            raise AttemptFailed("server_error", f"{host} answered {status}", status=status, retry_after_s=retry_after)
        if status == 401:
            raise FetchError("auth", f"{host} refused the credentials (401)", status=status)
        raise FetchError("bad_response", f"{host} answered {status}", status=status)

    async def request_page(self, url: str, *, timeout_s: float = 15.0, max_bytes: int = 10_000_000) -> Page:
        """GET a web page or a sitemap (HTML, XML) with everything a source's call has — allow-list,
        https rule, address guard, breaker, retries — never cached (an ingest wants the page as it is)."""
        response = await self.request_json(
            "GET",
            url,
            headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.5"},
            timeout_s=timeout_s,
            max_bytes=max_bytes,
            decode=_page,
        )
        page: Page = response.data
        return page

    def _failed(self, exc: FetchError) -> FetchError:
        self.counters[f"failed.{exc.kind}"] += 1
        return exc

    async def _cache_get(self, key: str) -> Any | None:
        assert self.cache is not None
        try:
            return await self.cache.get(key)
        except Exception as exc:  # a cache must never fail a request
            log.warning("response cache get failed: %s: %s", type(exc).__name__, exc)
            return None

    async def _cache_set(self, key: str, value: Any, ttl_s: float) -> None:
        assert self.cache is not None
        try:
            await self.cache.set(key, value, ttl_s)
        except Exception as exc:
            log.warning("response cache set failed: %s: %s", type(exc).__name__, exc)

    def breaker_states(self) -> dict[str, BreakerState]:
        """host → "closed" | "open" | "half-open" (hosts called at least once)."""
        return self.breakers.states()

    def metrics(self) -> dict[str, Any]:
        """Counters (requests, cache hits/misses, attempts, retries, failures by kind), breaker
        transitions and states, for logs and dashboards."""
        return {
            "counters": dict(self.counters),
            "breaker_transitions": dict(self.breakers.transitions),
            "breakers": self.breaker_states(),
        }

    async def clear_cache(self, namespace: str | None = None) -> int:
        """Drop the namespace's cached responses (all of them when None); how many were dropped."""
        return 0 if self.cache is None else await self.cache.clear(namespace)

    async def aclose(self) -> None:
        """Close the connections (the cache belongs to whoever made it)."""
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class Page:
    """A fetched page: where it ended up (after same-origin redirects), its media type and its bytes."""

    url: str
    media_type: str  # e.g. "text/html", "application/xml" (no parameters)
    body: bytes
    charset: str | None  # from Content-Type, when the server said


Decoder = Callable[[httpx.Response, bytes], Any]


def _page(response: httpx.Response, body: bytes) -> Page:
    content_type = response.headers.get("Content-Type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    return Page(str(response.url), media_type, body, response.charset_encoding)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
