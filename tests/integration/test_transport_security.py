"""https only, certificates always verified, and the DNS rebinding guard, against real servers on
127.0.0.1 (issue 9, item 7).

Names other than localhost are mapped to 127.0.0.1 by a resolver the test injects (`Resolver`): the
hermetic guard refuses real lookups of them, so a request that succeeds under such a name also
proves the client connected to the address the guard checked and never looked the name up again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
from fakes.api_server import FakeApiServer
from fakes.tls_server import TLS_NAME, TlsApiServer
from fakes.ws_server import FakeWebSocketServer

from retrievers.http.address_guard import NetworkPolicy
from retrievers.http.client import ResilientHttp
from retrievers.sources.realtime import RealtimeSource
from retrievers.turn.deadline import turn_deadline
from retrievers.turn.failures import FetchError

pytestmark = pytest.mark.integration


class MappedResolver:
    """Answers from a fixed table and counts the lookups; unknown names fail like DNS would."""

    def __init__(self, table: dict[str, Sequence[str]], delay_s: float = 0.0) -> None:
        self.table = table
        self.delay_s = delay_s
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if host not in self.table:
            raise OSError(f"{host}: name not known")
        return self.table[host]


@pytest.fixture
def tls_server() -> Iterator[TlsApiServer]:
    with TlsApiServer() as server:
        yield server


@pytest.fixture
async def clients() -> AsyncIterator[list[ResilientHttp]]:
    made: list[ResilientHttp] = []
    yield made
    for client in made:
        await client.aclose()


def client(made: list[ResilientHttp], *allowed: str, **options: Any) -> ResilientHttp:
    http = ResilientHttp(allowed_hosts=allowed, max_retries=0, **options)
    made.append(http)
    return http


async def failure(http: ResilientHttp, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await http.request_json("GET", url)
    return caught.value


# ------------------------------------------------------------------------------ https only


async def test_plain_http_to_a_host_that_is_not_a_development_host_is_refused_before_sending(
    clients: list[ResilientHttp], api_server: FakeApiServer
) -> None:
    resolver = MappedResolver({TLS_NAME: ["127.0.0.1"]})
    http = client(clients, TLS_NAME, resolver=resolver)
    error = await failure(http, api_server.url_for("/items", host=TLS_NAME))
    assert error.kind == "forbidden_host"
    assert str(error) == (
        f"plain http:// to {TLS_NAME} is refused: use https://, or list the host in HTTP_INSECURE_HOSTS"
    )
    assert api_server.requests == [] and resolver.lookups == []  # refused before any lookup
    # Control: the same request, the host listed as a development host, goes through.
    listed = client(clients, TLS_NAME, resolver=resolver, insecure_hosts=f"localhost,{TLS_NAME}")
    assert (await listed.request_json("GET", api_server.url_for("/items", host=TLS_NAME))).status == 200
    assert [r.path for r in api_server.requests] == ["/items"]


async def test_development_hosts_default_to_loopback_and_a_plain_redirect_away_from_https_is_refused(
    clients: list[ResilientHttp], api_server: FakeApiServer, tls_server: TlsApiServer
) -> None:
    http = client(clients, "127.0.0.1", "localhost", ssl_context=tls_server.client_context())
    assert (await http.request_json("GET", api_server.url_for("/a"))).status == 200  # 127.0.0.1 is listed
    assert (await http.request_json("GET", api_server.url_for("/b", host="localhost"))).status == 200
    # A server answering https with a redirect to plain http on the same host: another origin.
    tls_server.reply("/old", redirect_to=api_server.url_for("/new"))
    error = await failure(http, tls_server.url_for("/old"))
    assert error.kind == "forbidden_host" and "refused a redirect" in str(error)
    assert api_server.requests_to("/new") == []


# ------------------------------------------------------------------------------ certificates


async def test_a_self_signed_certificate_is_refused_and_trusted_only_through_a_given_context(
    clients: list[ResilientHttp], tls_server: TlsApiServer
) -> None:
    default = client(clients, "127.0.0.1")
    error = await failure(default, tls_server.url_for("/items"))
    assert error.kind == "unreachable" and "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert tls_server.requests == []
    # Control: the same server, its CA trusted by the test's context, answers.
    trusting = client(clients, "127.0.0.1", ssl_context=tls_server.client_context())
    assert (await trusting.request_json("GET", tls_server.url_for("/items"))).status == 200
    assert [r.path for r in tls_server.requests] == ["/items"]


async def test_the_certificate_is_checked_against_the_name_not_the_address(
    clients: list[ResilientHttp], tls_server: TlsApiServer
) -> None:
    wrong = "other.voicerag-test.example"  # not in the certificate
    resolver = MappedResolver({TLS_NAME: ["127.0.0.1"], wrong: ["127.0.0.1"]})
    options: dict[str, Any] = {"resolver": resolver, "ssl_context": tls_server.client_context()}
    http = client(clients, TLS_NAME, wrong, insecure_hosts="127.0.0.1", **options)
    error = await failure(http, tls_server.url_for("/items", host=wrong))
    assert error.kind == "unreachable" and "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert (await http.request_json("GET", tls_server.url_for("/items", host=TLS_NAME))).status == 200


def test_a_context_that_does_not_verify_is_refused() -> None:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="must verify certificates and host names"):
        ResilientHttp(allowed_hosts=["127.0.0.1"], ssl_context=context)


# ------------------------------------------------------------------------------ DNS rebinding


async def test_an_allowed_name_resolving_to_loopback_is_refused_unless_the_name_or_address_is_listed(
    clients: list[ResilientHttp], tls_server: TlsApiServer
) -> None:
    resolver = MappedResolver({TLS_NAME: ["127.0.0.1"]})
    context = tls_server.client_context()
    url = tls_server.url_for("/items", host=TLS_NAME)
    # 127.0.0.1 is a development host by default, so for any name resolving to it; here only localhost is.
    guarded = client(clients, TLS_NAME, resolver=resolver, ssl_context=context, insecure_hosts="localhost")
    error = await failure(guarded, url)
    assert error.kind == "forbidden_host"
    assert str(error) == (
        f"{TLS_NAME} resolved to 127.0.0.1, a non-public address: refused (DNS rebinding guard; "
        "list the host or the address in HTTP_INSECURE_HOSTS to allow it)"
    )
    assert tls_server.requests == [] and resolver.lookups == [TLS_NAME]
    # Controls: the name listed, or its address (also as a network), or the default list, let it through.
    for insecure in (TLS_NAME, "10.0.0.0/8, 127.0.0.0/8", "localhost,127.0.0.1,::1"):
        listed = client(clients, TLS_NAME, resolver=resolver, ssl_context=context, insecure_hosts=insecure)
        assert (await listed.request_json("GET", url)).status == 200
    assert len(tls_server.requests) == 3
    assert resolver.lookups == [TLS_NAME] * 4  # once per connection: nobody looked the name up again


@pytest.mark.parametrize(
    "answer",
    [
        ["93.184.215.14", "127.0.0.1"],  # one loopback address among public ones is enough
        ["10.1.2.3"],
        ["169.254.169.254"],  # the cloud metadata service
        ["100.64.0.1"],  # shared address space (carrier-grade NAT)
        ["::ffff:127.0.0.1"],  # loopback dressed as IPv6
        ["fd00::1"],
        ["0.0.0.0"],
    ],
)
async def test_every_address_a_name_resolves_to_is_checked(
    clients: list[ResilientHttp], tls_server: TlsApiServer, answer: list[str]
) -> None:
    resolver = MappedResolver({TLS_NAME: answer})
    options: dict[str, Any] = {"resolver": resolver, "ssl_context": tls_server.client_context()}
    http = client(clients, TLS_NAME, insecure_hosts="localhost", **options)
    error = await failure(http, tls_server.url_for("/items", host=TLS_NAME))
    assert error.kind == "forbidden_host" and "non-public address" in str(error)
    assert tls_server.requests == []


async def test_resolution_is_bounded_by_the_turns_deadline(clients: list[ResilientHttp]) -> None:
    resolver = MappedResolver({TLS_NAME: ["127.0.0.1"]}, delay_s=30.0)
    http = client(clients, TLS_NAME, resolver=resolver)
    started = time.monotonic()
    with turn_deadline(0.3):
        error = await failure(http, f"https://{TLS_NAME}/items")
    assert error.kind == "timeout"
    assert time.monotonic() - started < 5.0  # a bound, not a speed: the lookup would take 30 s


async def test_a_name_that_does_not_resolve_is_unreachable(clients: list[ResilientHttp]) -> None:
    http = client(clients, TLS_NAME, resolver=MappedResolver({}))
    error = await failure(http, f"https://{TLS_NAME}/items")
    assert error.kind == "unreachable" and f"could not resolve {TLS_NAME}" in str(error)


# ------------------------------------------------------------------------------ real-time feeds


def status_feed(url: str) -> dict[str, Any]:
    return {
        "name": "service_status",
        "url": url,
        "description": "Live service status.",
        "labels": {"en": "the live service status", "ja": "サービスの稼働状況"},
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.1,
        "open_timeout_s": 2.0,
    }


async def until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_feed_over_plain_ws_to_another_host_never_connects(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeWebSocketServer() as server:
        url = server.url.replace("127.0.0.1", TLS_NAME)
        resolver = MappedResolver({TLS_NAME: ["127.0.0.1"]})
        source = RealtimeSource(status_feed(url), NetworkPolicy("localhost,127.0.0.1", resolver))
        with caplog.at_level(logging.INFO, logger="retrievers.sources.realtime"):
            await source.start()
            await until(lambda: not source.running, "the feed to give up")
        assert server.connects == 0 and resolver.lookups == []
        assert f"plain ws:// to {TLS_NAME} is refused" in caplog.text
        # Control: the name listed as a development host, the same feed connects (to the mapped address).
        listed = RealtimeSource(status_feed(url), NetworkPolicy(f"localhost,{TLS_NAME}", resolver))
        async with listed:
            await until(lambda: server.clients == 1, "the listed feed to connect")
        assert resolver.lookups == [TLS_NAME]


async def test_a_feed_whose_name_resolves_to_loopback_is_refused_and_retried_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resolver = MappedResolver({TLS_NAME: ["127.0.0.1"]})
    source = RealtimeSource(status_feed(f"wss://{TLS_NAME}/v1/stream"), NetworkPolicy("localhost", resolver))
    with caplog.at_level(logging.INFO, logger="retrievers.sources.realtime"):
        async with source:
            await until(lambda: len(resolver.lookups) >= 2, "a second attempt, resolved again")
    assert source.connections == 0
    assert f"refused ({TLS_NAME} resolved to 127.0.0.1, a non-public address" in caplog.text
