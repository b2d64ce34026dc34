"""Chroma clients (embedded in a folder, or a server at `CHROMA_URL`) and what their failures mean.

Chroma 1.5's HTTP client never times out: its httpx session is built with `timeout=None` and its
constructor already calls the server, so a server that accepts connections and never answers
hangs every caller. Here the client is built under a bounded wait and its session then gets a
timeout that bounds every call. Failures become one-line `ServiceError`s naming `CHROMA_URL` (or
the embedded folder), and timeouts `ChromaTimeout`, which is also a `TimeoutError`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import chromadb
import filelock
import httpx
from chromadb.api import ClientAPI
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError

from retrievers.errors import ServiceError
from retrievers.secret_url import hide_password

DEFAULT_TIMEOUT_S = 10.0  # per Chroma call: a 1,000-chunk upsert takes well under a second
OPEN_LOCK_TIMEOUT_S = 30.0  # opening an embedded store waits at most this long for another process opening it
_HTTP_API = "chromadb.api.fastapi.FastAPI"
# What Chroma and its transport raise; anything else is a bug of ours and keeps its traceback.
_CHROMA_FAILURES = (ChromaError, httpx.HTTPError, ValueError, OSError)

T = TypeVar("T")


class ChromaTimeout(ServiceError, TimeoutError):
    """Chroma did not answer within the call timeout (a `TimeoutError`: "took too long")."""


@dataclass(frozen=True, slots=True)
class ChromaEndpoint:
    """Where a client's Chroma is, for messages: a server URL, or an embedded folder."""

    url: str | None
    path: str | None
    timeout_s: float | None

    @classmethod
    def of(cls, client: ClientAPI) -> ChromaEndpoint:
        settings = client.get_settings()
        if settings.chroma_api_impl != _HTTP_API:
            return cls(url=None, path=settings.persist_directory if settings.is_persistent else None, timeout_s=None)
        scheme = "https" if settings.chroma_server_ssl_enabled else "http"
        session = _http_session(client)
        timeout = session.timeout.read if session is not None else None
        return cls(f"{scheme}://{settings.chroma_server_host}:{settings.chroma_server_http_port}", None, timeout)

    @contextlib.contextmanager
    def calling(self, doing: str) -> Iterator[None]:
        """Chroma's failures inside as `ServiceError`, timeouts as `ChromaTimeout`."""
        try:
            yield
        except (httpx.TimeoutException, filelock.Timeout):
            raise self.timeout(doing) from None
        except _CHROMA_FAILURES as exc:
            raise self.failure(doing, exc) from None

    def timeout(self, doing: str) -> ChromaTimeout:
        within = f" within {self.timeout_s:g} s" if self.timeout_s else " in time"
        if self.url:
            return ChromaTimeout(f"CHROMA_URL: Chroma at {self.url} did not answer{within} ({doing})")
        return ChromaTimeout(f"Chroma ({self.path or 'in memory'}) was busy: not done{within} ({doing})")

    def failure(self, doing: str, exc: BaseException) -> ServiceError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.url:
            return ServiceError(f"CHROMA_URL: Chroma at {self.url} failed while {doing} ({reason})")
        return ServiceError(f"Chroma ({self.path or 'in memory'}) failed while {doing} ({reason})")


def make_chroma_client(data_dir: Path, chroma_url: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> ClientAPI:
    """An embedded PersistentClient in `data_dir/chroma`, or an HttpClient for `chroma_url` whose
    every call (connecting included) gives up after `timeout_s`."""
    settings = ChromaSettings(anonymized_telemetry=False)
    if not chroma_url:
        path = data_dir / "chroma"
        with ChromaEndpoint(None, str(path), None).calling("opening the embedded store"):
            path.mkdir(parents=True, exist_ok=True)
            # Two processes creating one store at once fail ("table collections already exists").
            with filelock.FileLock(path / "open.lock", timeout=OPEN_LOCK_TIMEOUT_S):
                return chromadb.PersistentClient(path=str(path), settings=settings)
    url = urlparse(str(chroma_url))
    endpoint = ChromaEndpoint(hide_password(str(chroma_url)).rstrip("/"), None, timeout_s)  # for messages

    def connect() -> ClientAPI:
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=settings,
        )

    client = _within(timeout_s, connect, endpoint, "connecting")
    session = _http_session(client)
    if session is None:  # a chromadb release that moved its session: fail loudly, never hang silently
        raise RuntimeError("cannot set Chroma's HTTP timeout: chromadb's client changed (expected chromadb 1.5)")
    session.timeout = httpx.Timeout(timeout_s)
    return client


def _within(timeout_s: float, call: Callable[[], T], endpoint: ChromaEndpoint, doing: str) -> T:
    """`call()` in a daemon thread, waited for at most `timeout_s` (a thread still stuck on a silent
    server is abandoned, and does not keep the process from exiting)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="chroma-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise endpoint.timeout(doing)
    if failure:
        with endpoint.calling(doing):
            raise failure[0]
    return outcome[0]


def _http_session(client: ClientAPI) -> httpx.Client | None:
    """The httpx session of an HttpClient (private in chromadb: the one place that reaches it)."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    return session if isinstance(session, httpx.Client) else None
