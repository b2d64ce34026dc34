"""REST and GraphQL sources bound to the caller: a parameter or a header declared `from:
caller.user_id` / `caller.tenant` carries the caller's identity, never a value from the question or
a model; a caller without that identity is refused before anything is sent. A local server records
what arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.api_server import FakeApiServer, Reply

from retrievers.errors import UserInputError
from retrievers.http.cache import InMemoryResponseCache
from retrievers.http.client import ResilientHttp
from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.config import build_declared_sources, load_sources_file
from retrievers.sources.declared import DeclaredSource
from retrievers.sources.registry import SourceRegistry

pytestmark = pytest.mark.integration

ALICE = SourceContext(user_id="alice", tenant="acme", language="en")
BOB = SourceContext(user_id="bob", tenant="acme", language="en")
NO_TENANT = SourceContext(user_id="alice", language="en")
ANONYMOUS = SourceContext(language="en")


def declarations(url: str) -> dict[str, Any]:
    return {
        "rest": [
            {
                "name": "account_balance",
                "description": "The caller's own account balance.",
                "labels": {"en": "the account service", "ja": "口座サービス"},
                "withheld": {"en": "your account balance", "ja": "口座残高"},
                "keywords": {"en": ["balance"]},
                "url": f"{url}/v1/accounts/{{account}}/balance",
                "params": {
                    "account": {"from": "caller.user_id"},
                    "currency": {"pattern": "JPY|USD", "find": "(JPY|USD)", "default": "JPY"},
                },
                "headers": {"X-Tenant": {"from": "caller.tenant"}, "X-Client": {"value": "voicerag"}},
                "ttl_s": 60,
                "keep": {"path": "path", "currency": "query.currency", "tenant": "headers.X-Tenant"},
                "summary": {"en": "Balance from {path} in {currency} for {tenant}.", "ja": "{path}"},
            }
        ],
        "graphql": [
            {
                "name": "my_tickets",
                "description": "The caller's open support tickets.",
                "labels": {"en": "the ticket service", "ja": "チケットサービス"},
                "keywords": {"en": ["ticket"]},
                "url": f"{url}/graphql",
                "query": "query Tickets($customer: String!) { tickets(customer: $customer) { id } }",
                "params": {"customer": {"from": "caller.user_id"}},
                "ttl_s": 0,
                "data_path": "",
                "keep": {"path": "path"},
                "summary": {"en": "Tickets: {path}.", "ja": "{path}"},
            }
        ],
    }


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as running:
        yield running


@pytest.fixture
async def registry(server: FakeApiServer, tmp_path: Path) -> AsyncIterator[SourceRegistry]:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(declarations(server.url_for("").rstrip("/"))), encoding="utf-8")
    loaded = load_sources_file(path, {})
    http = ResilientHttp(allowed_hosts=loaded.declarations.hosts(), cache=InMemoryResponseCache())
    yield SourceRegistry(build_declared_sources(loaded.declarations, http))
    await http.aclose()


def source(registry: SourceRegistry, name: str) -> DeclaredSource:
    found = registry.get(name)
    assert isinstance(found, DeclaredSource)
    return found


async def ask(registry: SourceRegistry, question: str, ctx: SourceContext) -> dict[str, Any]:
    ((chosen, params),) = registry.select(question, ctx.language, [])
    return dict(await run_source(chosen, params, ctx))


async def test_the_callers_id_and_tenant_go_into_the_path_and_a_header(
    registry: SourceRegistry, server: FakeApiServer
) -> None:
    result = await ask(registry, "What is my balance in USD?", ALICE)
    assert result["status"] == "ok"
    assert result["summary"] == "Balance from /v1/accounts/alice/balance in USD for acme."
    (request,) = server.requests
    assert request.headers["X-Tenant"] == "acme" and request.headers["X-Client"] == "voicerag"


async def test_a_caller_without_the_bound_identity_is_refused_and_nothing_is_sent(
    registry: SourceRegistry, server: FakeApiServer
) -> None:
    for ctx in (ANONYMOUS, NO_TENANT):
        result = await ask(registry, "What is my balance?", ctx)
        assert result["status"] == "skipped"
        assert result["data"] == {"error": "needs_verified_caller", "what": "your account balance"}
    tickets = await ask(registry, "Any open ticket?", ANONYMOUS)
    assert tickets["data"] == {"error": "needs_verified_caller", "what": "the ticket service"}  # default: label
    assert server.requests == []
    assert (await ask(registry, "Any open ticket?", BOB))["status"] == "ok"  # control: an identified caller
    assert len(server.requests) == 1


async def test_graphql_variables_take_the_callers_id(registry: SourceRegistry, server: FakeApiServer) -> None:
    server.reply("/graphql", Reply(json={"path": "/graphql"}))
    assert (await ask(registry, "Any open ticket?", BOB))["status"] == "ok"
    (request,) = server.requests
    assert b'"variables": {"customer": "bob"}' in request.body or b'"customer":"bob"' in request.body


async def test_the_bound_value_is_no_argument_of_the_question_or_the_router(
    registry: SourceRegistry, server: FakeApiServer
) -> None:
    balance = source(registry, "account_balance")
    assert set(balance.params_model.model_fields) == {"currency"}
    assert set(balance.tool_schema()["function"]["parameters"]["properties"]) == {"currency"}
    # A forged argument of the bound name is overwritten by the caller's own id.
    forged = balance.params_model.model_construct(currency="JPY", account="bob")
    result = await run_source(balance, forged, ALICE)
    assert result["data"]["path"] == "/v1/accounts/alice/balance"
    assert balance.offered_to(ANONYMOUS) is None and balance.offered_to(NO_TENANT) is None
    assert balance.offered_to(ALICE) is balance.params_model


async def test_results_bound_by_a_header_are_cached_per_caller(registry: SourceRegistry, server: FakeApiServer) -> None:
    other_tenant = SourceContext(user_id="alice", tenant="globex")
    first = await ask(registry, "What is my balance?", ALICE)
    again = await ask(registry, "What is my balance?", ALICE)
    elsewhere = await ask(registry, "What is my balance?", other_tenant)
    assert not first["cached"] and again["cached"] and not elsewhere["cached"]
    assert elsewhere["data"]["tenant"] == "globex"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["rest"][0]["params"]["account"].update({"from": "caller.phone"}), "params.account.from"),
        (lambda s: s["rest"][0]["headers"].update({"Bad Header": {"value": "x"}}), "not a header name"),
        (lambda s: s["rest"][0]["headers"].update({"X-Both": {"value": "x", "from": "caller.tenant"}}), "either"),
        (lambda s: s["rest"][0].update(withheld={"en": "x"}), "withheld"),
    ],
)
def test_a_bad_binding_is_refused_naming_the_file_and_the_field(tmp_path: Path, change: Any, message: str) -> None:
    content = declarations("https://api.example.com")
    change(content)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    with pytest.raises(UserInputError) as caught:
        load_sources_file(path, {})
    assert str(path) in str(caught.value) and message in str(caught.value)
