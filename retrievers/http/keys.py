"""Response cache keys: "{namespace}:{hash}", equal for requests that are equal once normalised.

The hash covers the method, the normalised URL (lower-cased scheme and host, default port dropped,
no fragment, query parameters merged and sorted), the JSON body (keys sorted) and the caller's
identity when results are per user.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import httpx

from retrievers.http.transport import DEFAULT_PORTS, hostname

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"a cache namespace is letters, digits, '_', '.', '-': {namespace!r}")
    return namespace


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(
    namespace: str,
    method: str,
    url: str | httpx.URL,
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    identity: str | None = None,
) -> str:
    """A cache key, the same for requests that are the same once normalised."""
    parsed = httpx.URL(url)
    if params:
        parsed = parsed.copy_merge_params(params)  # values as httpx sends them (True → "true")
    scheme = parsed.scheme.lower()
    port = None if parsed.port in (None, DEFAULT_PORTS.get(scheme)) else parsed.port
    path = parsed.raw_path.split(b"?", 1)[0].decode("ascii") or "/"
    material = [
        method.upper(),
        scheme,
        hostname(parsed),
        port,
        path,
        sorted(parsed.params.multi_items()),
        body,
        identity,
    ]
    digest = hashlib.sha256(_canonical(material).encode()).hexdigest()[:32]
    return f"{check_namespace(namespace)}:{digest}"
