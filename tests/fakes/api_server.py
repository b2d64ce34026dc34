"""A scriptable JSON API server, for testing the HTTP stack against a real socket (tests only).

Runs on 127.0.0.1 (a free port) in its own thread (`ThreadedServer`), so a hang on its side never
blocks the test's loop. Reach it as `127.0.0.1` or as `localhost`: two host names for one server,
so a test can prove a request to a refused host never arrived (`server.requests`).

Per path, a test scripts what the server does (`Reply`): a JSON reply, a status (with
`Retry-After`), a delay, a hang, a malformed or oversized body (with or without Content-Length),
a redirect. `server.script(path, *replies)` queues replies for the next requests to that path;
`server.reply(path, reply)` sets what it answers after that. An unscripted path echoes the request
(method, path, query, headers) as JSON.

OAuth2 client credentials (RFC 6749 §4.4): `POST /oauth/token` issues bearer tokens (client
authentication by HTTP Basic or in the form) valid for `token_lifetime_s`; `GET /protected`
answers 200 with a valid token and 401 otherwise. `revoke_tokens()` makes every token issued so far
invalid; `reject_all_tokens = True` refuses every token, even new ones.

    with FakeApiServer() as server:
        url = server.url_for("/flaky")  # or url_for("/flaky", host="localhost")
        server.script("/flaky", Reply(status=503), Reply(status=503))  # then the default: 200
        ...
        assert [r.path for r in server.requests] == ["/flaky"] * 3
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aiohttp import web

from fakes.threaded import ThreadedServer

TOKEN_PATH = "/oauth/token"
PROTECTED_PATH = "/protected"


@dataclass
class Reply:
    """What the server answers to one request."""

    status: int = 200
    json: Any = field(default_factory=lambda: {"ok": True})
    body: bytes | None = None  # raw body instead of `json` (e.g. malformed JSON)
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: str | None = None  # `Retry-After` value (seconds or an HTTP date)
    delay_s: float = 0.0  # before answering
    hang: bool = False  # never answer (until the client goes away or the server stops)
    size: int | None = None  # a valid JSON body (one string) of exactly this many bytes
    chunked: bool = False  # send the body in chunks without Content-Length
    redirect_to: str | None = None  # 302 to this URL (or path)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    host: str  # the Host header, e.g. "localhost:43121"
    at: float = field(default_factory=time.monotonic)


class FakeApiServer(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RecordedRequest] = []
        self._defaults: dict[str, Reply] = {}
        self._queues: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # OAuth2
        self.client_id = "voicerag-client"
        self.client_secret = "s3cret"
        self.token_lifetime_s: float = 3600.0
        self.reject_all_tokens = False
        self.tokens: dict[str, float] = {}  # token -> expires at (monotonic)
        self._serial = itertools.count(1)

    # ------------------------------------------------------------------ scripting

    def url_for(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def reply(self, path: str, reply: Reply | None = None, **fields: Any) -> None:
        """From now on (after any queued replies), `path` answers like this."""
        with self._lock:
            self._defaults[path] = reply or Reply(**fields)

    def script(self, path: str, *replies: Reply) -> None:
        """The next requests to `path` get these replies, in order."""
        with self._lock:
            self._queues.setdefault(path, deque()).extend(replies)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def _next_reply(self, path: str) -> Reply | None:
        with self._lock:
            queue = self._queues.get(path)
            if queue:
                return queue.popleft()
            return self._defaults.get(path)

    # ------------------------------------------------------------------ life cycle

    def stop(self) -> None:
        self._stopping.set()  # hung and slow answers end now
        super().stop()
        self._stopping.clear()

    def routes(self, app: web.Application) -> None:
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get(PROTECTED_PATH, self._protected)
        app.router.add_route("*", "/{tail:.*}", self._any)

    async def _record(self, request: web.Request) -> RecordedRequest:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.read(),
            host=request.host,
        )
        self.requests.append(recorded)
        return recorded

    # ------------------------------------------------------------------ handlers

    async def _any(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        reply = self._next_reply(request.path)
        if reply is None:
            echo = {"method": recorded.method, "path": recorded.path, "query": recorded.query}
            return web.json_response(echo | {"headers": recorded.headers})
        return await self._answer(request, reply)

    async def _answer(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        try:
            await self._pause(request, float("inf") if reply.hang else reply.delay_s)
        except ConnectionResetError:
            return web.Response(status=499)  # nobody is listening any more
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            headers["Retry-After"] = reply.retry_after
        if reply.redirect_to is not None:
            headers["Location"] = reply.redirect_to
            return web.Response(status=302 if reply.status == 200 else reply.status, headers=headers)
        if reply.size is not None:
            body = b'"' + b"x" * max(reply.size - 2, 0) + b'"'
        elif reply.body is not None:
            body = reply.body
        else:
            body = json.dumps(reply.json).encode()
        headers.setdefault("Content-Type", "application/json")
        if not reply.chunked:
            return web.Response(status=reply.status, body=body, headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for start in range(0, len(body), 65536):
                await response.write(body[start : start + 65536])
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client stopped reading: what a size limit does
        return response

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Sleep; end early when the server stops; ConnectionResetError when the client leaves."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and not self._stopping.is_set():
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError
            await asyncio.sleep(min(left, 0.01))

    async def _token(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        scripted = self._next_reply(TOKEN_PATH)
        if scripted is not None:
            return await self._answer(request, scripted)
        form = dict(pair.split("=", 1) for pair in recorded.body.decode().split("&") if "=" in pair)
        form = {key: unquote_plus(value) for key, value in form.items()}
        client = (form.get("client_id"), form.get("client_secret"))
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            client = (unquote_plus(user), unquote_plus(password))
        if client != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        token = f"token-{next(self._serial)}"
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime_s
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime_s}
        if form.get("scope"):
            body["scope"] = form["scope"]
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _protected(self, request: web.Request) -> web.Response:
        await self._record(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
        if self.reject_all_tokens or expires is None or expires < time.monotonic():
            return web.json_response(
                {"error": "invalid_token"}, status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return web.json_response({"ok": True, "token": token})


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    """A started `FakeApiServer`; stopped after the test."""
    with FakeApiServer() as server:
        yield server
