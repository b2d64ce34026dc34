"""Where an outbound connection may go: https/wss only, and never to a private address by way of DNS.

- `InsecureHosts`: the development hosts (`HTTP_INSECURE_HOSTS`: names, IP addresses or networks in
  CIDR notation) that may be called over plain http/ws and may resolve to a private address.
- `NetworkPolicy.check_scheme`: plain http/ws to any other host is refused.
- `NetworkPolicy.addresses`: the DNS rebinding guard. A name is resolved once, every address it
  resolves to is checked (loopback, private, link-local, shared, reserved, multicast: refused unless
  the address or the name is an insecure host), and the caller connects to those checked addresses,
  never to the name: a second lookup could be answered differently (rebinding between check and
  connect). Resolution is bounded by the connect timeout and the turn's deadline.
- `GuardedNetworkBackend`: httpcore's network backend doing exactly that for every connection the
  HTTP client opens (TLS still sends the name as SNI and checks the certificate against it).
- `guarded_transport`: an `httpx.AsyncHTTPTransport` on that backend, certificate verification on.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence

import anyio
import httpcore
import httpx

from retrievers.turn.deadline import remaining
from retrievers.turn.failures import FetchError

DEFAULT_INSECURE_HOSTS = ("localhost", "127.0.0.1", "::1")
PLAIN_SCHEMES = frozenset({"http", "ws"})
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
SETTING = "HTTP_INSECURE_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) → the addresses it resolves to. Injectable: tests map names without real DNS.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])  # IPv6 may carry brackets, a zone
    except ValueError:
        return None


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local, shared
    (100.64/10), reserved, unspecified and multicast ones (IPv4-mapped IPv6 judged as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class InsecureHosts:
    """Host names (exact, case-insensitive), IP addresses and CIDR networks allowed plain http/ws and
    private addresses. Parsed from a comma-separated string or a list; a bad entry is a ValueError."""

    def __init__(self, entries: str | Iterable[str] = DEFAULT_INSECURE_HOSTS) -> None:
        items = entries.split(",") if isinstance(entries, str) else entries
        names: set[str] = set()
        networks: list[Network] = []
        for raw in items:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not all(part and len(part) <= 63 for part in entry.split(".")) or any(c in entry for c in "/:@ "):
                raise ValueError(f"{raw.strip()!r} is not a host name, an IP address or a network")
            names.add(entry)
        self.names = frozenset(names)
        self.networks = tuple(networks)

    def __repr__(self) -> str:
        return f"InsecureHosts({sorted(self.names) + [str(n) for n in self.networks]})"

    def allows_name(self, host: str) -> bool:
        host = host.strip("[]").lower().rstrip(".")
        if host in self.names:
            return True
        address = _address(host)
        return address is not None and self.allows_address(address)

    def allows_address(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses of `host` from the system's resolver, in its order, without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class NetworkPolicy:
    """The transport rules of every outbound connection: which schemes, which resolved addresses."""

    def __init__(
        self,
        insecure_hosts: InsecureHosts | str | Iterable[str] = DEFAULT_INSECURE_HOSTS,
        resolver: Resolver | None = None,
    ) -> None:
        self.insecure = insecure_hosts if isinstance(insecure_hosts, InsecureHosts) else InsecureHosts(insecure_hosts)
        self.resolver: Resolver = resolver or system_resolver

    def plain_refused(self, scheme: str, host: str) -> str | None:
        """Why a URL may not be used (plain http/ws to a host that is not a development host), or None."""
        if scheme.lower() in PLAIN_SCHEMES and not self.insecure.allows_name(host):
            secure = "https" if scheme.lower() == "http" else "wss"
            return f"plain {scheme.lower()}:// to {host} is refused: use {secure}://, or list the host in {SETTING}"
        return None

    def check_scheme(self, scheme: str, host: str) -> None:
        reason = self.plain_refused(scheme, host)
        if reason is not None:
            raise FetchError("forbidden_host", reason)

    async def addresses(self, host: str, port: int, within_s: float | None = None) -> list[str]:
        """The addresses to connect to for `host`, each checked; `FetchError("forbidden_host")` when
        one of them is not public and neither it nor the name is a development host; `TimeoutError`
        when resolving outlasts `within_s` or the turn's deadline, `OSError` when the name is unknown."""
        literal = _address(host)
        if literal is not None:
            found = [str(literal)]
        else:
            budget = min(within_s if within_s is not None else float("inf"), remaining())
            try:
                with anyio.fail_after(None if budget == float("inf") else budget):
                    found = list(await self.resolver(host, port))
            except TimeoutError:
                raise TimeoutError(f"resolving {host} took longer than {budget * 1000:.0f} ms") from None
            except OSError as exc:
                raise OSError(f"could not resolve {host}: {exc.strerror or exc}") from None
            if not found:
                raise OSError(f"{host} resolved to no address")
        name_listed = self.insecure.allows_name(host)
        for text in found:
            address = _address(text)
            if address is None:
                raise FetchError("forbidden_host", f"{host} resolved to {text!r}, which is not an IP address")
            if not is_public(address) and not name_listed and not self.insecure.allows_address(address):
                raise FetchError(
                    "forbidden_host",
                    f"{host} resolved to {address}, a non-public address: refused (DNS rebinding guard; "
                    f"list the host or the address in {SETTING} to allow it)",
                )
        return [str(_address(text)) for text in found]


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses `policy.addresses` checked."""

    def __init__(self, policy: NetworkPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpcore.AnyIOBackend()  # what httpcore itself uses on asyncio

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.addresses(host, port, timeout)
        except TimeoutError as exc:  # as httpcore's own, so that httpx maps them as usual
            raise httpcore.ConnectTimeout(str(exc)) from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception | None = None
        for address in addresses:  # in the resolver's order, like a browser without happy eyeballs
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not used by outbound calls")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def verified(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    """The TLS context of outbound calls: the given one (e.g. a private CA's) only if it verifies
    certificates and host names; by default httpx's (certifi, plus SSL_CERT_FILE / SSL_CERT_DIR)."""
    if ssl_context is None:
        return httpx.create_ssl_context(verify=True)
    if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
        raise ValueError("an SSL context for outbound calls must verify certificates and host names")
    return ssl_context


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool on `GuardedNetworkBackend` (httpx has no parameter
    for the backend: the pool is replaced by one built with the same options)."""

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits = POOL_LIMITS,
    ) -> None:
        context = verified(ssl_context)
        super().__init__(verify=context, limits=limits, retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=0,
            network_backend=GuardedNetworkBackend(policy),
        )
