"""database_query against real databases: SQLite and PostgreSQL (the machine's, or one started for
the session: `postgresql_url` in conftest.py), both seeded from data/seed.sql. Answers, injection
payloads, the read-only path and the statement timeout are checked on each."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from retrievers.language import Language
from retrievers.sources.base import CallerRequired, SourceContext, run_source
from retrievers.sources.database import DatabaseSource, params_of, sqlite_url
from retrievers.sources.database.runner import Row
from retrievers.turn.deadline import turn_deadline
from retrievers.turn.failures import FetchError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "data" / "database.yaml"
SEED = REPO / "data" / "seed.sql"
EXPECTED_COUNTS = {"products": 7, "stores": 3, "store_hours": 24, "stock": 21, "orders": 20, "order_items": 21}
EN, JA = SourceContext(language="en"), SourceContext(language="ja")
OWNER_123 = SourceContext(user_id="C-101518", language="en")  # order_status answers only the caller's own orders
SLOW_SQL = (  # about a billion rows: far longer than any timeout below, on both databases
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT count(*) AS n FROM c"
)


# ---- databases -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_url_seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "company.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript(SEED.read_text(encoding="utf-8"))
    connection.close()
    return sqlite_url(path)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url_seeded" if request.param == "sqlite" else "postgresql_url"))


@pytest.fixture
async def source(database_url: str) -> AsyncIterator[DatabaseSource]:
    source = DatabaseSource(database_url, QUERIES, seed_file=SEED, statement_timeout_ms=1000, timeout_s=5.0)
    yield source
    await source.aclose()


async def table_counts(database_url: str) -> dict[str, int]:
    """Row counts read over a separate, ordinary connection (not the source's read-only path)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as connection:
            counts = {
                table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in EXPECTED_COUNTS
            }
        connection.close()
        return counts
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database, timeout=2
    )
    try:
        return {table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in EXPECTED_COUNTS}
    finally:
        await connection.close()


async def execute(source: DatabaseSource, sql: str, arguments: dict[str, object]) -> list[Row]:
    """Straight through the source's runner: no validation, no cache."""
    return (await source.runner.run(sql, arguments)).rows


async def order_123_status(source: DatabaseSource) -> str:
    arguments = {"order_number": "KA-2026-000123", "caller_id": OWNER_123.user_id}
    rows = await execute(source, source.queries["order_status"].sql, arguments)
    return str(rows[0]["status"])


async def owners(source: DatabaseSource) -> dict[str, str]:
    """Order number -> the customer it belongs to (that customer's user id)."""
    rows = await execute(source, "SELECT order_number, customer_id FROM orders", {})
    return {str(row["order_number"]): str(row["customer_id"]) for row in rows}


# ---- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_number", "language", "summary"),
    [
        ("KA-2026-000123", "en", "Order KA-2026-000123 was shipped on 2026-04-02."),
        ("KA-2026-000123", "ja", "ご注文 KA-2026-000123 は 2026年4月2日に発送済みです。"),
        ("KA-2026-000112", "en", "Order KA-2026-000112 was delivered on 2026-03-30."),
        ("KA-2026-000127", "ja", "ご注文 KA-2026-000127（2026年4月2日ご注文）は出荷準備中です。"),
        (
            "KA-2026-000130",
            "en",
            "Order KA-2026-000130 was received on 2026-04-03; it is not yet being prepared for shipment.",
        ),
    ],
)
async def test_order_status_is_said_with_the_stored_dates(
    source: DatabaseSource, order_number: str, language: Language, summary: str
) -> None:
    params = params_of(source, query="order_status", order_number=order_number)
    owner = (await owners(source))[order_number]
    fetched = await source.fetch(params, SourceContext(user_id=owner, language=language))
    assert fetched.summary == summary
    assert len(fetched.data) == 1 and fetched.data[0]["order_number"] == order_number


async def test_an_unknown_order_number_is_withheld_like_another_customers_order(source: DatabaseSource) -> None:
    # No row for this caller: not theirs, or no such order — one answer for both (test_database_caller.py).
    params = params_of(source, query="order_status", order_number="KA-2026-999999")
    for language, what in (("en", "order details"), ("ja", "ご注文の詳細")):
        with pytest.raises(CallerRequired) as caught:
            await source.fetch(params, SourceContext(user_id=OWNER_123.user_id, language=language))  # type: ignore[arg-type]
        assert caught.value.what == what


