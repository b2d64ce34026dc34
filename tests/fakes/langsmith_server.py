"""A fake LangSmith API that records what the langsmith client sends, for tests only.

Point `LANGSMITH_ENDPOINT` at `server.url`. It answers `GET /info` and takes runs however the
installed client (langsmith 0.15.x) sends them: `POST /runs/multipart` (multipart/form-data, parts
`post.<id>`, `post.<id>.inputs`, `patch.<id>.outputs`..., the body possibly zstd- or gzip-encoded),
`POST /runs/batch` (`{"post": [...], "patch": [...]}`), `POST /runs`, `PATCH /runs/<id>`, and
`POST /feedback`. `runs()` merges each run's create and updates, in the order received; `bodies`
keeps every decoded body (for "no raw PII was sent"). `hang()` makes every later request wait
forever (the connection is accepted and never answered).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections import defaultdict
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, cast

import zstandard
from aiohttp import web

from fakes.threaded import ThreadedServer

INFO = {"version": "0.10.0", "instance_flags": {"zstd_compression_enabled": True}, "batch_ingest_config": {}}


class FakeLangSmith(ThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.operations: list[tuple[str, dict[str, Any]]] = []  # ("post" | "patch", the run's fields)
        self.feedback: list[dict[str, Any]] = []
        self.bodies: list[str] = []
        self.requests: list[str] = []  # "METHOD /path"
        self._hanging = False
        self._released = threading.Event()  # set when the server stops: hanging requests end then
        self._lock = threading.Lock()

    def hang(self) -> None:
        self._hanging = True

    def stop(self) -> None:
        self._released.set()
        super().stop()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{path:.*}", self._handle)

    # ------------------------------------------------------------------ what was sent

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run by id: its create, then each update over it (`_ops`: how many operations)."""
        merged: dict[str, dict[str, Any]] = {}
        with self._lock:
            operations = list(self.operations)
        for _, fields in operations:
            run = merged.setdefault(str(fields["id"]), {"_ops": 0})
            run["_ops"] += 1
            run.update({key: value for key, value in fields.items() if value is not None})
        return merged

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        """Runs grouped by trace id."""
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in self.runs().values():
            grouped[str(run.get("trace_id"))].append(run)
        return dict(grouped)

    def roots(self) -> list[dict[str, Any]]:
        return [run for run in self.runs().values() if not run.get("parent_run_id")]

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"the fake LangSmith did not get what was expected; runs: {list(self.runs())}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ the API

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self._hanging:  # accepted, never answered (until the server stops)
            await asyncio.to_thread(self._released.wait)
        if request.path == "/info":
            return web.json_response(INFO)
        body = _decoded(await request.read(), request.headers.get("Content-Encoding", ""))
        with self._lock:
            self.bodies.append(body.decode("utf-8", "replace"))
        if request.path == "/runs/multipart":
            self._multipart(request.headers["Content-Type"], body)
        elif request.path == "/runs/batch":
            batch = json.loads(body)
            self._add(
                [("post", run) for run in batch.get("post") or []] + [("patch", r) for r in batch.get("patch") or []]
            )
        elif request.path == "/runs" and request.method == "POST":
            self._add([("post", json.loads(body))])
        elif request.path.startswith("/runs/") and request.method == "PATCH":
            self._add([("patch", json.loads(body) | {"id": request.path.rsplit("/", 1)[-1]})])
        elif request.path == "/feedback":
            self.feedback.append(json.loads(body))
        else:
            return web.json_response({"detail": "not found"}, status=404)
        return web.json_response({}, status=202 if request.path.startswith("/runs") else 200)

    def _multipart(self, content_type: str, body: bytes) -> None:
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        runs: dict[tuple[str, str], dict[str, Any]] = {}
        order: list[tuple[str, str]] = []
        for part in message.iter_parts():
            name = str(part.get_param("name", header="content-disposition"))
            operation, run_id, *field = name.split(".")
            payload = json.loads(cast(bytes, part.get_payload(decode=True)) or b"null")
            if operation == "feedback":
                self.feedback.append(payload)
                continue
            key = (operation, run_id)
            if key not in runs:
                runs[key] = {"id": run_id}
                order.append(key)
            if field:
                runs[key][field[0]] = payload
            else:
                runs[key].update(payload)
        self._add([(operation, runs[(operation, run_id)]) for operation, run_id in order])

    def _add(self, operations: list[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            self.operations += operations


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    if encoding == "gzip":
        return gzip.decompress(body)
    return body
