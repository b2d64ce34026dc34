"""A real-time feed over WebSocket: keep the latest value, answer from it instantly, say how fresh it is.

A feed (a service status, a price stream...) is declared in configuration (`RealtimeFeedConfig`,
one entry of `realtime:` in `data/sources.yaml`). `await source.start()` starts one background
task, owned by the source, that connects, sends the optional subscribe message, and keeps the
latest value with its timestamp. When the connection drops, is refused or fails its handshake, the
task reconnects with exponential backoff and jitter (capped, reset after a successful connection).
A message that is not JSON, or lacks the declared value or timestamp, is logged and skipped.
`aclose()` cancels the task and closes the connection.

`fetch` never touches the network: it answers from the latest value, with a sentence that says how
old it is ("(as of 12 seconds ago)"), and warns when it is older than `stale_after_s`. A value
received before a disconnect is still served, flagged by its age. Before any value has arrived it
raises `FetchError("unreachable")`, so the turn says it could not get it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from retrievers.http.address_guard import NetworkPolicy
from retrievers.language import Language
from retrievers.sources.base import Fetched, Source, SourceContext
from retrievers.sources.keywords import KeywordMatcher
from retrievers.turn.failures import FetchError

log = logging.getLogger(__name__)

_LANGUAGES: tuple[Language, ...] = ("en", "ja")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what an OpenAI tool name may be

DEFAULT_SUMMARY: dict[Language, str] = {
    "en": "The latest value of {label}: {value}.",
    "ja": "{label}の最新の値は{value}です。",
}


class RealtimeFeedConfig(BaseModel):
    """One real-time feed, as declared under `realtime:` in `data/sources.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # the source's name and LLM tool name
    url: str  # wss://, or ws:// to a development host (HTTP_INSECURE_HOSTS)
    description: str  # what it answers (LLM router tool description)
    labels: dict[Language, str]  # how it is named in a spoken sentence; both languages
    examples: dict[Language, list[str]] = Field(default_factory=dict)  # router examples
    keywords: dict[Language, list[str]] = Field(default_factory=dict)  # rule routing, per language
    subscribe: dict[str, Any] | list[Any] | str | None = None  # sent after connecting (JSON unless a string)
    value_path: str | None = None  # dot path to the value in each message ("data", "items.0.price"); None: all
    timestamp_path: str | None = None  # dot path to the value's time (ISO 8601 or epoch s/ms); None: receive time
    stale_after_s: float = Field(default=120.0, gt=0)  # older than this: say it may be out of date
    summary: dict[Language, str] = Field(default_factory=dict)  # templates with {fields} of the value
    required_roles: tuple[str, ...] = ()  # empty: anyone may use it
    timeout_s: float = Field(default=0.5, gt=0)  # run_source budget; fetch is instant anyway
    open_timeout_s: float = Field(default=5.0, gt=0)  # TCP + TLS + WebSocket handshake
    backoff_initial_s: float = Field(default=0.5, gt=0)  # first reconnect delay
    backoff_max_s: float = Field(default=30.0, gt=0)  # cap of the reconnect delay

    @field_validator("name")
    @classmethod
    def _tool_name(cls, name: str) -> str:
        if not _TOOL_NAME.match(name):
            raise ValueError("name must be 1-64 letters, digits, '_' or '-' (it is the LLM tool name)")
        return name

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"url must start with ws:// or wss://, not {parts.scheme or 'nothing'}://")
        if not parts.hostname:
            raise ValueError("url has no host")
        return url

    @field_validator("labels")
    @classmethod
    def _both_languages(cls, labels: dict[Language, str]) -> dict[Language, str]:
        missing = [language for language in _LANGUAGES if not labels.get(language)]
        if missing:
            raise ValueError(f"labels needs every language; missing: {', '.join(missing)}")
        return labels

    @field_validator("summary")
    @classmethod
    def _templates_parse(cls, summary: dict[Language, str]) -> dict[Language, str]:
        for language, template in summary.items():
            try:
                list(string.Formatter().parse(template))
            except ValueError as exc:
                raise ValueError(f"summary.{language} is not a valid template: {exc}") from exc
        return summary

    @field_validator("value_path", "timestamp_path")
    @classmethod
    def _dot_path(cls, path: str | None) -> str | None:
        if path is not None and (not path or any(not part for part in path.split("."))):
            raise ValueError(f"{path!r} is not a dot path like 'data' or 'data.items.0'")
        return path

    @model_validator(mode="after")
    def _backoff_order(self) -> RealtimeFeedConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self


class RealtimeParams(BaseModel):
    """A real-time feed takes no parameters: it answers with its latest value."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Latest:
    """The latest value of a feed and when it was true."""

    value: Any
    timestamp: float  # epoch seconds: the message's own time, or when it was received
    received_at: float  # epoch seconds
    received_monotonic: float  # for the age when the feed gives no timestamp
    from_message: bool  # True when `timestamp` comes from the message (timestamp_path)

    def age_s(self) -> float:
        if self.from_message:
            return max(0.0, time.time() - self.timestamp)  # a server clock ahead of ours is "now"
        return time.monotonic() - self.received_monotonic


class _BadMessage(ValueError):
    """A message the feed cannot use (not JSON, no value, no usable timestamp)."""


class RealtimeSource(Source[RealtimeParams]):
    """The latest value of a WebSocket feed, kept by a background task; `fetch` answers from memory."""

    params_model = RealtimeParams

    def __init__(self, config: RealtimeFeedConfig | dict[str, Any], network: NetworkPolicy | None = None) -> None:
        self.config = config if isinstance(config, RealtimeFeedConfig) else RealtimeFeedConfig.model_validate(config)
        self.network = network or NetworkPolicy()  # wss only, except development hosts; resolved addresses checked
        super().__init__(ttl_s=0.0, timeout_s=self.config.timeout_s, required_roles=self.config.required_roles)
        self.name, self.description = self.config.name, self.config.description
        self.labels, self.examples = self.config.labels, self.config.examples
        self._keywords = {language: KeywordMatcher(words) for language, words in self.config.keywords.items() if words}
        self._latest: Latest | None = None
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._rng = random.Random()
        self.connections = 0  # successful connections so far (1 after the first, +1 per reconnect)
        self.skipped_messages = 0  # messages that were not JSON or lacked the value / timestamp

    def __repr__(self) -> str:
        return f"RealtimeSource(name={self.name!r}, url={_redact(self.config.url)!r})"

    # ------------------------------------------------------------------ state

    @property
    def latest(self) -> Latest | None:
        return self._latest

    @property
    def connection(self) -> ClientConnection | None:
        """The open WebSocket connection, or None between connections."""
        return self._ws

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Start the background subscription (idempotent). Returns at once; values arrive later."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"realtime:{self.name}")

    async def aclose(self) -> None:
        """Stop the subscription: cancel the task, wait for it, and close the connection."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ws, self._ws = self._ws, None
        if ws is not None:  # the task's `async with` closes it; this is only a safety net
            ws.transport.abort()

    async def __aenter__(self) -> RealtimeSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the subscription

    def backoff_delay(self, failures: int) -> float:
        """The wait before reconnect attempt `failures` (1 = the first after a drop): exponential,
        capped at `backoff_max_s`, with jitter that keeps it between half and all of the step."""
        step = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** max(0, failures - 1))
        return step * self._rng.uniform(0.5, 1.0)

    async def _run(self) -> None:
        url = self.config.url
        where = _redact(url)
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)
        refused = self.network.plain_refused(parts.scheme, host)
        if refused is not None:
            log.error("realtime %s: %s; the feed stays off", self.name, refused)
            return
        failures = 0
        while True:
            try:
                # The connection goes to an address the guard checked (TLS still verifies the name),
                # never to the name: resolving it again could give another address (DNS rebinding).
                addresses = await self.network.addresses(host, port, self.config.open_timeout_s)
                async with connect(
                    url,
                    open_timeout=self.config.open_timeout_s,
                    close_timeout=1.0,
                    max_queue=64,
                    proxy=None,
                    host=addresses[0],
                    port=port,
                ) as ws:
                    if self.config.subscribe is not None:
                        subscribe = self.config.subscribe
                        await ws.send(subscribe if isinstance(subscribe, str) else json.dumps(subscribe))
                    self._ws = ws
                    self.connections += 1
                    failures = 0  # a successful connection resets the backoff
                    log.info("realtime %s: connected to %s (connection %d)", self.name, where, self.connections)
                    async for message in ws:
                        self._receive(message)
                reason = "closed by the server"
            except ConnectionClosed as exc:
                reason = f"connection lost ({exc})"
            except FetchError as exc:  # the address guard refused where the name resolved to
                reason = f"refused ({exc})"
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                reason = f"could not connect ({type(exc).__name__}: {exc})"
            except Exception as exc:  # never let the subscription die on something unexpected
                reason = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                self._ws = None
            failures += 1
            delay = self.backoff_delay(failures)
            log.log(
                # Losing a feed that worked is loud; a feed that never came up (offline, demo) is not.
                logging.WARNING if failures == 1 and self.connections else logging.INFO,
                "realtime %s: %s; reconnecting to %s in %.2f s (attempt %d)",
                self.name,
                reason,
                where,
                delay,
                failures,
            )
            await asyncio.sleep(delay)

    def _receive(self, message: str | bytes) -> None:
        received_at, received_monotonic = time.time(), time.monotonic()
        try:
            payload = _parse(message)
            value = payload if self.config.value_path is None else _at_path(payload, self.config.value_path)
            if self.config.timestamp_path is None:
                timestamp, from_message = received_at, False
            else:
                timestamp, from_message = _epoch(_at_path(payload, self.config.timestamp_path)), True
        except _BadMessage as exc:
            self.skipped_messages += 1
            log.warning("realtime %s: skipped a message: %s", self.name, exc)
            return
        current = self._latest
        if from_message and current is not None and current.from_message and timestamp < current.timestamp:
            log.debug("realtime %s: skipped a message older than the latest value", self.name)
            return
        self._latest = Latest(value, timestamp, received_at, received_monotonic, from_message)

    # ------------------------------------------------------------------ the Source contract

    def extract(self, question: str, language: Language, earlier: list[str]) -> RealtimeParams | None:
        """The feed applies when the question has one of its keywords for that language."""
        keywords = self._keywords.get(language)
        if keywords is None or not keywords.heard_in(question):
            return None
        return RealtimeParams()

    async def fetch(self, params: RealtimeParams, ctx: SourceContext) -> Fetched:
        """The latest value, from memory (no network), with how fresh it is."""
        latest = self._latest
        if latest is None:
            state = (
                "not started"
                if self._task is None
                else "connected, no value yet"
                if self.connected
                else "not connected"
            )
            raise FetchError(
                "unreachable", f"{self.name}: no value received yet from {_redact(self.config.url)} ({state})"
            )
        age = latest.age_s()
        stale = age > self.config.stale_after_s
        language = ctx.language
        text = self._fill(self.config.summary.get(language) or DEFAULT_SUMMARY[language], latest.value, language)
        return Fetched(
            data={
                "value": latest.value,
                "timestamp": datetime.fromtimestamp(latest.timestamp, UTC).isoformat(),
                "age_s": round(age, 3),
                "stale": stale,
                "connected": self.connected,
            },
            summary=text + freshness(age, stale, language),
        )

    def _fill(self, template: str, value: Any, language: Language) -> str:
        fields: dict[str, Any] = {"value": value, "label": self.config.labels[language]}
        if isinstance(value, dict):
            fields.update({str(key): item for key, item in value.items()})
        try:
            return template.format_map(fields)
        except (KeyError, IndexError, AttributeError, TypeError, ValueError) as exc:
            raise FetchError(
                "bad_response", f"{self.name}: the summary template does not fit the latest value ({exc!r})"
            ) from exc


# ---------------------------------------------------------------------- helpers


def freshness(age_s: float, stale: bool, language: Language) -> str:
    """The phrase appended to the summary: how old the value is, and a warning when it is stale."""
    ago = _ago(age_s, language)
    if language == "ja":
        return f"（最終更新は{ago}のため、古い情報の可能性があります）" if stale else f"（{ago}の情報）"
    return f" (this may be out of date: last update {ago})" if stale else f" (as of {ago})"


def _ago(seconds: float, language: Language) -> str:
    """ "12 seconds ago" / "12秒前", in the largest whole unit; "just now" / "たった今" under a second."""
    for unit, size, ja in (("day", 86400, "日"), ("hour", 3600, "時間"), ("minute", 60, "分"), ("second", 1, "秒")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n}{ja}前" if language == "ja" else f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "たった今" if language == "ja" else "just now"


def _parse(message: str | bytes) -> Any:
    try:
        return json.loads(message)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        preview = message[:80] if isinstance(message, str) else repr(message[:80])
        raise _BadMessage(f"not JSON ({exc}): {preview!r}") from exc


def _at_path(payload: Any, path: str) -> Any:
    here = payload
    for part in path.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.lstrip("-").isdigit() and -len(here) <= int(part) < len(here):
            here = here[int(part)]
        else:
            raise _BadMessage(f"no {path!r} in the message")
    return here


def _epoch(raw: Any) -> float:
    """Epoch seconds from an ISO 8601 string or a number of seconds (or milliseconds)."""
    if isinstance(raw, bool):
        raise _BadMessage(f"timestamp {raw!r} is not a time")
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or raw < 0:
            raise _BadMessage(f"timestamp {raw!r} is not a time")
        return float(raw) / 1000 if raw > 1e11 else float(raw)  # 1e11 s is year 5138: it is ms
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise _BadMessage(f"timestamp {raw!r} is not ISO 8601") from exc
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise _BadMessage(f"timestamp {raw!r} is not a time")


def _redact(url: str) -> str:
    """The URL without credentials or query (tokens often travel there), for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
