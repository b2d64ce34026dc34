"""database_query with a response cache: a real SQLite file, the real in-process cache, and Redis.

Each query's `ttl_s` and `per_user` from the queries file decide what is cached, for how long and
for whom; a hit never touches the database (the file may be gone, or its rows changed).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from retrievers.http.cache import InMemoryResponseCache, RedisResponseCache
from retrievers.sources.base import CallerRequired, SourceContext, run_source
from retrievers.sources.database import DatabaseSource, params_of, sqlite_url
from voicerag.services import build_http_and_sources, close_http
from voicerag.settings import load_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "data" / "database.yaml"
SEED = REPO / "data" / "seed.sql"
EN, JA = SourceContext(language="en"), SourceContext(language="ja")
# Customers (a caller's user id is their customer id): ALICE placed KA-2026-000130 and KA-2026-000123 is
# ... not hers; BOB placed neither.
ALICE, BOB = SourceContext(user_id="C-101551"), SourceContext(user_id="C-100231")
ALICE_123 = SourceContext(user_id="C-101518")  # the customer of KA-2026-000123


def seeded(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.executescript(SEED.read_text(encoding="utf-8"))
    connection.close()
    return path


def change(path: Path, statement: str) -> None:
    """Write over an ordinary connection (the source's own is read-only)."""
    with sqlite3.connect(path) as connection:
        connection.execute(statement)
    connection.close()


def queries_with(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = yaml.safe_load(QUERIES.read_text(encoding="utf-8"))
    edit(data["queries"])
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return seeded(tmp_path / "company.sqlite")


@pytest.fixture
def cache() -> InMemoryResponseCache:
    return InMemoryResponseCache()


@pytest.fixture
async def source(database: Path, cache: InMemoryResponseCache) -> AsyncIterator[DatabaseSource]:
    source = DatabaseSource(sqlite_url(database), QUERIES, cache=cache)
    yield source
    await source.aclose()


async def test_a_repeated_question_is_answered_from_the_cache_without_the_database(
    source: DatabaseSource, database: Path
) -> None:
    params = params_of(source, query="product_stock", product_code="KH-300")
    first = await source.fetch(params, EN)
    assert not first.cached
    await asyncio.to_thread(database.rename, database.with_suffix(".gone"))  # the database is unreachable now
    again, in_japanese = await source.fetch(params, EN), await source.fetch(params, JA)
    assert again.cached and again.data == first.data and again.summary == first.summary
    # rows are cached, the sentence is said in each caller's language
    assert (
        in_japanese.cached
        and in_japanese.summary == "クモ ハロ（KH-300）の在庫は、渋谷店 4点、梅田店 3点、札幌店 在庫切れです。"
    )


async def test_a_changed_row_is_not_seen_within_the_ttl(source: DatabaseSource, database: Path) -> None:
    params = params_of(source, query="store_hours", store="umeda")
    first = await source.fetch(params, EN)
    change(database, "UPDATE store_hours SET closes = '23:00' WHERE store_code = 'umeda'")
    again = await source.fetch(params, EN)
    assert again.cached and again.summary == first.summary and "23:00" not in again.summary


async def test_run_source_reports_a_cache_hit(source: DatabaseSource) -> None:
    params = source.extract("What are the opening hours of the Sapporo store?", "en", [])
    assert params is not None
    first, second = await run_source(source, params, EN), await run_source(source, params, EN)
    assert first["status"] == second["status"] == "ok"
    assert not first["cached"] and second["cached"] and second["summary"] == first["summary"]


async def test_per_user_results_are_never_shared_between_callers(source: DatabaseSource, database: Path) -> None:
    params = params_of(source, query="order_status", order_number="KA-2026-000130")
    alice_first = await source.fetch(params, ALICE)
    assert not alice_first.cached and alice_first.data[0]["status"] == "received"
    change(database, "UPDATE orders SET status = 'preparing' WHERE order_number = 'KA-2026-000130'")
    with pytest.raises(CallerRequired):  # never alice's cached rows: bob's own (empty) result
        await source.fetch(params, BOB)
    alice_again = await source.fetch(params, ALICE)
    assert alice_again.cached and alice_again.data[0]["status"] == "received"
    # the same user id in another tenant is another caller
    other_tenant = await source.fetch(params, SourceContext(user_id=ALICE.user_id, tenant="other"))
    assert not other_tenant.cached and other_tenant.data[0]["status"] == "preparing"
    # a shared query is shared: bob gets alice's cached hours
    hours = params_of(source, query="store_hours", store="shibuya")
    await source.fetch(hours, ALICE)
    assert (await source.fetch(hours, BOB)).cached


async def test_a_query_with_ttl_0_is_never_cached(tmp_path: Path, database: Path) -> None:
    cache = InMemoryResponseCache()
    path = queries_with(tmp_path, lambda queries: queries["product_stock"].update(ttl_s=0))
    source = DatabaseSource(sqlite_url(database), path, cache=cache)
    try:
        params = params_of(source, query="product_stock", product_code="KS-80", store="shibuya")
        first = await source.fetch(params, EN)
        change(database, "UPDATE stock SET quantity = 42 WHERE product_code = 'KS-80' AND store_code = 'shibuya'")
        again = await source.fetch(params, EN)
        assert not first.cached and not again.cached and again.data[0]["quantity"] == 42
        assert len(cache) == 0
    finally:
        await source.aclose()


async def test_a_cached_result_expires_after_its_ttl(tmp_path: Path, database: Path) -> None:
    path = queries_with(tmp_path, lambda queries: queries["store_hours"].update(ttl_s=0.2))
    source = DatabaseSource(sqlite_url(database), path, cache=InMemoryResponseCache())
    try:
        params = params_of(source, query="store_hours", store="sapporo")
        await source.fetch(params, EN)
        assert (await source.fetch(params, EN)).cached
        await asyncio.sleep(0.3)
        assert not (await source.fetch(params, EN)).cached
    finally:
        await source.aclose()


async def test_clearing_the_source_namespace_drops_its_results(
    source: DatabaseSource, cache: InMemoryResponseCache
) -> None:
    params = params_of(source, query="store_hours", store="umeda")
    await source.fetch(params, EN)
    assert await cache.clear("weather") == 0  # another source's namespace
    assert (await source.fetch(params, EN)).cached
    assert await cache.clear("database_query") == 1
    assert not (await source.fetch(params, EN)).cached


async def test_without_a_cache_nothing_is_cached(database: Path) -> None:
    source = DatabaseSource(sqlite_url(database), QUERIES)
    try:
        params = params_of(source, query="store_hours", store="umeda")
        assert not (await source.fetch(params, EN)).cached
        assert not (await source.fetch(params, EN)).cached
    finally:
        await source.aclose()


async def test_the_services_give_the_source_the_http_cache_that_cache_clear_empties(tmp_path: Path) -> None:
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text("", encoding="utf-8")
    settings = load_settings(
        _env_file=None,
        voicerag_data_dir=tmp_path / "data",
        redis_url=None,
        sources_file=sources_file,
        database_queries_file=QUERIES,
        database_seed_file=SEED,
    )
    http, registry = build_http_and_sources(settings)
    try:
        source = registry.get("database_query")
        assert isinstance(source, DatabaseSource)
        params = params_of(source, query="store_hours", store="sapporo")
        assert not (await source.fetch(params, EN)).cached
        assert (await source.fetch(params, EN)).cached
        assert await http.clear_cache("database_query") == 1  # what `voicerag cache clear --source` calls
        assert not (await source.fetch(params, EN)).cached
    finally:
        await registry.aclose()
        await close_http(http)


async def test_the_redis_cache_serves_hits_keeps_callers_apart_and_clears_by_namespace(
    redis_url: str, database: Path
) -> None:
    cache = RedisResponseCache(redis_url, timeout_s=1.0)
    source = DatabaseSource(sqlite_url(database), QUERIES, cache=cache)
    source.name = f"database_test_{uuid.uuid4().hex[:8]}"  # its own namespace in a shared Redis
    try:
        hours = params_of(source, query="store_hours", store="sapporo")
        first = await source.fetch(hours, EN)
        again = await source.fetch(hours, JA)
        assert not first.cached and again.cached and again.data == first.data
        assert again.summary.startswith("札幌店の営業時間は、")

        order = params_of(source, query="order_status", order_number="KA-2026-000123")
        await source.fetch(order, ALICE_123)
        assert (await run_source(source, order, BOB))["data"]["error"] == "needs_verified_caller"  # not hers
        assert (await source.fetch(order, ALICE_123)).cached

        assert await cache.clear(source.name) == 3  # hours, her order, bob's (empty) look-up
        assert not (await source.fetch(hours, EN)).cached
    finally:
        await cache.clear(source.name)
        await source.aclose()
        await cache.aclose()
