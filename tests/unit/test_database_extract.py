"""database_query without a database: rules that pick a named query, the generated parameter model
(validation that stops injection payloads before SQL), and the checks on the queries file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hermetic import GUARD
from pydantic import ValidationError

from retrievers.errors import UserInputError
from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.database import DatabaseSource, params_of, sqlite_url
from retrievers.sources.database.answers import render_answer
from retrievers.sources.database.spec import AnswerSpec
from retrievers.sources.database.sql_checks import sql_problem
from retrievers.turn.failures import FetchError

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "data" / "database.yaml"
SEED = REPO / "data" / "seed.sql"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> DatabaseSource:
    # Nothing here connects: the engine opens connections, and the file is seeded, on the first query.
    return DatabaseSource(sqlite_url(tmp_path_factory.mktemp("db") / "company.sqlite"), QUERIES, seed_file=SEED)


def args(params: Any) -> dict[str, Any]:
    return params.model_dump(exclude_none=True)


ORDER_123 = {"query": "order_status", "order_number": "KA-2026-000123"}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Where is my order KA-2026-000123?", ORDER_123),
        ("ご注文番号ＫＡ－２０２６－０００１２３の状況は？", ORDER_123),  # full-width
        ("status of order ka 2026 000123 please", ORDER_123),  # lower case, spaces
        ("KA－2026ー000123 はいつ届きますか", ORDER_123),  # full-width hyphen, long vowel mark
        ("Has KA-2025-005026 arrived?", {"query": "order_status", "order_number": "KA-2025-005026"}),
        ("Is the Kumo Halo in stock?", {"query": "product_stock", "product_code": "KH-300"}),
        (
            "Is the Kumo Halo in stock in Shibuya?",
            {"query": "product_stock", "product_code": "KH-300", "store": "shibuya"},
        ),
        (
            "Is the KS-50 available at the Osaka store?",
            {"query": "product_stock", "product_code": "KS-50", "store": "umeda"},
        ),
        ("kumo air pro stock sapporo", {"query": "product_stock", "product_code": "KA-200", "store": "sapporo"}),
        ("ks200 in stock?", {"query": "product_stock", "product_code": "KS-200"}),
        (
            "渋谷店にクモ ハロの在庫はありますか？",
            {"query": "product_stock", "product_code": "KH-300", "store": "shibuya"},
        ),
        ("ｸﾓ ｴｱの在庫ある？", {"query": "product_stock", "product_code": "KA-100"}),  # half-width katakana
        ("KH-150は入荷しましたか？", {"query": "product_stock", "product_code": "KH-150"}),
        ("Is the Kumo Air in stock in Shibuya and Sapporo?", {"query": "product_stock", "product_code": "KA-100"}),
        ("札幌店の営業時間は？", {"query": "store_hours", "store": "sapporo"}),
        ("梅田店は何時まで開いていますか？", {"query": "store_hours", "store": "umeda"}),
        ("大阪のお店の定休日は？", {"query": "store_hours", "store": "umeda"}),
        ("What are the opening hours of the Sapporo store?", {"query": "store_hours", "store": "sapporo"}),
        ("What time does the Shibuya store close?", {"query": "store_hours", "store": "shibuya"}),
        # stock outranks hours when a question has both
        (
            "Is the Kumo Dome in stock at Umeda, and when do you open?",
            {"query": "product_stock", "product_code": "KS-200", "store": "umeda"},
        ),
    ],
)
def test_questions_pick_the_named_query_and_its_arguments(
    source: DatabaseSource, question: str, expected: dict[str, str]
) -> None:
    params = source.extract(question, "en", [])
    assert params is not None and args(params) == expected


@pytest.mark.parametrize(
    "question",
    [
        "What is the warranty on the Kumo Halo?",  # a product but no stock words
        "How much is the KA-100?",
        "What format is an order number?",  # orders, but no number
        "Where is the Shibuya store?",  # a store but no hours words
        "What are the support hours?",  # hours, but no store
        "返品できる期間は？",
        "KA-2026-12345 status",  # five-digit serial: not an order number
        "KA-2026-0001234 status",  # seven digits
        "Is the KA-1000 in stock?",  # no such product
        "",
    ],
)
def test_questions_for_other_sources_return_none(source: DatabaseSource, question: str) -> None:
    assert source.extract(question, "en", []) is None


@pytest.mark.parametrize(
    ("question", "earlier", "expected"),
    [
        ("and in Sapporo?", ["Is the Kumo Halo in stock in Shibuya?"], {"product_code": "KH-300", "store": "sapporo"}),
        ("札幌店は？", ["渋谷店の営業時間は？"], {"store": "sapporo"}),
        ("What about the Umeda store?", ["What are the Sapporo store's hours?"], {"store": "umeda"}),
        ("クモ エアは？", ["渋谷店にクモ ハロの在庫はありますか？"], {"product_code": "KA-100", "store": "shibuya"}),
        ("and the KS-50?", ["Is the Kumo Halo in stock?"], {"product_code": "KS-50"}),
        # a follow-up of a follow-up keeps the product of the first question
        (
            "and Umeda?",
            ["Is the KS-80 in stock in Shibuya?", "and in Sapporo?"],
            {"product_code": "KS-80", "store": "umeda"},
        ),
    ],
)
def test_follow_ups_reuse_the_previous_query(
    source: DatabaseSource, question: str, earlier: list[str], expected: dict[str, str]
) -> None:
    params = source.extract(question, "ja", earlier)
    assert params is not None
    query = "product_stock" if "product_code" in expected else "store_hours"
    assert args(params) == {"query": query, **expected}


@pytest.mark.parametrize(
    ("question", "earlier"),
    [
        ("札幌店は？", []),  # nothing to follow
        ("札幌店は？", ["返品できる期間は？"]),  # follows something else
        ("札幌店の住所は？", ["渋谷店の営業時間は？"]),  # asks something new about the store
        ("Where is the Sapporo store?", ["What are the Shibuya store hours?"]),
        ("and in Sapporo?", ["Is the Kumo Halo in stock?", "What is its warranty?"]),  # only the last message counts
        ("and the KS-50?", ["What are the Shibuya store hours?"]),  # a product does not fit an hours query
        ("and in Sapporo?", ["Where is my order KA-2026-000123?"]),
        ("and in Sapporo?", ["What's the weather in Tokyo?"]),
    ],
)
def test_follow_ups_to_other_questions_return_none(source: DatabaseSource, question: str, earlier: list[str]) -> None:
    assert source.extract(question, "ja", earlier) is None


def test_extract_is_pure_rules_touching_neither_the_database_nor_the_network(tmp_path: Path) -> None:
    """Run on every turn, before any source is called: `make bench` (sources) measures its speed."""
    database = tmp_path / "company.sqlite"
    source = DatabaseSource(sqlite_url(database), QUERIES, seed_file=SEED)
    questions = ["What is the warranty on the Kumo Halo?", "札幌店は？", "Is the KS-50 in stock?", "KA-2026-000123"]
    with GUARD.watching() as network:
        found = [source.extract(question, "en", ["渋谷店の営業時間は？"]) for question in questions * 50]
    queries = [args(params)["query"] if params else None for params in found[:4]]
    assert queries == [None, "store_hours", "product_stock", "order_status"]
    assert network == [] and not database.exists()  # not even created, let alone seeded


# ---- injection: payloads never reach SQL as text -------------------------------------------


@pytest.mark.parametrize(
    ("question", "order_number"),
    [
        ("KA-2026-000123'; DROP TABLE orders;--", "KA-2026-000123"),
        ("ＫＡ－２０２６－０００１２３＇ OR ＇1＇=＇1", "KA-2026-000123"),
        ("order KA-2026-000123 UNION SELECT * FROM orders", "KA-2026-000123"),
    ],
)
def test_extract_keeps_only_the_canonical_order_number_from_a_payload(
    source: DatabaseSource, question: str, order_number: str
) -> None:
    params = source.extract(question, "en", [])
    assert params is not None and args(params) == {"query": "order_status", "order_number": order_number}


@pytest.mark.parametrize(
    "question",
    [
        "' OR '1'='1",
        "КА-2026-000123",  # Cyrillic К and А look like K and A
        "KA-2026-\u200b000123",  # zero-width space inside the number
        "x" * 100_000,
    ],
)
def test_extract_finds_no_order_in_payloads_without_a_real_number(source: DatabaseSource, question: str) -> None:
    assert source.extract(question, "en", []) is None


def test_extract_carries_no_payload_into_stock_arguments(source: DatabaseSource) -> None:
    params = source.extract("Is the Kumo Halo in stock in Shibuya'; DELETE FROM stock;--", "en", [])
    assert params is not None and args(params) == {
        "query": "product_stock",
        "product_code": "KH-300",
        "store": "shibuya",
    }


@pytest.mark.parametrize(
    "values",
    [
        {"query": "order_status", "order_number": "KA-2026-000123'; DROP TABLE orders;--"},
        {"query": "order_status", "order_number": "' OR '1'='1"},
        {"query": "order_status", "order_number": "KA-2026-000123\n--"},  # fullmatch: no "$ before a newline" gap
        {"query": "order_status", "order_number": "KA-2026-000123\x00"},
        {"query": "order_status", "order_number": "КА-2026-000123"},  # Cyrillic
        {"query": "order_status", "order_number": "KA-2026-000123\u202e"},  # right-to-left override
        {"query": "order_status", "order_number": "A" * 1_000_000},
        {"query": "order_status", "order_number": 20260000123},
        {"query": "product_stock", "product_code": "KH-300' --"},
        {"query": "product_stock", "product_code": "KH-300", "store": "shibuya' OR '1'='1"},
        {"query": "store_hours", "store": "sapporo; DROP TABLE stores"},
        {"query": "DROP TABLE orders"},
        {"query": "order_status; DELETE FROM orders", "order_number": "KA-2026-000123"},
        {"query": "order_status", "order_number": "KA-2026-000123", "sql": "DELETE FROM orders"},  # no extra fields
        {"query": "order_status", "order_number": "KA-2026-000123", "store": "shibuya"},  # another query's argument
        {"query": "store_hours"},  # a required argument is missing
    ],
)
def test_parameter_model_rejects_payloads_and_misuse(source: DatabaseSource, values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        source.params_model.model_validate(values)


@pytest.mark.parametrize(("size", "refused_by"), [(1_000_000, "longer than"), (40, "at most")])
def test_a_huge_argument_is_refused_for_its_length_before_any_work_on_it(
    source: DatabaseSource, size: int, refused_by: str
) -> None:
    """A huge string stops at the first check (its raw length), before normalising or matching; a
    string only a little too long (control) goes through normalisation to the length constraint."""
    with pytest.raises(ValidationError) as caught:
        source.params_model.model_validate({"query": "order_status", "order_number": "Ａ" * size})
    (error,) = caught.value.errors()
    assert error["loc"] == ("order_number",) and refused_by in error["msg"], error


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"query": "order_status", "order_number": " ka-2026-000123 "}, {"order_number": "KA-2026-000123"}),
        ({"query": "order_status", "order_number": "ＫＡ-２０２６-０００１２３"}, {"order_number": "KA-2026-000123"}),
        ({"query": "product_stock", "product_code": "Kumo Halo"}, {"product_code": "KH-300"}),
        (
            {"query": "product_stock", "product_code": "kh300", "store": "札幌"},
            {"product_code": "KH-300", "store": "sapporo"},
        ),
        ({"query": "store_hours", "store": "Osaka"}, {"store": "umeda"}),
    ],
)
def test_parameter_model_accepts_spellings_an_llm_may_use(
    source: DatabaseSource, values: dict[str, Any], expected: dict[str, str]
) -> None:
    params = source.params_model.model_validate(values)
    assert args(params) == {"query": values["query"], **expected}


def test_tool_schema_names_the_allowed_queries_and_their_arguments(source: DatabaseSource) -> None:
    function = source.tool_schema()["function"]
    assert function["name"] == "database_query"
    properties = function["parameters"]["properties"]
    assert properties["query"]["enum"] == ["order_status", "product_stock", "store_hours"]
    assert function["parameters"]["required"] == ["query"]
    assert function["parameters"]["additionalProperties"] is False
    assert properties["order_number"]["pattern"] == "^KA-[0-9]{4}-[0-9]{6}$"
    assert properties["product_code"]["anyOf"][0]["enum"] == [
        "KA-100",
        "KA-200",
        "KH-150",
        "KH-300",
        "KS-50",
        "KS-80",
        "KS-200",
    ]
    assert properties["store"]["anyOf"][0]["enum"] == ["shibuya", "umeda", "sapporo"]
    assert "optional store" in properties["query"]["description"]


async def test_fetch_refuses_unvalidated_parameters_before_touching_the_database(tmp_path: Path) -> None:
    # No seed and no file: reaching the database would fail as "unreachable", not "bad_response".
    source = DatabaseSource(sqlite_url(tmp_path / "missing.sqlite"), QUERIES)
    forged = source.params_model.model_construct(query="order_status", order_number="' OR '1'='1")
    with pytest.raises(FetchError) as caught:
        await source.fetch(forged, SourceContext())  # type: ignore[arg-type]
    assert caught.value.kind == "bad_response"
    result = await run_source(source, forged, SourceContext(language="ja"))
    assert result["status"] == "error" and result["data"] == {"error": "bad_response"}
    assert result["summary"] == "注文・在庫システムの情報を今取得できませんでした。"
    assert not (tmp_path / "missing.sqlite").exists()
    await source.aclose()


def test_order_status_is_per_user_and_its_cache_key_names_the_caller(source: DatabaseSource) -> None:
    order = params_of(source, query="order_status", order_number="KA-2026-000123")
    hours = params_of(source, query="store_hours", store="sapporo")
    alice, bob = SourceContext(user_id="alice"), SourceContext(user_id="bob")
    assert source.queries["order_status"].per_user and not source.queries["store_hours"].per_user
    assert source.cache_key(order, alice) != source.cache_key(order, bob)
    assert source.cache_key(hours, alice) == source.cache_key(hours, bob)
    assert source.query_ttl_s("order_status") == 30 and source.query_ttl_s("store_hours") == 3600


# ---- answers -------------------------------------------------------------------------------


def test_answer_groups_consecutive_equal_rows_into_pairs_and_ranges() -> None:
    answer = AnswerSpec.model_validate(
        {
            "group_by": ["opens"],
            "en": {
                "text": "Open {items}.",
                "item": "{days} {opens}",
                "none": "-",
                "days": {"column": "day", "range": " to ", "pair": " and "},
            },
            "ja": {"item": "{days}", "none": "{code} なし", "days": {"column": "day"}},
        }
    )
    rows = [
        {"day": d, "opens": o}
        for d, o in [("Mon", "10"), ("Tue", "10"), ("Wed", "10"), ("Sat", "9"), ("Sun", "9"), ("Hol", None)]
    ]
    assert render_answer(answer, "en", {}, rows) == "Open Mon to Wed 10, Sat and Sun 9, Hol ."
    assert render_answer(answer, "ja", {"code": "X"}, []) == "X なし"


def test_japanese_dates_are_written_the_japanese_way() -> None:
    answer = AnswerSpec.model_validate(
        {"en": {"item": "on {d}", "none": "-"}, "ja": {"item": "{d:jdate}に", "none": "-"}}
    )
    assert render_answer(answer, "ja", {}, [{"d": "2026-04-02"}]) == "2026年4月2日に"
    assert render_answer(answer, "en", {}, [{"d": "2026-04-02"}]) == "on 2026-04-02"


# ---- the queries file ----------------------------------------------------------------------


def test_sample_queries_file_loads_three_read_only_queries(source: DatabaseSource) -> None:
    assert list(source.queries) == ["order_status", "product_stock", "store_hours"]
    assert all(sql_problem(query.sql) is None for query in source.queries.values())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ';' AS semicolon FROM orders -- DROP TABLE orders; in a comment",
        "/* DELETE */ SELECT order_number FROM orders WHERE status = 'update'",
        "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent;",
        "SELECT replace(name_en, 'Kumo ', '') AS short_name, 'DROP' AS word FROM products",
    ],
)
def test_sql_check_accepts_select_with_keywords_only_in_comments_and_strings(sql: str) -> None:
    assert sql_problem(sql) is None


def write_queries(tmp_path: Path, change: Any) -> Path:
    data = yaml.safe_load(QUERIES.read_text(encoding="utf-8"))
    change(data["queries"])
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def set_sql(sql: str) -> Any:
    return lambda queries: queries["order_status"].update(sql=sql)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda q: q["order_status"]["params"]["order_number"].update(type="uuid"), "unknown parameter type 'uuid'"),
        (set_sql("UPDATE orders SET status = 'delivered' WHERE order_number = :order_number"), "starts with UPDATE"),
        (
            set_sql("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d WHERE order_number = :order_number"),
            "DELETE",
        ),
        (
            set_sql("SELECT * FROM orders WHERE order_number = :order_number; DROP TABLE orders"),
            "more than one statement",
        ),
        (set_sql("SELECT * INTO stolen FROM orders WHERE order_number = :order_number"), "INTO"),
        (set_sql("PRAGMA writable_schema = 1"), "starts with PRAGMA"),
        (
            set_sql("SELECT * FROM orders WHERE order_number = :order_number AND customer_id = :customer"),
            "undeclared parameters: customer",
        ),
        (set_sql("SELECT * FROM orders"), "not used in the SQL: order_number"),
        (lambda q: q["order_status"]["params"]["order_number"].update(pattern="KA-[0-9"), "bad pattern"),
        (lambda q: q["store_hours"]["answer"]["en"].update(none="No store {store"), "bad template"),
        # the caller binding
        (set_sql("SELECT * FROM orders WHERE order_number = :order_number"), "caller: bound to the caller but not"),
        (lambda q: q["order_status"].update(caller={"caller_id": "phone"}), "caller.caller_id: Input should be"),
        (
            lambda q: q["order_status"].update(caller={"order_number": "user_id"}),
            "caller.order_number: also a parameter",
        ),
        (lambda q: q["order_status"].update(per_user=False), "per_user: a query bound to the caller"),
        (lambda q: q["order_status"].pop("withheld"), "withheld: name what is withheld"),
        (lambda q: q["order_status"]["withheld"].pop("ja"), "withheld: name what is withheld"),
        (lambda q: q["store_hours"].update(withheld={"en": "x", "ja": "x"}), "withheld: only a query with a caller"),
        (lambda q: q["order_status"]["answer"]["en"].update(none="No order."), "answer.en.none: a query bound to"),
        (lambda q: q["store_hours"]["answer"]["ja"].pop("none"), "answer.ja.none: field required"),
        (lambda q: q["order_status"]["answer"].pop("item_by"), "item_by"),
        (lambda q: q["store_hours"]["params"]["store"].update(values=["shibuya"], aliases={}), "differs from"),
        (lambda q: q["order_status"].pop("sql"), "sql: Field required"),
    ],
)
def test_bad_queries_file_is_refused_naming_the_file_and_the_query(tmp_path: Path, change: Any, message: str) -> None:
    path = write_queries(tmp_path, change)
    with pytest.raises(UserInputError) as caught:
        DatabaseSource(sqlite_url(tmp_path / "db.sqlite"), path)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert "order_status" in str(caught.value) or "store_hours" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("queries: [unclosed", "invalid YAML"),
        ("- just a list", "'queries' mapping"),
        ("queries: {}", "queries: Dictionary should have at least 1 item"),
    ],
)
def test_unreadable_queries_file_is_refused_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserInputError) as caught:
        DatabaseSource(sqlite_url(tmp_path / "db.sqlite"), path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_missing_queries_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="DATABASE_QUERIES_FILE"):
        DatabaseSource(sqlite_url(tmp_path / "db.sqlite"), tmp_path / "nowhere.yaml")


@pytest.mark.parametrize(
    "url", ["mysql://user@localhost/kumo", "sqlite+aiosqlite:///:memory:", "not a url", "sqlite://"]
)
def test_unsupported_database_url_is_refused(url: str) -> None:
    with pytest.raises(UserInputError, match="DATABASE_URL"):
        DatabaseSource(url, QUERIES)