async def test_every_seeded_order_has_an_answer_in_both_languages(source: DatabaseSource) -> None:
    by_owner = await owners(source)
    assert len(by_owner) == 20
    for number, owner in by_owner.items():
        params = params_of(source, query="order_status", order_number=number)
        en_ctx, ja_ctx = SourceContext(user_id=owner, language="en"), SourceContext(user_id=owner, language="ja")
        en, ja = (await source.fetch(params, en_ctx)).summary, (await source.fetch(params, ja_ctx)).summary
        for summary in (en, ja):
            assert number in summary and "{" not in summary and "None" not in summary
        assert re.search(r"\d{4}-\d{2}-\d{2}", en) and re.search(r"\d{4}年\d{1,2}月\d{1,2}日", ja)


async def test_stock_lists_every_store_in_order_and_says_out_of_stock(source: DatabaseSource) -> None:
    params = params_of(source, query="product_stock", product_code="KH-300")
    en, ja = await source.fetch(params, EN), await source.fetch(params, JA)
    assert (
        en.summary
        == "Stock of the Kumo Halo (KH-300): Shibuya store 4, Osaka Umeda store 3, Sapporo store out of stock."
    )
    assert ja.summary == "クモ ハロ（KH-300）の在庫は、渋谷店 4点、梅田店 3点、札幌店 在庫切れです。"
    assert [(row["store"], row["quantity"]) for row in en.data] == [("shibuya", 4), ("umeda", 3), ("sapporo", 0)]


async def test_stock_at_a_named_store_returns_only_that_store(source: DatabaseSource) -> None:
    params = params_of(source, query="product_stock", product_code="Kumo Air", store="Osaka")
    fetched = await source.fetch(params, EN)
    assert [(row["product_code"], row["store"], row["quantity"]) for row in fetched.data] == [("KA-100", "umeda", 18)]
    assert fetched.summary == "Stock of the Kumo Air (KA-100): Osaka Umeda store 18."


@pytest.mark.parametrize(
    ("store", "language", "summary"),
    [
        (
            "sapporo",
            "en",
            "The Sapporo store is open Monday 11:00–19:00, Tuesday closed, Wednesday to Sunday 11:00–19:00, "
            "public holidays 11:00–19:00. Closed every Tuesday (if a Tuesday is a public holiday, open that day "
            "and closed the next Wednesday).",
        ),
        (
            "shibuya",
            "ja",
            "渋谷店の営業時間は、月曜〜金曜 11:00〜21:00、土曜・日曜 10:00〜21:00、祝日 10:00〜21:00です。"
            "定休日はありません（12月31日と1月1日は休業）。",
        ),
        (
            "umeda",
            "ja",
            "梅田店の営業時間は、月曜〜土曜 10:00〜20:00、日曜 10:00〜19:00、祝日 10:00〜19:00です。"
            "定休日は毎月第3水曜日です（祝日の場合は営業）。",
        ),
    ],
)
async def test_store_hours_group_equal_days_and_name_the_closing_day(
    source: DatabaseSource, store: str, language: Language, summary: str
) -> None:
    params = params_of(source, query="store_hours", store=store)
    fetched = await source.fetch(params, SourceContext(language=language))
    assert fetched.summary == summary
    assert len(fetched.data) == 8


async def test_rows_are_json_friendly_with_iso_dates(source: DatabaseSource) -> None:
    owner = SourceContext(user_id="C-101490")
    fetched = await source.fetch(params_of(source, query="order_status", order_number="KA-2026-000115"), owner)
    assert json.loads(json.dumps(fetched.data)) == [
        {
            "order_number": "KA-2026-000115",
            "status": "delivered",
            "ordered_on": "2026-03-30",
            "shipped_on": "2026-03-31",
            "delivered_on": "2026-04-02",
        }
    ]


