"""Local servers that answer like the sample company's third-party APIs declared in
data/sources.yaml: a carrier's REST API (API key), a CRM (OAuth2 client credentials) and a
catalog GraphQL endpoint. For tests only."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.threaded import ThreadedServer

PARCELS = {
    "123456789012": {
        "status": "out for delivery",
        "last_event": {"location": "Shinagawa depot", "time": "2026-11-25T08:10:00+09:00"},
        "estimated_delivery": "2026-11-25",
    }
}
PRODUCTS = {"KH-300": {"name": "Kumo Halo KH-300", "rating": 4.6, "reviewCount": 312}}
MEMBERS = {
    "member-42": {"balance": 1280, "expires_on": "2027-03-31"},
    "member-7": {"balance": 35, "expires_on": "2026-12-31"},
}


@dataclass
class CompanyApis(ThreadedServer):
    api_key: str = "carrier-key"
    client_id: str = "voicerag"
    client_secret: str = "s3cret"
    token_lifetime_s: int = 3600
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, query or body)

    def __post_init__(self) -> None:
        super().__init__()

    def count(self, path_prefix: str) -> int:
        return sum(1 for path, _ in self.requests if path.startswith(path_prefix))

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/parcels/{number}", self._parcel)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_get("/v1/members/{member}/points", self._points)
        app.router.add_post("/graphql", self._graphql)

    async def _parcel(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.query_string))
        if request.headers.get("X-API-Key") != self.api_key:
            return web.json_response({"error": "invalid API key"}, status=401)
        parcel = PARCELS.get(request.match_info["number"].replace("-", ""))
        if parcel is None:
            return web.json_response({"error": "no such parcel"}, status=404)
        return web.json_response(parcel)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append((request.path, str(dict(form))))
        credentials = (form.get("client_id"), form.get("client_secret"))
        if request.headers.get("Authorization", "").startswith("Basic "):
            import base64

            decoded = base64.b64decode(request.headers["Authorization"][6:]).decode()
            credentials = tuple(decoded.split(":", 1))  # type: ignore[assignment]
        if form.get("grant_type") != "client_credentials" or credentials != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_hex(8)
        self.tokens[token] = time.time() + self.token_lifetime_s
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime_s})

    async def _points(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.query_string))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0) < time.time():
            return web.json_response({"error": "invalid_token"}, status=401)
        member = MEMBERS.get(request.match_info["member"])
        if member is None:
            return web.json_response({"error": "no such member"}, status=404)
        return web.json_response(member)

    async def _graphql(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, str(body.get("variables"))))
        code = (body.get("variables") or {}).get("code")
        product = PRODUCTS.get(code)
        if product is None:
            return web.json_response(
                {"data": {"product": None}, "errors": [{"message": f"Product {code} not found", "path": ["product"]}]}
            )
        return web.json_response({"data": {"product": product}})
