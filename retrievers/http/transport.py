"""Transport layers under the one `httpx.AsyncClient`: every request the client sends passes them,
including redirects and the token requests of auth flows.

- `HostPolicy` / `AllowListTransport`: only allow-listed hosts (SSRF guard). Exact names, or
  `*.example.com` for subdomains; IP literals and `localhost` only when listed exactly; https only,
  plain http to development hosts alone (`address_guard.NetworkPolicy`, which also checks, on
  connecting, every address a name resolves to: the DNS rebinding guard).
- `refuse_cross_origin_redirect`: a response hook; a redirect may not change origin (scheme, host,
  port), so credentials never reach another origin.
- `RateLimitTransport`: an outbound limit per host (`limits`, moving window); waits for a free slot
  within the remaining deadline, else `FetchError("rate_limited")` without sending anything.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable

import httpx
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from retrievers.http.address_guard import NetworkPolicy
from retrievers.turn.deadline import remaining
from retrievers.turn.failures import FetchError

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}


def hostname(url: httpx.URL) -> str:
    """The URL's host as ASCII (IDNA), lower-cased, without a trailing dot or IPv6 brackets."""
    return url.raw_host.decode("ascii").lower().rstrip(".")


def host_key(url: httpx.URL) -> str:
    """What breakers and rate limits are kept per: the host, plus the port when it is not the default."""
    host = hostname(url)
    port = url.port
    if port is None or port == DEFAULT_PORTS.get(url.scheme.lower()):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostPolicy:
    """The allow-list: host names or IP addresses, any port. `*.example.com` allows the subdomains of
    example.com (not example.com itself, and never an IP address)."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: list[str] = []
        for entry in allowed_hosts:
            entry = entry.strip().lower().rstrip(".")
            if not entry:
                continue
            if _is_ip_literal(entry) and ":" in entry:
                entry = f"[{entry}]"  # IPv6
            if entry.startswith("*."):
                suffixes.append("." + hostname(httpx.URL(f"http://{entry[2:]}")))
            else:
                exact.add(hostname(httpx.URL(f"http://{entry}")))
        self.exact: frozenset[str] = frozenset(exact)
        self.suffixes: tuple[str, ...] = tuple(suffixes)

    def allows(self, url: httpx.URL) -> bool:
        if url.scheme.lower() not in DEFAULT_PORTS:
            return False
        host = hostname(url)
        if not host:
            return False
        if host in self.exact:
            return True
        if _is_ip_literal(host) or host == "localhost" or host.endswith(".localhost"):
            return False  # only when listed exactly
        return any(host.endswith(suffix) for suffix in self.suffixes)

    def check(self, url: httpx.URL) -> None:
        if not self.allows(url):
            raise FetchError("forbidden_host", f"{url.scheme}://{hostname(url)} is not an allowed host")


class AllowListTransport(httpx.AsyncBaseTransport):
    """Refuses any request whose host is not allowed, or that would go over plain http to a host
    that is not a development host (`network`), before anything is sent."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, policy: HostPolicy, network: NetworkPolicy | None = None
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._network = network or NetworkPolicy()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check(request.url)
        self._network.check_scheme(request.url.scheme, hostname(request.url))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


Origin = tuple[str, str, int | None]


def origin(url: httpx.URL) -> Origin:
    """The URL's origin (RFC 6454): scheme, host and port, the default port filled in."""
    scheme = url.scheme.lower()
    return scheme, hostname(url), url.port or DEFAULT_PORTS.get(scheme)


def _origin_text(url: httpx.URL) -> str:
    return f"{url.scheme.lower()}://{host_key(url)}"  # never the path or query: they may hold a key


def redirect_target(response: httpx.Response) -> httpx.URL:
    """Where httpx will go next, resolved from `Location` exactly as `httpx.AsyncClient` does."""
    source = response.request.url
    try:
        target = httpx.URL(response.headers["Location"])
    except httpx.InvalidURL:
        raise FetchError("bad_response", f"{_origin_text(source)} redirected to an invalid URL") from None
    if target.scheme and not target.host:  # "https:/path": httpx keeps the host
        target = target.copy_with(host=source.host)
    return source.join(target) if target.is_relative_url else target


def _is_https_upgrade(source: Origin, target: Origin) -> bool:
    # httpx's own exception (`_is_https_redirect`): the same host, from port 80 to 443.
    return source[1] == target[1] and (source[0], source[2], target[0], target[2]) == ("http", 80, "https", 443)


async def refuse_cross_origin_redirect(response: httpx.Response) -> None:
    """Response hook: a redirect may not change origin (scheme, host or port), except http:80 →
    https:443 on the same host. httpx strips only `Authorization` when a redirect changes origin: a
    key header (`X-API-Key`), a key in the query or a re-sent body (307/308) would follow it, so
    the redirect is refused before any request goes there, whatever auth is used."""
    if not response.has_redirect_location:
        return
    source = response.request.url
    target = redirect_target(response)
    if origin(target) != origin(source) and not _is_https_upgrade(origin(source), origin(target)):
        raise FetchError(
            "forbidden_host",
            f"refused a redirect from {_origin_text(source)} to another origin, {_origin_text(target)}",
            status=response.status_code,
        )


class RateLimitTransport(httpx.AsyncBaseTransport):
    """An outbound rate limit per host (`limits` notation, e.g. "20/second"), moving window."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rate_limit: str) -> None:
        self._inner = inner
        self._item = parse(rate_limit)
        self._storage: MemoryStorage | None = None  # created on first use: it needs a running loop
        self._limiter: MovingWindowRateLimiter | None = None

    async def acquire(self, key: str) -> None:
        """Take a slot for `key`, waiting for one within the remaining deadline."""
        if self._limiter is None:
            self._storage = MemoryStorage()
            self._limiter = MovingWindowRateLimiter(self._storage)
        while not await self._limiter.hit(self._item, key):
            stats = await self._limiter.get_window_stats(self._item, key)
            wait = max(0.001, stats.reset_time - time.time())
            if wait >= remaining():
                raise FetchError("rate_limited", f"outbound rate limit {self._item} reached for {key}")
            log.debug("rate limit for %s: waiting %.0f ms", key, wait * 1000)
            await asyncio.sleep(wait)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.acquire(host_key(request.url))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._storage is not None and self._storage.timer is not None:
            self._storage.timer.cancel()
        await self._inner.aclose()
