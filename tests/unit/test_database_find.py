"""The `find` rules of the queries file: a new named query needs no code, file order is priority,
follow-ups work for any enum parameter, and mistakes in the rules are refused at load time."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from retrievers.errors import UserInputError
from retrievers.sources.base import SourceContext
from retrievers.sources.database import DatabaseSource, params_of, sqlite_url

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "data" / "database.yaml"
SEED = REPO / "data" / "seed.sql"
PACKAGE = REPO / "retrievers" / "sources" / "database"
SAMPLE = yaml.safe_load(QUERIES.read_text(encoding="utf-8"))

PRODUCT_PRICE = {  # a query added by configuration only
    "description": "The price of a product in yen.",
    "ttl_s": 600,
    "params": {"product_code": copy.deepcopy(SAMPLE["queries"]["product_stock"]["params"]["product_code"])},
    "sql": "SELECT code, name_en, name_ja, price_yen FROM products WHERE code = :product_code",
    "answer": {
        "en": {"item": "The {name_en} costs {price_yen} yen.", "none": "I don't know {product_code}."},
        "ja": {"item": "{name_ja}は{price_yen}円です。", "none": "{product_code} は見つかりませんでした。"},
    },
    "find": {"words": ["price", "cost", "costs", "how much", "値段", "価格", "いくら"], "params": {"product_code": {}}},
}
ORDERS_IN_YEAR = {  # an integer found by a regex with a named group
    "description": "How many online orders were placed in a year.",
    "params": {"year": {"type": "integer", "minimum": 2000, "maximum": 2100}},
    "sql": "SELECT count(*) AS n FROM orders WHERE CAST(strftime('%Y', ordered_on) AS INTEGER) = :year",
    "answer": {
        "en": {"item": "{n} orders in {year}.", "none": "-"},
        "ja": {"item": "{year}年は{n}件です。", "none": "-"},
    },
    "find": {
        "words": ["orders", "注文"],
        "params": {"year": {"regex": r"(?<![0-9])(?P<y>20[0-9]{2})(?![0-9])", "value": "{y}"}},
    },
}


def write(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = copy.deepcopy(SAMPLE)
    edit(data)
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def build(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> DatabaseSource:
    return DatabaseSource(sqlite_url(tmp_path / "company.sqlite"), write(tmp_path, edit), seed_file=SEED)


def args(params: Any) -> dict[str, Any]:
    assert params is not None
    return dict(params.model_dump(exclude_none=True))


def add(name: str, query: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["queries"].update({name: copy.deepcopy(query)})


# ---- a new query without code --------------------------------------------------------------


async def test_a_query_added_to_the_file_is_found_answered_and_offered_to_the_llm(tmp_path: Path) -> None:
    source = build(tmp_path, add("product_price", PRODUCT_PRICE))
    try:
        params = source.extract("How much is the Kumo Halo?", "en", [])
        assert args(params) == {"query": "product_price", "product_code": "KH-300"}
        assert args(source.extract("クモ エアの値段は？", "ja", [])) == {
            "query": "product_price",
            "product_code": "KA-100",
        }
        assert args(source.extract("and the KS-50?", "en", ["How much is the Kumo Halo?"])) == {
            "query": "product_price",
            "product_code": "KS-50",
        }
        fetched = await source.fetch(params_of(source, query="product_price", product_code="KH-300"), SourceContext())
        price = fetched.data[0]["price_yen"]
        assert fetched.summary == f"The Kumo Halo costs {price} yen." and isinstance(price, int)
        assert "product_price" in source.tool_schema()["function"]["parameters"]["properties"]["query"]["enum"]
    finally:
        await source.aclose()


async def test_an_integer_is_found_by_a_regex_with_a_named_group(tmp_path: Path) -> None:
    source = build(tmp_path, add("orders_in_year", ORDERS_IN_YEAR))
    try:
        params = source.extract("How many orders were placed in 2026?", "en", [])
        assert args(params) == {"query": "orders_in_year", "year": 2026}
        assert source.extract("How many orders were placed in 1999?", "en", []) is None  # out of range
        assert source.extract("What happened in 2026?", "en", []) is None  # no trigger word
        fetched = await source.fetch(params, SourceContext(language="ja"))  # type: ignore[arg-type]
        assert fetched.summary == f"2026年は{fetched.data[0]['n']}件です。" and fetched.data[0]["n"] > 0
    finally:
        await source.aclose()


def test_file_order_is_priority(tmp_path: Path) -> None:
    question = "Is the Kumo Dome in stock at Umeda, and when do you open?"
    default = build(tmp_path, lambda data: None)
    assert args(default.extract(question, "en", []))["query"] == "product_stock"

    def hours_first(data: dict[str, Any]) -> None:
        data["queries"] = {name: data["queries"][name] for name in ("store_hours", "product_stock", "order_status")}

    assert args(build(tmp_path, hours_first).extract(question, "en", [])) == {"query": "store_hours", "store": "umeda"}


def test_a_query_without_find_is_left_to_the_llm(tmp_path: Path) -> None:
    source = build(tmp_path, lambda data: data["queries"]["store_hours"].pop("find"))
    assert source.extract("What are the opening hours of the Sapporo store?", "en", []) is None
    assert "store_hours" in source.tool_schema()["function"]["parameters"]["properties"]["query"]["enum"]


def test_several_values_follow_each_parameters_rule(tmp_path: Path) -> None:
    source = build(tmp_path, lambda data: None)
    stock, hours = ["Is the KS-80 in stock in Umeda?"], ["What are the Umeda store's hours?"]
    # product_stock leaves `store` out (every store); store_hours takes the first store named
    assert args(source.extract("and in Shibuya and Sapporo?", "en", stock)) == {
        "query": "product_stock",
        "product_code": "KS-80",
    }
    assert args(source.extract("and in Shibuya and Sapporo?", "en", hours)) == {
        "query": "store_hours",
        "store": "shibuya",
    }
    assert args(source.extract("What time do Sapporo and Shibuya open?", "en", [])) == {
        "query": "store_hours",
        "store": "sapporo",
    }


def test_follow_ups_are_followed_three_deep_and_no_further(tmp_path: Path) -> None:
    source = build(tmp_path, lambda data: None)
    chain = ["Is the KS-80 in stock in Shibuya?", "and in Sapporo?", "and Umeda?", "and Shibuya?", "and Sapporo?"]
    assert args(source.extract("and Umeda?", "en", chain[:4])) == {
        "query": "product_stock",
        "product_code": "KS-80",
        "store": "umeda",
    }
    assert source.extract("and Umeda?", "en", chain) is None  # the question is five turns back


# ---- nothing company-specific in code ------------------------------------------------------


def test_identity_comes_from_the_file(tmp_path: Path) -> None:
    def rename(data: dict[str, Any]) -> None:
        data.update(description="Acme's shop.", labels={"en": "Acme's shop", "ja": "アクメ"})
        data["examples"] = {"en": ["Is it in stock?"], "ja": ["在庫は？"]}

    source = build(tmp_path, rename)
    assert source.description == "Acme's shop." and source.tool_schema()["function"]["description"] == "Acme's shop."
    assert source.labels == {"en": "Acme's shop", "ja": "アクメ"}
    assert source.examples == {"en": ["Is it in stock?"], "ja": ["在庫は？"]}


def test_the_code_names_no_query_and_no_company() -> None:
    names = [*SAMPLE["queries"], "kumo", "クモ", "KA-"]
    for module in PACKAGE.glob("*.py"):
        text = module.read_text(encoding="utf-8").lower()
        assert not [name for name in names if name.lower() in text], module.name


# ---- mistakes are refused at load time -----------------------------------------------------


def find_of(query: str, **change: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["queries"][query]["find"].update(change)


def order_rule(**change: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["queries"]["order_status"]["find"]["params"]["order_number"].update(change)


@pytest.mark.parametrize(
    ("edit", "query", "message"),
    [
        (order_rule(regex="KA-([0-9"), "order_status", "find.params.order_number.regex: bad regex"),
        (order_rule(value="KA-{1}-{3}"), "order_status", "find.params.order_number.value: the regex has no group 3"),
        (order_rule(value="KA-{serial}"), "order_status", "no group named 'serial'"),
        (order_rule(value="KA-{1"), "order_status", "find.params.order_number.value: bad template"),
        (order_rule(regex=None), "order_status", "find.params.order_number.regex: a string parameter needs a regex"),
        (order_rule(several="all"), "order_status", "find.params.order_number.several: Input should be"),
        (order_rule(pattern="x"), "order_status", "find.params.order_number.pattern: Extra inputs"),
        (find_of("product_stock", params={"colour": {}}), "product_stock", "find.params.colour: not a parameter"),
        (
            find_of("product_stock", params={"product_code": {"regex": "K.-[0-9]+"}}),
            "product_stock",
            "find.params.product_code: an enum is found by its values and aliases",
        ),
        (
            find_of("product_stock", params={"store": {}}),
            "product_stock",
            "find.params: required parameters that must be found too: product_code",
        ),
        (find_of("store_hours", words=[], params={}), "store_hours", "find: give words, params or both"),
        (find_of("store_hours", words=["open", " "]), "store_hours", "find.words: a word is empty"),
        (find_of("store_hours", word=["open"]), "store_hours", "find.word: Extra inputs"),
    ],
)
def test_bad_find_rules_are_refused_naming_file_query_and_field(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], query: str, message: str
) -> None:
    path = write(tmp_path, edit)
    with pytest.raises(UserInputError) as caught:
        DatabaseSource(sqlite_url(tmp_path / "db.sqlite"), path)
    text = str(caught.value)
    assert str(path) in text and f"query {query!r}" in text and message in text, text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda data: data.pop("description"), "the file: description: Field required"),
        (lambda data: data["labels"].pop("ja"), "the file: labels: Value error, needs en and ja (missing ja)"),
        (lambda data: data["examples"].update(en=[]), "the file: examples: Value error, needs en and ja (missing en)"),
        (lambda data: data["labels"].update(fr="x"), "the file: labels.fr.[key]: Input should be"),
    ],
)
def test_the_source_identity_is_required_in_both_languages(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = write(tmp_path, edit)
    with pytest.raises(UserInputError) as caught:
        DatabaseSource(sqlite_url(tmp_path / "db.sqlite"), path)
    assert str(path) in str(caught.value) and message in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda data: data["queries"]["order_status"]["answer"]["en"].update(none="secret-s3cr3t {order_number"),
        lambda data: data["queries"]["order_status"].update(sql="DELETE FROM orders -- secret-s3cr3t"),
        order_rule(regex="secret-s3cr3t(", value="{1}"),
        order_rule(value="secret-s3cr3t{9}"),
    ],
)
def test_errors_never_echo_the_file(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = write(tmp_path, edit)
    with pytest.raises(UserInputError) as caught:
        DatabaseSource(sqlite_url(tmp_path / "db.sqlite"), path)
    assert "s3cr3t" not in str(caught.value) and "order_status" in str(caught.value)


def test_invalid_yaml_is_reported_by_line_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text("queries:\n  password: [s3cr3t\n", encoding="utf-8")
    with pytest.raises(UserInputError) as caught:
        DatabaseSource(sqlite_url(tmp_path / "db.sqlite"), path)
    assert re.match(rf"{re.escape(str(path))}:\d+: invalid YAML", str(caught.value))
    assert "s3cr3t" not in str(caught.value)


def test_building_the_source_and_extracting_touch_no_database(tmp_path: Path) -> None:
    source = build(tmp_path, lambda data: None)
    assert args(source.extract("KA-2026-000123", "en", [])) == {
        "query": "order_status",
        "order_number": "KA-2026-000123",
    }
    assert not (tmp_path / "company.sqlite").exists()
