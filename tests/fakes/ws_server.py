"""A real WebSocket feed server, for tests only.

It is a `websockets` server on 127.0.0.1 (a free port) in a thread with its own event loop, so it
keeps serving whatever the test's loop is doing, and the test loop's `asyncio.all_tasks()` holds
only the code under test's tasks. It does what real feeds do and what goes wrong with them:

- `push(message)` sends a JSON message to every connected client; `push_raw(text)` sends any text
  (malformed JSON);
- `snapshot`: when set, sent to each client as soon as it connects (the feed's current state);
- `drop_all()` cuts every connection (abruptly, no close frame; or with a close frame);
- `go_down()` stops listening and cuts every connection, so new connections are refused, and
  `come_back()` listens again on the same port;
- every message a client sends is recorded (`received`: parsed JSON, or the text when not JSON),
  and connections are counted (`connects`, `clients`).

The control methods are coroutines for the test's loop: they run on the server's loop and are
awaited without blocking the test's loop, so the client under test keeps running meanwhile::

    async with FakeWebSocketServer(snapshot={"data": {"store": "operational"}}) as server:
        source = RealtimeSource({... "url": server.url ...})
        await server.push({"data": {"store": "degraded"}})
        await server.drop_all()
        async with server.down():  # connections refused inside
            ...
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

T = TypeVar("T")


class FakeWebSocketServer:
    """A WebSocket server on 127.0.0.1 (free port), running in its own thread."""

    def __init__(self, *, path: str = "/v1/stream", snapshot: Any = None) -> None:
        self.path = path
        self.snapshot = snapshot  # sent (as JSON) to each client when it connects, unless None
        self.port = 0
        self.received: list[Any] = []  # every client message, in arrival order
        self.connects = 0  # connections accepted since start
        self._clients: set[ServerConnection] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    @property
    def clients(self) -> int:
        """Connections open right now."""
        return len(self._clients)

    @property
    def listening(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> FakeWebSocketServer:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-websocket", daemon=True)
        self._thread.start()
        await self._on_server(self._listen())
        return self

    async def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        await self._on_server(self._stop_listening(abrupt=True))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        loop.close()
        self._loop = self._thread = None

    async def __aenter__(self) -> FakeWebSocketServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ what the test does

    async def push(self, message: Any) -> int:
        """Send `message` as JSON to every connected client; returns how many got it."""
        return await self._on_server(self._broadcast(json.dumps(message, ensure_ascii=False)))

    async def push_raw(self, text: str) -> int:
        """Send `text` as it is (e.g. malformed JSON) to every connected client."""
        return await self._on_server(self._broadcast(text))

    async def drop_all(self, *, abrupt: bool = True) -> int:
        """Cut every connection: abruptly (TCP reset, no close frame) or with a 1012 close frame.
        The server keeps listening. Returns how many were cut."""
        return await self._on_server(self._drop(abrupt=abrupt))

    async def go_down(self, *, abrupt: bool = True) -> None:
        """Stop listening (new connections are refused) and cut every connection."""
        await self._on_server(self._stop_listening(abrupt=abrupt))

    async def come_back(self) -> None:
        """Listen again, on the same port."""
        await self._on_server(self._listen())

    @asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """Down inside the block, back after it."""
        await self.go_down()
        try:
            yield
        finally:
            await self.come_back()

    # ------------------------------------------------------------------ the server's side

    async def _on_server(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the fake WebSocket server is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(self._handle, "127.0.0.1", self.port, close_timeout=1.0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self, *, abrupt: bool) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=not abrupt)
        if abrupt:
            await self._drop(abrupt=True)
        await server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.split("?")[0] != self.path:
            await ws.close(1008, "unknown path")
            return
        self._clients.add(ws)
        self.connects += 1
        try:
            if self.snapshot is not None:
                await ws.send(json.dumps(self.snapshot, ensure_ascii=False))
            async for message in ws:
                try:
                    self.received.append(json.loads(message))
                except ValueError:
                    self.received.append(message)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(ws)

    async def _broadcast(self, text: str) -> int:
        clients = list(self._clients)
        results = await asyncio.gather(*(ws.send(text) for ws in clients), return_exceptions=True)
        return sum(1 for result in results if not isinstance(result, BaseException))

    async def _drop(self, *, abrupt: bool) -> int:
        clients = list(self._clients)
        if abrupt:
            for ws in clients:
                ws.transport.abort()
        else:
            await asyncio.gather(*(ws.close(1012, "service restart") for ws in clients), return_exceptions=True)
        return len(clients)
