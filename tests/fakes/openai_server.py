"""A fake OpenAI-compatible chat server, for tests only.

It speaks the Chat Completions wire format the way the real API does, so the code under test
runs its real client (langchain-openai's `ChatOpenAI` over the `openai` SDK and httpx) against
it: `POST /v1/chat/completions`, streamed as server-sent events (`data: {chat.completion.chunk}`
lines: a role chunk, content deltas, a chunk with `finish_reason`, a usage chunk when
`stream_options.include_usage` is set, then `data: [DONE]`) or as one `chat.completion` object;
OpenAI-style error bodies (`{"error": {"message", "type", "param", "code"}}`) for 400 / 401 / 429 /
500; `GET /v1/models`; `POST /v1/embeddings` (deterministic vectors: `fake_embedding(text)`, as floats
or base64 as asked; scripted like chat: a status, `retry_after_s`, `first_token_delay_s` as the
time to answer, `hang`; `embedding_in_flight` / `max_embedding_in_flight` count concurrent requests).

Each test scripts what the model does (`Behaviour`): the reply (a string, or a function of the
request's messages, e.g. to echo the system prompt so a test proves the context reached the
model; or tool calls, `[ToolCall(name, arguments)]`, answered as the real API does: `tool_calls`
with `finish_reason: "tool_calls"`, streamed as an opening delta per call then its arguments in
pieces), the time to the first token and between tokens, and the failures real servers have:
an error status, a hang before the first token, a connection dropped mid-stream. Every request
is recorded (`server.requests`).

The server runs on 127.0.0.1 on a free port, in a thread with its own event loop, so it keeps
serving whatever event loop (or none) the test runs on, and a hang on its side never blocks the
test. Use it as a context manager, sync or async, or through the `fake_openai_server` fixture::

    async with FakeOpenAIServer(Behaviour(reply="Two years.")) as server:
        model = ChatOpenAI(base_url=server.base_url, api_key="test", model="gpt-4o-mini")
        server.set(first_token_delay_s=5)           # the next requests are slow
        server.script(Behaviour(status=429))        # only the next request is rate limited
        ...
        assert server.chat_requests[-1].system_prompt.startswith("You are")
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiohttp import web

Messages = list[dict[str, Any]]
EMBEDDING_DIMENSIONS = 64


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake server's vector for `text`: unit length, the same for the same text in any process."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    return [float(x) for x in vector / np.linalg.norm(vector)]


@dataclass
class ToolCall:
    """A function call the fake model makes (OpenAI tool calling)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)  # a str is sent as it is (malformed JSON too)
    id: str = field(default_factory=lambda: "call_" + secrets.token_hex(12))

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments, ensure_ascii=False)


Answer = str | list[ToolCall]
Reply = Answer | Callable[[Messages], Answer]

