"""Sources declared in data/sources.yaml (REST with an API key, REST with OAuth2 per user,
GraphQL), loaded from the shipped file with the environment pointing them at local servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.company_apis import PRODUCTS, CompanyApis

from retrievers.errors import UserInputError
from retrievers.http.cache import InMemoryResponseCache
from retrievers.http.client import ResilientHttp
from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.config import build_declared_sources, load_sources_file
from retrievers.sources.registry import SourceRegistry

pytestmark = pytest.mark.integration

SOURCES_FILE = Path(__file__).resolve().parents[2] / "data" / "sources.yaml"
MEMBER = SourceContext(user_id="member-42", roles=("member",), language="en")


@pytest.fixture
def apis() -> Iterator[CompanyApis]:
    with CompanyApis() as server:
        yield server


def environment(apis: CompanyApis) -> dict[str, str]:
    return {
        "CARRIER_API_URL": apis.url,
        "CARRIER_API_KEY": apis.api_key,
        "CRM_API_URL": apis.url,
        "CRM_CLIENT_ID": apis.client_id,
        "CRM_CLIENT_SECRET": apis.client_secret,
        "CATALOG_API_URL": apis.url,
        "STATUS_WS_URL": "ws://127.0.0.1:9/unused",
    }


@pytest.fixture
async def registry(apis: CompanyApis) -> AsyncIterator[SourceRegistry]:
    loaded = load_sources_file(SOURCES_FILE, environment(apis))
    assert loaded.disabled == {}
    assert loaded.declarations.hosts() == {"127.0.0.1"}
    http = ResilientHttp(allowed_hosts=loaded.declarations.hosts(), cache=InMemoryResponseCache())
    yield SourceRegistry(build_declared_sources(loaded.declarations, http))
    await http.aclose()


async def call(registry: SourceRegistry, question: str, ctx: SourceContext = MEMBER) -> dict[str, Any]:
    chosen = registry.select(question, ctx.language, [])
    assert len(chosen) == 1, [s.name for s, _ in chosen]
    source, params = chosen[0]
    return dict(await run_source(source, params, ctx))


async def test_rest_source_with_an_api_key_answers_from_the_kept_fields(registry: SourceRegistry) -> None:
    result = await call(registry, "Where is my parcel 1234-5678-9012?")
    assert result["source"] == "parcel_tracking" and result["status"] == "ok"
    assert result["data"] == {"status": "out for delivery", "location": "Shinagawa depot", "eta": "2026-11-25"}
    assert result["summary"] == "Parcel status: out for delivery, last seen at Shinagawa depot, expected on 2026-11-25."


async def test_oauth2_source_fetches_a_token_once_and_keeps_results_per_caller(
    registry: SourceRegistry, apis: CompanyApis
) -> None:
    other = SourceContext(user_id="member-7", roles=("member",), language="en")
    turns = [(MEMBER, "1280"), (other, "35"), (MEMBER, "1280"), (other, "35")]
    results = [await call(registry, "How many points do I have?", caller) for caller, _ in turns]
    # each caller hears their own balance, never the other's, whatever the cache holds
    assert [r["summary"].split()[2] for r in results] == [points for _, points in turns]
    assert [r["cached"] for r in results] == [False, False, True, True]  # control: the cache is in use
    assert [path for path, _ in apis.requests if path.startswith("/v1/members")] == [
        "/v1/members/member-42/points",  # the caller's id, not the question's
        "/v1/members/member-7/points",
    ]
    assert apis.count("/oauth/token") == 1


async def test_member_only_source_is_skipped_for_anonymous_callers(registry: SourceRegistry, apis: CompanyApis) -> None:
    result = await call(registry, "How many points do I have?", SourceContext(language="en"))
    assert result["status"] == "skipped" and apis.count("/v1/members") == 0


async def test_graphql_source_and_its_errors(registry: SourceRegistry, apis: CompanyApis) -> None:
    ja = SourceContext(language="ja")
    good = await call(registry, "KH-300の評価は？", ja)
    assert good["status"] == "ok"
    assert good["summary"] == "Kumo Halo KH-300の評価は5点満点中4.6点（レビュー312件）です。"
    missing = await call(registry, "What rating does the KS-99 have?")
    assert missing["status"] == "error" and missing["data"] == {"error": "bad_response"}
    PRODUCTS["KS-99"] = {"name": "Kumo Pebble KS-99", "rating": 4.1, "reviewCount": 3}
    try:  # the GraphQL error was not cached: once the product exists, it is found
        found = await call(registry, "What rating does the KS-99 have?")
    finally:
        del PRODUCTS["KS-99"]
    assert found["status"] == "ok" and found["summary"].startswith("The Kumo Pebble KS-99 is rated 4.1")


async def test_parameters_cannot_leave_the_declared_path(registry: SourceRegistry, apis: CompanyApis) -> None:
    source = registry.get("parcel_tracking")
    assert source is not None
    assert source.extract("parcel ../../admin?x=1", "en", []) is None  # no valid tracking number
    with pytest.raises(ValueError):
        source.params_model.model_validate({"tracking_number": "1234/../../5678"})


def test_a_source_whose_secret_is_missing_is_disabled_not_fatal(apis: CompanyApis) -> None:
    env = environment(apis)
    del env["CARRIER_API_KEY"]
    loaded = load_sources_file(SOURCES_FILE, env)
    assert loaded.disabled == {"parcel_tracking": "CARRIER_API_KEY not set"}
    assert [s.name for s in loaded.declarations.rest] == ["loyalty_points"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("rest: [", "invalid YAML"),
        ("rest: {}", "rest: expected a list"),
        ("rest:\n  - name: x\n    description: d\n    url: ftp://h/x\n    labels: {en: a, ja: b}\n"
         "    summary: {en: a, ja: b}\n", "rest[0].url"),
        ("rest:\n  - name: x\n    description: d\n    url: https://{host}/x\n    labels: {en: a, ja: b}\n"
         "    summary: {en: a, ja: b}\n", "host cannot be a parameter"),
        ("graphql:\n  - name: x\n    description: d\n    url: https://h/g\n    labels: {en: a}\n    query: q\n"
         "    summary: {en: a, ja: b}\n", "graphql[0].labels"),
    ],
)  # fmt: skip
def test_a_bad_sources_file_names_the_file_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(content)
    with pytest.raises(UserInputError) as error:
        load_sources_file(path, {})
    assert str(error.value).startswith(str(path)) and message in str(error.value)