@pytest.mark.parametrize(
    ("earlier", "question", "language", "summary"),
    [
        (
            [],
            "KA－２０２６－０００１２４ はいつ届きますか？",
            "ja",
            "ご注文 KA-2026-000124 は 2026年4月2日に発送済みです。",
        ),
        (
            ["Is the KS-80 in stock in Shibuya?"],
            "and in Umeda?",
            "en",
            "Stock of the Kumo Boulder (KS-80): Osaka Umeda store out of stock.",
        ),
        (["渋谷店の営業時間は？"], "札幌店は？", "ja", "札幌店の営業時間は、月曜 11:00〜19:00、火曜 定休、"),
    ],
)
async def test_a_question_is_answered_end_to_end_through_run_source(
    source: DatabaseSource, earlier: list[str], question: str, language: Language, summary: str
) -> None:
    params = source.extract(question, language, earlier)
    assert params is not None
    ctx = SourceContext(user_id="C-101520", language=language)  # the owner of KA-2026-000124
    result = await run_source(source, params, ctx)
    assert result["status"] == "ok" and result["source"] == "database_query" and not result["cached"]
    assert result["summary"].startswith(summary)


# ---- injection, read-only, timeout ---------------------------------------------------------

PAYLOADS = [
    "KA-2026-000123'; DROP TABLE orders;--",
    "' OR '1'='1",
    "KA-2026-000123' OR '1'='1",
    'KA-2026-000123" OR ""="',
    "KA-2026-000123'); DELETE FROM stock; --",
    "ＫＡ-2026-000123＇ OR ＇1＇=＇1",  # full-width quotes
    "КА-2026-000123",  # Cyrillic
    "KA-2026-000123\u200b",
    "' UNION SELECT order_number, status, ordered_on, shipped_on, delivered_on FROM orders --",
    "x" * 10_000,
]


async def test_injection_payloads_bound_as_parameters_match_nothing_and_change_nothing(
    source: DatabaseSource, database_url: str
) -> None:
    # Straight into the executor, skipping validation: binding alone must make them inert.
    order_sql, stock_sql = source.queries["order_status"].sql, source.queries["product_stock"].sql
    for payload in PAYLOADS:
        assert await execute(source, order_sql, {"order_number": payload, "caller_id": OWNER_123.user_id}) == []
        # A caller's id (a participant attribute) is bound the same way: inert too.
        assert await execute(source, order_sql, {"order_number": "KA-2026-000123", "caller_id": payload}) == []
        assert await execute(source, stock_sql, {"product_code": payload, "store": None}) == []
        assert await execute(source, stock_sql, {"product_code": "KH-300", "store": payload}) == []
    assert await table_counts(database_url) == EXPECTED_COUNTS


async def test_injection_payloads_are_refused_before_sql_and_reported_as_errors(
    source: DatabaseSource, database_url: str
) -> None:
    for payload in PAYLOADS:
        forged = source.params_model.model_construct(query="order_status", order_number=payload)
        with pytest.raises(FetchError) as caught:
            await source.fetch(forged, EN)  # type: ignore[arg-type]
        assert caught.value.kind == "bad_response"
        result = await run_source(source, forged, EN)
        assert result["status"] == "error" and result["data"] == {"error": "bad_response"}
    assert await table_counts(database_url) == EXPECTED_COUNTS


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE orders SET status = 'delivered' WHERE order_number = 'KA-2026-000123'",
        "DELETE FROM stock",
        "DROP TABLE orders",
        "INSERT INTO stores (code, sort_order, name_en, name_ja, phone, opened_year, closing_note_en, closing_note_ja) "
        "VALUES ('x', 9, 'x', 'x', 'x', 2026, 'x', 'x')",
        "CREATE TABLE stolen (id INTEGER)",
        "WITH d AS (DELETE FROM orders RETURNING order_number) SELECT count(*) FROM d",
    ],
)
async def test_writes_through_the_read_only_path_fail_and_leave_the_tables_intact(
    source: DatabaseSource, database_url: str, statement: str
) -> None:
    with pytest.raises(FetchError) as caught:
        await execute(source, statement, {})
    assert caught.value.kind == "server_error"
    assert await table_counts(database_url) == EXPECTED_COUNTS
    assert await order_123_status(source) == "shipped"


async def test_a_write_smuggled_into_a_named_query_is_refused_by_the_database(
    source: DatabaseSource, database_url: str
) -> None:
    # As if the file check had been bypassed: the read-only transaction still stops it.
    query = source.queries["order_status"]
    source.queries["order_status"] = query.model_copy(
        update={"sql": "UPDATE orders SET status = 'received' WHERE order_number = :order_number"}
    )
    params = params_of(source, query="order_status", order_number="KA-2026-000123")
    result = await run_source(source, params, OWNER_123)
    source.queries["order_status"] = query
    assert result["status"] == "error" and result["data"] == {"error": "server_error"}
    assert await order_123_status(source) == "shipped"


