"""Authentication as `httpx.Auth` flows. Each request an auth flow yields — including OAuth2 token
requests — is sent by the same client through the same transport layers (allow-list, rate limit).

- `ApiKeyAuth`: a key in a header or in the query string.
- `BearerAuth`: a fixed bearer token.
- `OAuth2ClientCredentials`: a token fetched on first use (one fetch even when many requests start
  together), cached until shortly before `expires_in`, and refreshed once when the API answers 401;
  a second 401 is returned as is (the client reports it as an "auth" failure).

Credentials stay on their origin: the flow runs once, before httpx follows redirects, and httpx
strips only `Authorization` when a redirect changes origin; so the client refuses any redirect that
changes origin (`transport.refuse_cross_origin_redirect`), for every auth type and token request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from base64 import b64encode
from collections.abc import AsyncGenerator, Generator
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx

from retrievers.http.body import parse_json
from retrievers.turn.deadline import remaining
from retrievers.turn.failures import FetchError

log = logging.getLogger(__name__)

TOKEN_MAX_BYTES = 64_000


class ApiKeyAuth(httpx.Auth):
    """An API key sent as a header (`X-Api-Key: ...`) or a query parameter (`?key=...`)."""

    def __init__(self, name: str, value: str, location: Literal["header", "query"] = "header") -> None:
        if location not in ("header", "query"):
            raise ValueError(f"location must be 'header' or 'query', not {location!r}")
        self.name = name
        self.value = value
        self.location = location

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.location == "header":
            request.headers[self.name] = self.value
        else:
            request.url = request.url.copy_set_param(self.name, self.value)
        yield request

    def __repr__(self) -> str:  # never show the key
        return f"ApiKeyAuth(name={self.name!r}, location={self.location!r})"


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(...)"


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client credentials grant (RFC 6749 §4.4), the token shared by every request."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        client_auth: Literal["basic", "body"] = "basic",  # client_secret_basic or client_secret_post
        default_expires_in_s: float = 300.0,  # when the token response has no expires_in
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.client_auth = client_auth
        self.default_expires_in_s = default_expires_in_s
        self._token: str | None = None
        self._expires_at = 0.0  # time.monotonic()
        self._lock = asyncio.Lock()
        self.fetches = 0  # token requests made (for logs and tests)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuth2ClientCredentials works with httpx.AsyncClient only")

    def _current(self) -> str | None:
        return self._token if self._token is not None and time.monotonic() < self._expires_at else None

    def _token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret)}"  # RFC 6749 §2.3.1
            headers["Authorization"] = "Basic " + b64encode(pair.encode()).decode("ascii")
        else:
            form |= {"client_id": self.client_id, "client_secret": self._client_secret}
        extensions: dict[str, Any] = {}
        left = remaining()
        if left != float("inf"):
            extensions["timeout"] = httpx.Timeout(max(left, 0.001)).as_dict()
        return httpx.Request("POST", self.token_url, data=form, headers=headers, extensions=extensions)

    async def _accept(self, response: httpx.Response) -> str:
        """Store the token from the token endpoint's answer; `FetchError("auth")` when there is none."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > TOKEN_MAX_BYTES:
            raise FetchError("auth", f"the token endpoint's answer is too large ({declared} bytes)")
        body = await response.aread()  # httpx reads it again after the flow resumes: it must stay readable
        if response.status_code != 200:
            raise FetchError("auth", f"the token endpoint answered {response.status_code}", status=response.status_code)
        try:
            data = parse_json(body, response.status_code)
        except FetchError:
            raise FetchError("auth", "the token endpoint's answer is not JSON", status=response.status_code) from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise FetchError("auth", "the token endpoint's answer has no access_token", status=response.status_code)
        expires_in = data.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else self.default_expires_in_s
        margin = min(30.0, lifetime * 0.1)  # refresh a little before it expires
        self._token, self._expires_at = token, time.monotonic() + lifetime - margin
        log.info("OAuth2 token for %s obtained, valid %.0f s", self.client_id, lifetime)
        return token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        used: str | None = None
        for attempt in range(2):
            async with self._lock:  # one token request at a time, shared by everyone waiting
                if attempt and self._token == used:
                    self._token = None  # refused with this token: drop it (unless someone refreshed it already)
                token = self._current()
                if token is None:
                    self.fetches += 1
                    token = await self._accept((yield self._token_request()))
            used = token
            request.headers["Authorization"] = f"Bearer {token}"
            response = yield request
            if response.status_code != 401:
                return
            if not attempt:
                log.info("401 from %s: refreshing the OAuth2 token once", request.url.host)

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r})"