_ERRORS: dict[int, tuple[str, str, str | None]] = {  # status: (message, type, code), as OpenAI words them
    400: ("Invalid request: {detail}", "invalid_request_error", None),
    401: ("Incorrect API key provided. You can find your API key in your account settings.", "invalid_request_error",
          "invalid_api_key"),
    404: ("The model `{model}` does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    429: ("Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1. "
          "Please try again in 20s.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}  # fmt: skip


class _ClientGone(Exception):
    """The client disconnected before the answer was complete."""


@dataclass
class Behaviour:
    """What the fake model does for one request."""

    reply: Reply = "This is the fake model's answer."
    first_token_delay_s: float = 0.0  # from reading the request to the first content token
    token_delay_s: float = 0.0  # between content tokens
    status: int = 200  # anything >= 400: answer with that status and an OpenAI-style error body
    retry_after_s: float | None = None  # `retry-after` header sent with a 429 or 503
    hang: bool = False  # never answer (until the client goes away or the server stops)
    drop_after_tokens: int | None = None  # stream this many tokens, then close the connection mid-body
    role_chunk_first: bool = False  # send headers and the role chunk at once, then wait for the first
    # token (what reasoning models and some proxies do); by default the role chunk comes with it
    tokens: list[str] | None = None  # exact content deltas to send; by default the reply is split


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> Messages:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def system_prompt(self) -> str:
        """Text of the first system (or developer) message, "" if none."""
        for message in self.messages:
            if message.get("role") in ("system", "developer"):
                return content_text(message)
        return ""

    @property
    def last_user_message(self) -> str:
        users = [content_text(m) for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""

    @property
    def tool_names(self) -> list[str]:
        """The functions the request offered the model (`tools`), in order."""
        tools = self.body.get("tools")
        return [t.get("function", {}).get("name", "") for t in tools] if isinstance(tools, list) else []

    @property
    def text(self) -> str:
        """Everything the request says in words: every message's text and the tool definitions."""
        parts = [content_text(m) for m in self.messages]
        return "\n".join(parts) + "\n" + json.dumps(self.body.get("tools") or [], ensure_ascii=False)


def content_text(message: dict[str, Any]) -> str:
    """A message's text, whether `content` is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def routing_grading_answering(answer: str) -> Callable[[list[dict[str, Any]]], str | list[ToolCall]]:
    """A reply for each of the product's three model calls, as a real model would give them: the
    router searches the knowledge base with the last message, the grader keeps document 1, and the
    answer is `answer`."""

    def reply(messages: list[dict[str, Any]]) -> str | list[ToolCall]:
        system = content_text(messages[0]) if messages[0].get("role") == "system" else ""
        last = content_text(messages[-1])
        if system.startswith("You route the messages"):
            return [ToolCall("search_knowledge_base", {"query": last})]
        if last.startswith("For each numbered document"):
            return '{"relevant": [1]}'
        return answer

    return reply


_TOKEN = re.compile(r"\s*\S{1,6}|\s+$")


def split_tokens(text: str) -> list[str]:
    """Content deltas shaped like a model's: short pieces, spaces leading; they join back to `text`."""
    return _TOKEN.findall(text)


class FakeOpenAIServer:
    """An OpenAI-compatible chat server on 127.0.0.1 (free port), running in its own thread."""

    def __init__(self, behaviour: Behaviour | None = None, *, model: str = "gpt-4o-mini") -> None:
        self.behaviour = behaviour or Behaviour()
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0  # chat requests being answered right now
        self._idle = threading.Event()  # set while no chat request is being answered
        self._idle.set()
        self.client_disconnects = 0  # answers abandoned because the client went away
        self.embedding_in_flight = 0  # embedding requests being answered right now
        self.max_embedding_in_flight = 0  # the most at once since the start (or `reset`)
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._startup_error: BaseException | None = None
        self.port = 0

    # ------------------------------------------------------------------ scripting

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set(self, **changes: Any) -> Behaviour:
        """Change the default behaviour (every request not scripted); returns the new one."""
        self.behaviour = dataclasses.replace(self.behaviour, **changes)
        return self.behaviour

    def reset(self, behaviour: Behaviour | None = None) -> None:
        """Forget the recorded requests and the script; behave like `behaviour` (default: `Behaviour()`)."""
        with self._lock:
            self._queue.clear()
            self.behaviour = behaviour or Behaviour()
            self.requests.clear()
            self.client_disconnects = 0
            self.max_embedding_in_flight = 0

    def script(self, *behaviours: Behaviour) -> None:
        """The next requests behave like these, in order; later ones use the default again."""
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    def wait_until_idle(self, timeout_s: float) -> bool:
        """Block until no chat request is being answered (e.g. the client closed an abandoned
        stream); False on timeout. From async code: `await asyncio.to_thread(...)`."""
        return self._idle.wait(timeout_s)

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.behaviour

    # ------------------------------------------------------------------ life cycle

    def start(self) -> FakeOpenAIServer:
        ready = threading.Event()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        if self._startup_error is not None:
            raise RuntimeError(f"fake OpenAI server did not start: {self._startup_error}")
        return self

    def stop(self) -> None:
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or thread is None:
            return
        self._stopping.set()  # hung and slow answers end now
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAIServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    # ------------------------------------------------------------------ handlers

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}]}
        )

    async def _recorded(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """The request's JSON body (None when not JSON), recorded; a 401 when it has no bearer key."""
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body if isinstance(body, dict) else {})
        )
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return body, self._error(401)
        return body, None

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._recorded(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return self._error(400, detail="the body is not a JSON object")
        messages = body.get("messages")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self._error(400, detail="you must provide a model parameter")
        if not isinstance(messages, list) or not messages:
            return self._error(400, detail="'messages' must be a non-empty array")
        behaviour = self._next_behaviour()
        model = body["model"]
        if behaviour.status >= 400:
            return self._error(behaviour.status, model=model, retry_after_s=behaviour.retry_after_s)
        reply = behaviour.reply(messages) if callable(behaviour.reply) else behaviour.reply
        calls = reply if isinstance(reply, list) else []
        if calls:  # the arguments stream in pieces, as tokens do
            tokens = [piece for call in calls for piece in split_tokens(call.arguments_json)]
        else:
            assert isinstance(reply, str)
            tokens = behaviour.tokens if behaviour.tokens is not None else split_tokens(reply)
        self.in_flight += 1
        self._idle.clear()
        try:
            if body.get("stream"):
                return await self._stream(request, body, behaviour, tokens, calls)
            if behaviour.hang:
                await self._until_gone(request)
            await self._pause(
                request, behaviour.first_token_delay_s + behaviour.token_delay_s * max(len(tokens) - 1, 0)
            )
            completion = self._completion(model, "".join(tokens), messages, calls)
            return web.json_response(completion, headers=self._headers())
        except _ClientGone:
            self.client_disconnects += 1
            return web.Response(status=499)  # never arrives: nobody is listening
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def _embeddings(self, request: web.Request) -> web.Response:
        """`POST /v1/embeddings`: one vector per input, numbered, in the input's order."""
        body, refused = await self._recorded(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return self._error(400, detail="you must provide a model parameter")
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
            return self._error(400, detail="'input' must be a non-empty string or array of non-empty strings")
        behaviour = self._next_behaviour()
        self.embedding_in_flight += 1  # one event loop: no lock needed
        self.max_embedding_in_flight = max(self.max_embedding_in_flight, self.embedding_in_flight)
        try:
            if behaviour.hang:
                await self._until_gone(request)
            await self._pause(request, behaviour.first_token_delay_s)
        except _ClientGone:
            self.client_disconnects += 1
            return web.Response(status=499)
        finally:
            self.embedding_in_flight -= 1
        if behaviour.status >= 400:
            return self._error(behaviour.status, model=body["model"], retry_after_s=behaviour.retry_after_s)
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = fake_embedding(text, dimensions)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(text.split()) for text in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=self._headers(),
        )

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        behaviour: Behaviour,
        tokens: list[str],
        calls: list[ToolCall] | None = None,
    ) -> web.StreamResponse:
        model = body["model"]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        completion_id = "chatcmpl-" + secrets.token_hex(14)
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                data["usage"] = None
            return data

        if calls:
            return await self._stream_tool_calls(request, behaviour, chunk, calls, include_usage, body)
        role_chunk = chunk({"role": "assistant", "content": "", "refusal": None})
        if behaviour.hang and not behaviour.role_chunk_first:
            await self._until_gone(request)  # no status line, no headers: nothing at all
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", **self._headers()}
        )
        await response.prepare(request)
        if behaviour.role_chunk_first:
            await self._send(response, role_chunk)
            if behaviour.hang:
                await self._until_gone(request)
        await self._pause(request, behaviour.first_token_delay_s)
        if not behaviour.role_chunk_first:
            await self._send(response, role_chunk)
        for number, token in enumerate(tokens):
            if behaviour.drop_after_tokens is not None and number >= behaviour.drop_after_tokens:
                break
            if number:
                await self._pause(request, behaviour.token_delay_s)
            await self._send(response, chunk({"content": token}))
        if behaviour.drop_after_tokens is not None:
            # Cut the connection in the middle of the chunked body: no finish_reason, no [DONE].
            if request.transport is not None:
                request.transport.close()
            return response
        await self._send(response, chunk({}, "stop"))
        if include_usage:
            usage_chunk = chunk({}) | {"choices": [], "usage": self._usage(body["messages"], "".join(tokens))}
            await self._send(response, usage_chunk)
        return await self._done(response)

    async def _stream_tool_calls(
        self,
        request: web.Request,
        behaviour: Behaviour,
        chunk: Callable[..., dict[str, Any]],
        calls: list[ToolCall],
        include_usage: bool,
        body: dict[str, Any],
    ) -> web.StreamResponse:
        """Tool calls as the API streams them: per call, a delta opening it (index, id, name, empty
        arguments; the first one also carries the role), then its arguments in pieces; then
        `finish_reason: "tool_calls"`."""
        if behaviour.hang:
            await self._until_gone(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", **self._headers()}
        )
        await response.prepare(request)
        await self._pause(request, behaviour.first_token_delay_s)
        for index, call in enumerate(calls):
            opening = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            delta: dict[str, Any] = {"tool_calls": [opening]}
            if index == 0:
                delta = {"role": "assistant", "content": None, **delta}
            await self._send(response, chunk(delta))
            for piece in split_tokens(call.arguments_json):
                await self._pause(request, behaviour.token_delay_s)
                await self._send(response, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        await self._send(response, chunk({}, "tool_calls"))
        if include_usage:
            arguments = "".join(call.arguments_json for call in calls)
            await self._send(response, chunk({}) | {"choices": [], "usage": self._usage(body["messages"], arguments)})
        return await self._done(response)

    async def _done(self, response: web.StreamResponse) -> web.StreamResponse:
        """The stream's end, as the API sends it."""
        try:
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            raise _ClientGone from None
        return response

    async def _send(self, response: web.StreamResponse, data: dict[str, Any]) -> None:
        try:
            await response.write(b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n")
        except ConnectionError:  # the client closed the stream (a timeout or a barge-in on its side)
            raise _ClientGone from None

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Sleep; end early when the server stops, raise `_ClientGone` when the client leaves."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0 and not self._stopping.is_set():
            if request.transport is None or request.transport.is_closing():
                raise _ClientGone
            await asyncio.sleep(min(remaining, 0.02))

    async def _until_gone(self, request: web.Request) -> None:
        """Wait until the client disconnects (then raise `_ClientGone`) or the server stops."""
        await self._pause(request, float("inf"))

    # ------------------------------------------------------------------ bodies

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": "req_" + secrets.token_hex(16), "openai-processing-ms": "1"}

    def _error(
        self, status: int, *, model: str = "", detail: str = "", retry_after_s: float | None = None
    ) -> web.Response:
        message, kind, code = _ERRORS.get(status, ("The server returned an error.", "server_error", None))
        headers = self._headers()
        if status in (429, 503) and retry_after_s is not None:
            headers["retry-after"] = f"{retry_after_s:g}"
        body = {
            "error": {"message": message.format(model=model, detail=detail), "type": kind, "param": None, "code": code}
        }
        return web.json_response(body, status=status, headers=headers)

    def _usage(self, messages: Messages, text: str) -> dict[str, int]:
        prompt = sum(len(content_text(m).split()) + 4 for m in messages)
        completion = len(split_tokens(text))
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(
        self, model: str, text: str, messages: Messages, calls: list[ToolCall] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if calls:
            message["content"] = None
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                for c in calls
            ]
        return {
            "id": "chatcmpl-" + secrets.token_hex(14),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if calls else "stop",
                }
            ],
            "usage": self._usage(messages, text),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }


@pytest.fixture
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    """A started `FakeOpenAIServer` with the default behaviour; stopped after the test."""
    with FakeOpenAIServer() as server:
        yield server
