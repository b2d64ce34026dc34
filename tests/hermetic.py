"""What keeps the test session off the outside world: a clean environment and a network guard.

`tests/conftest.py` applies both at session start, before the product is imported:

- `clear_outside_world(os.environ)` removes every variable that points the product at a remote
  service or a paid one, so neither the tests nor the subprocesses they start (the CLI,
  `langgraph dev`, the console) inherit a developer's keys or URLs; `.env` is switched off with
  `VOICERAG_ENV_FILE=""`. A test that needs one of these sets it itself (monkeypatch, subprocess env).
- `NetworkGuard`: pytest-socket (`--allow-hosts` in pyproject.toml) refuses `connect()` to anything
  but loopback, but lets name lookups through; this guard refuses lookups of any name other than
  localhost (a Python audit hook, so a reference to `socket.getaddrinfo` taken before the session
  started is guarded too) and records every refused attempt, so that a test whose code swallowed
  the error still fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest

# Everything that points the product at the outside world or at a paid service. Later issues that
# add such a variable add it here (a prefix covers a family: LANGSMITH_TRACING, LANGSMITH_ENDPOINT...).
OUTSIDE_WORLD_PREFIXES = (
    "OPENAI_",  # chat, speech and embedding models (key, base URL, organisation)
    "LANGSMITH_",  # tracing to LangSmith
    "LANGCHAIN_",  # the old names LangChain still reads (LANGCHAIN_TRACING_V2, LANGCHAIN_API_KEY...)
    "OTEL_",  # OpenTelemetry exporters
    "LIVEKIT_",  # the LiveKit server and its keys
    "CARRIER_",  # data/sources.yaml: the parcel carrier's URL and key
    "CRM_",  # data/sources.yaml: the CRM's URL and OAuth2 client
    "CATALOG_",  # data/sources.yaml: the product catalogue's URL
)
OUTSIDE_WORLD_VARIABLES = (
    "CHROMA_URL",
    "REDIS_URL",
    "DATABASE_URL",
    "AUDIT_DATABASE_URL",
    "STATUS_WS_URL",  # data/sources.yaml: the service-status feed
    "GEOCODING_API_URL",
    "WEATHER_API_URL",
    "HTTP_PROXY",  # a proxy would carry a request out even to a loopback-looking URL
    "HTTPS_PROXY",
    "ALL_PROXY",
)
# Set for the session: no .env file is read, and no library reports usage.
SESSION_VARIABLES = {
    "VOICERAG_ENV_FILE": "",
    "ANONYMIZED_TELEMETRY": "false",  # Chroma
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",  # langgraph dev
    "DO_NOT_TRACK": "1",
}


def points_outside(name: str) -> bool:
    upper = name.upper()  # proxies are also read in lower case
    return upper.startswith(OUTSIDE_WORLD_PREFIXES) or upper in OUTSIDE_WORLD_VARIABLES


def clear_outside_world(environ: MutableMapping[str, str]) -> list[str]:
    """Remove the variables that point outside, set the session's own; returns the names removed."""
    removed = sorted(name for name in environ if points_outside(name))
    for name in removed:
        del environ[name]
    environ.update(SESSION_VARIABLES)
    forget_cached_environment()
    return removed


def forget_cached_environment() -> None:
    """LangSmith caches the variables it read (its pytest plugin is imported before any conftest)."""
    utils = sys.modules.get("langsmith.utils")
    for value in vars(utils).values() if utils is not None else ():
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()


# ------------------------------------------------------------------------------ the network guard

LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")
SOCKET_USE = ("socket.__new__", "socket.connect", *LOOKUPS)  # what `watching()` sees


class OutsideNetworkError(RuntimeError):
    """A test tried to reach beyond loopback (raised where it tried, and failed at its teardown)."""


def is_loopback_name(host: object) -> bool:
    """True for what needs no DNS beyond this machine: localhost names, this machine's own name, IP
    literals (their `connect()` is pytest-socket's business), None (a wildcard bind)."""
    if host is None or isinstance(host, int):
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    name = name.rstrip(".").lower()
    if name in ("localhost", socket.gethostname().lower()) or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 literal may carry a zone
    except ValueError:
        return False
    return True


def is_loopback_address(address: object) -> bool:
    """`connect()` targets allowed past pytest-socket: loopback IPs, localhost, Unix sockets."""
    if not isinstance(address, tuple):
        return True  # AF_UNIX path or abstract name
    host = str(address[0]).split("%", 1)[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.rstrip(".").lower() == "localhost"


class NetworkGuard:
    """Refuses name lookups of anything but localhost and records every refused attempt (lookups
    here, connects reported by pytest-socket's guard) until `take()` hands them over."""

    def __init__(self) -> None:
        self._attempts: list[str] = []
        self._watchers: list[list[str]] = []
        self._lock = threading.Lock()
        self.enabled = False

    def install(self) -> None:
        """Once per process (audit hooks cannot be removed): `enabled` switches it on and off."""
        sys.addaudithook(self._audit)
        self.enabled = True

    def record(self, attempt: str) -> None:
        with self._lock:
            self._attempts.append(attempt)

    def take(self) -> list[str]:
        with self._lock:
            attempts, self._attempts = self._attempts, []
        return attempts

    def check(self) -> None:
        """Fail the running test if anything was refused since the last check (or `take`)."""
        failure = outside_network_failure(self.take())
        if failure:
            pytest.fail(failure, pytrace=False)

    @contextlib.contextmanager
    def watching(self) -> Iterator[list[str]]:
        """Every socket created, connected or name looked up in the process (any thread) while
        inside: a test's proof that some code touched no network at all."""
        seen: list[str] = []
        with self._lock:
            self._watchers.append(seen)
        try:
            yield seen
        finally:
            with self._lock:
                self._watchers.remove(seen)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self._watchers and event in SOCKET_USE:
            what = (
                event if event == "socket.__new__" else f"{event} {args[1] if event == 'socket.connect' else args[0]!r}"
            )
            for seen in self._watchers:
                seen.append(what)
        if not self.enabled:
            return
        if event in LOOKUPS and not is_loopback_name(args[0] if args else None):
            self.record(f"DNS lookup of {args[0]!r}")
            raise OutsideNetworkError(f"a test tried to look up {args[0]!r}: only localhost is allowed in tests")
        if event == "socket.connect" and len(args) > 1 and not is_loopback_address(args[1]):
            # Only reached when pytest-socket is off for a test (`--force-enable-socket`).
            self.record(f"connect to {args[1]!r}")
            raise OutsideNetworkError(f"a test tried to connect to {args[1]!r}: only loopback is allowed in tests")

    def recording_connect(self, blocked_connect: Callable[..., Any], blocked: type[Exception]) -> Callable[..., Any]:
        """pytest-socket's `connect` for this test, recording what it refuses."""

        def connect(sock: socket.socket, *args: Any) -> Any:
            try:
                return blocked_connect(sock, *args)
            except blocked:
                self.record(f"connect to {args[0]!r}" if args else "connect")
                raise

        return connect


GUARD = NetworkGuard()


def outside_network_failure(attempts: list[str]) -> str | None:
    """The failure message for a test that tried to reach beyond loopback, or None."""
    if not attempts:
        return None
    return "tried to reach beyond loopback (tests are hermetic, see tests/hermetic.py): " + "; ".join(attempts)