@pytest.mark.parametrize("slow_sql", [SLOW_SQL, "SELECT pg_sleep(10) AS slept"])
async def test_a_slow_statement_is_cancelled_at_the_statement_timeout(database_url: str, slow_sql: str) -> None:
    if "pg_sleep" in slow_sql and database_url.startswith("sqlite"):
        pytest.skip("pg_sleep is PostgreSQL only; SQLite is covered by the recursive query")
    source = DatabaseSource(database_url, QUERIES, statement_timeout_ms=300, timeout_s=30.0)
    try:
        started = time.perf_counter()
        with pytest.raises(FetchError) as caught:
            await execute(source, slow_sql, {})
        elapsed = time.perf_counter() - started
        assert caught.value.kind == "timeout"
        assert 0.25 < elapsed < 0.3 + 0.7, elapsed
        # the connection went back to the pool in a usable state
        assert await order_123_status(source) == "shipped"
    finally:
        await source.aclose()


async def test_the_turn_deadline_cuts_the_statement_timeout_shorter(database_url: str) -> None:
    source = DatabaseSource(database_url, QUERIES, statement_timeout_ms=10_000, timeout_s=30.0)
    try:
        started = time.perf_counter()
        with turn_deadline(0.3), pytest.raises(FetchError) as caught:
            await execute(source, SLOW_SQL, {})
        assert caught.value.kind == "timeout"
        assert time.perf_counter() - started < 1.0
    finally:
        await source.aclose()


# ---- SQLite specifics ------------------------------------------------------------------------


async def test_sqlite_file_is_seeded_on_first_use_then_opened_read_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "company.sqlite"
    source = DatabaseSource(sqlite_url(path), QUERIES, seed_file=SEED)
    assert not path.exists()  # nothing happens before the first query
    fetched = await source.fetch(params_of(source, query="store_hours", store="sapporo"), EN)
    assert path.exists() and len(fetched.data) == 8
    assert await table_counts(sqlite_url(path)) == EXPECTED_COUNTS
    with pytest.raises(FetchError, match="readonly"):
        await execute(source, "UPDATE stock SET quantity = 0", {})
    await source.aclose()

    # An existing file is used as it is, never re-seeded.
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE stock SET quantity = 99 WHERE product_code = 'KH-300' AND store_code = 'sapporo'")
    connection.close()
    again = DatabaseSource(sqlite_url(path), QUERIES, seed_file=SEED)
    fetched = await again.fetch(params_of(again, query="product_stock", product_code="KH-300", store="sapporo"), EN)
    assert fetched.data[0]["quantity"] == 99
    await again.aclose()


async def test_missing_sqlite_file_without_seed_is_reported_unreachable(tmp_path: Path) -> None:
    source = DatabaseSource(sqlite_url(tmp_path / "absent.sqlite"), QUERIES)
    result = await run_source(source, params_of(source, query="store_hours", store="umeda"), EN)
    assert result["status"] == "error" and result["data"] == {"error": "unreachable"}
    assert result["summary"] == "I couldn't get our order and stock system just now."
    assert not (tmp_path / "absent.sqlite").exists()  # read-only: not even created
    await source.aclose()


# ---- PostgreSQL specifics ------------------------------------------------------------------


async def test_unreachable_postgres_is_reported_quickly() -> None:
    source = DatabaseSource("postgresql://postgres@127.0.0.1:1/test", QUERIES, timeout_s=1.0)
    started = time.perf_counter()
    result = await run_source(source, params_of(source, query="store_hours", store="umeda"), EN)
    assert result["status"] == "error" and result["data"] == {"error": "unreachable"}
    assert time.perf_counter() - started < 1.5
    await source.aclose()


async def test_aclose_releases_every_postgres_connection(postgresql_url: str) -> None:
    url = make_url(postgresql_url)

    async def open_connections() -> int:
        connection = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database="test", timeout=2)
        try:
            return int(
                await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
                    url.database,
                    "voicerag-database-query",
                )
            )
        finally:
            await connection.close()

    source = DatabaseSource(postgresql_url, QUERIES)
    await asyncio.gather(*(source.fetch(params_of(source, query="store_hours", store="umeda"), EN) for _ in range(3)))
    assert await open_connections() >= 1
    await source.aclose()
    for _ in range(20):
        if await open_connections() == 0:
            break
        await asyncio.sleep(0.05)
    assert await open_connections() == 0
