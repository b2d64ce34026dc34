"""Credentials never leave their origin (scheme, host, port): issue 13, item 6.

Two real servers on 127.0.0.1: the declared API (`origin`) and a listener on another port of the
same, allow-listed host (`other`). The API answers with a redirect to the listener; the listener
records whatever reaches it. A refused redirect must leave `other.requests` empty, and the control
test shows that a client without the rule does leak the key there (so an empty list means
something).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fakes.api_server import TOKEN_PATH, FakeApiServer, Reply
from helpers import FAKE_SECRETS

from retrievers.http.auth import ApiKeyAuth
from retrievers.http.cache import InMemoryResponseCache
from retrievers.http.client import ResilientHttp
from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.declared import DeclaredSource, RestSpec
from retrievers.turn.failures import FetchError

pytestmark = pytest.mark.integration

SECRET = FAKE_SECRETS["CARRIER_API_KEY"]
CALLER = SourceContext(user_id="member-1", roles=("member",), language="en")

AUTHS: dict[str, dict[str, Any]] = {
    "api_key header": {"type": "api_key", "name": "X-API-Key", "value": SECRET},
    "api_key query": {"type": "api_key", "name": "key", "location": "query", "value": SECRET},
    "bearer": {"type": "bearer", "value": SECRET},
    "oauth2": {"type": "oauth2_client_credentials", "client_id": "voicerag-client", "client_secret": SECRET},
}


@pytest.fixture
def other() -> Iterator[FakeApiServer]:
    """The listener on another port of the same host: what must never see the credentials."""
    with FakeApiServer() as server:
        server.reply("/", json={"status": "the other port's reply"})
        yield server


@pytest.fixture
async def http() -> AsyncIterator[ResilientHttp]:
    client = ResilientHttp(allowed_hosts=["127.0.0.1"], cache=InMemoryResponseCache(), max_retries=0)
    yield client
    await client.aclose()


def declared(origin: FakeApiServer, http: ResilientHttp, auth: dict[str, Any]) -> DeclaredSource:
    if auth["type"] == "oauth2_client_credentials":
        origin.client_secret = SECRET
        auth = auth | {"token_url": origin.url_for(TOKEN_PATH)}
    spec = RestSpec.model_validate(
        {
            "name": "parcel",
            "description": "Parcel status.",
            "labels": {"en": "parcel tracking", "ja": "荷物追跡"},
            "url": origin.url_for("/v1/parcels/{number}"),
            "params": {"number": {"pattern": "[0-9]+"}},
            "auth": auth,
            "ttl_s": 0,
            "timeout_s": 5,
            "keep": {"status": "status"},
            "summary": {"en": "Parcel status: {status}.", "ja": "荷物の状況: {status}"},
        }
    )
    return DeclaredSource(spec, http)


async def ask(source: DeclaredSource) -> dict[str, Any]:
    return dict(await run_source(source, source.params_model(number="42"), CALLER))


def seen_secret(server: FakeApiServer) -> bool:
    return any(SECRET in repr((r.headers, r.query, r.body)) for r in server.requests)


@pytest.mark.parametrize("auth", AUTHS.values(), ids=AUTHS.keys())
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_port_is_refused_and_nothing_reaches_it(
    api_server: FakeApiServer,
    other: FakeApiServer,
    http: ResilientHttp,
    caplog: pytest.LogCaptureFixture,
    auth: dict[str, Any],
    status: int,
) -> None:
    api_server.reply("/v1/parcels/42", Reply(status=status, redirect_to=other.url_for("/")))
    source = declared(api_server, http, auth)
    with caplog.at_level(logging.DEBUG):
        result = await ask(source)
    assert (result["status"], result["data"]) == ("error", {"error": "forbidden_host"})
    assert "other port" not in result["summary"]
    assert other.requests == []
    assert len(api_server.requests_to("/v1/parcels/42")) == 1  # the declared API was called, once
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"127.0.0.1:{other.port}" in logged  # the refusal is logged, naming where it was sent...
    assert SECRET not in logged  # ...without the key


async def test_a_token_endpoint_redirect_to_another_port_is_refused(
    api_server: FakeApiServer, other: FakeApiServer, http: ResilientHttp
) -> None:
    # A 307 re-sends the body: with client_secret_post, the client secret itself would follow.
    api_server.script(TOKEN_PATH, Reply(status=307, redirect_to=other.url_for("/token")))
    source = declared(api_server, http, AUTHS["oauth2"])
    result = await ask(source)
    assert (result["status"], result["data"]) == ("error", {"error": "forbidden_host"})
    assert other.requests == []


async def test_control_a_client_without_the_rule_sends_the_key_to_the_other_port(
    api_server: FakeApiServer, other: FakeApiServer
) -> None:
    """The setup can show a leak: plain httpx follows the redirect and keeps a custom key header
    (it strips only `Authorization` when the origin changes)."""
    api_server.reply("/v1/parcels/42", Reply(status=302, redirect_to=other.url_for("/")))
    async with httpx.AsyncClient(follow_redirects=True, timeout=5) as plain:
        response = await plain.get(api_server.url_for("/v1/parcels/42"), auth=ApiKeyAuth("X-API-Key", SECRET))
    assert response.json() == {"status": "the other port's reply"}
    assert seen_secret(other)


# What the request after a same-origin redirect carries. A key in the query string does not follow:
# httpx requests the `Location` as given (the auth flow ran once, before the redirects).
CARRIED = {
    "api_key header": ("X-API-Key", SECRET),
    "api_key query": ("X-API-Key", None),
    "bearer": ("Authorization", f"Bearer {SECRET}"),
    "oauth2": ("Authorization", "Bearer token-1"),
}


@pytest.mark.parametrize("auth_name", AUTHS)
async def test_a_redirect_within_the_origin_is_followed_with_the_credentials(
    api_server: FakeApiServer, other: FakeApiServer, http: ResilientHttp, auth_name: str
) -> None:
    api_server.reply("/v1/parcels/42", Reply(redirect_to="/v2/parcels/42"))
    api_server.reply("/v2/parcels/42", Reply(json={"status": "out for delivery"}))
    result = await ask(declared(api_server, http, AUTHS[auth_name]))
    assert (result["status"], result["summary"]) == ("ok", "Parcel status: out for delivery.")
    (moved,) = api_server.requests_to("/v2/parcels/42")
    header, value = CARRIED[auth_name]
    assert moved.headers.get(header) == value
    assert other.requests == []


async def test_a_redirect_to_another_origin_is_refused_without_credentials_too(
    api_server: FakeApiServer, other: FakeApiServer, http: ResilientHttp
) -> None:
    api_server.reply("/public", Reply(redirect_to=other.url_for("/?key=in-the-location")))
    with pytest.raises(FetchError) as caught:
        await http.request_json("GET", api_server.url_for("/public"))
    assert caught.value.kind == "forbidden_host"
    assert str(caught.value) == (
        f"refused a redirect from http://127.0.0.1:{api_server.port} to another origin, http://127.0.0.1:{other.port}"
    )  # origins only: never the path or query of either URL
    assert other.requests == []
