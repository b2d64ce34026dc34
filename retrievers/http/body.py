"""Reading a streamed response body with a size limit, and parsing it as JSON."""

from __future__ import annotations

import json
from typing import Any

import httpx

from retrievers.turn.failures import FetchError


async def read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    """The (decoded) body, stopping as soon as it exceeds `max_bytes`: `FetchError("too_large")`."""
    declared = response.headers.get("Content-Length", "")
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if declared.isdigit() and not encoded and int(declared) > max_bytes:
        raise FetchError("too_large", f"the body is {declared} bytes, over {max_bytes}", status=response.status_code)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("too_large", f"the body exceeded {max_bytes} bytes", status=response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, status: int) -> Any:
    """The body as JSON; an empty body is `None`; anything else is `FetchError("bad_response")`."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise FetchError("bad_response", f"the body is not JSON: {exc}", status=status) from None
