"""The `database_query` source: named, parameterised, read-only SQL queries from configuration.

SQL is never written by the model or the user (DESIGN.md §5). The queries live in a YAML file
(`data/database.yaml`, or the file named by `DATABASE_QUERIES_FILE`): each has a name, a
description, one SELECT with `:name` bound parameters, a parameter spec, a TTL and answer templates
in Japanese and English. The router picks a query by name and gives its arguments; they are
validated (pydantic, generated from the spec) and bound, never interpolated.

Every query runs on its own pooled connection in a read-only transaction under a statement timeout:

- PostgreSQL (`postgresql+asyncpg://…`): sessions default to read-only, and each query runs after
  `SET TRANSACTION READ ONLY` and `SET LOCAL statement_timeout`.
- SQLite (`sqlite+aiosqlite:///…`, the default, seeded from `data/seed.sql` on first use): the file
  is opened with `mode=ro`, `PRAGMA query_only` is on, and a progress handler interrupts a statement
  that runs past its timeout.

The statement timeout is also capped by the turn's deadline. Failures become `FetchError`s:
`timeout` (statement cancelled), `unreachable` (no connection), `bad_response` (arguments that do
not validate), `server_error` (the database refused the statement).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
import string
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, cast

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from retrievers.errors import UserInputError
from retrievers.language import Language
from retrievers.sources.base import Fetched, Source, SourceContext
from retrievers.turn.deadline import capped
from retrievers.turn.failures import FetchError

log = logging.getLogger(__name__)

# The queries the rule-based `extract` knows how to fill (skipped when the file lacks them).
ORDER_QUERY = "order_status"
STOCK_QUERY = "product_stock"
HOURS_QUERY = "store_hours"

_TIMEOUT_GRACE_S = 1.0  # a last-resort asyncio timeout on top of the database's own


# --------------------------------------------------------------------------------------------
# The configuration file, checked with pydantic
# --------------------------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StringParam(_Spec):
    type: Literal["string"]
    description: str = ""
    required: bool = True
    pattern: str | None = None  # the whole (normalised) value must match
    max_length: int = Field(100, ge=1, le=10_000)
    normalize: list[Literal["nfkc", "strip", "upper", "lower"]] = []


class EnumParam(_Spec):
    type: Literal["enum"]
    description: str = ""
    required: bool = True
    values: list[str] = Field(min_length=1)
    aliases: dict[str, str] = {}


class IntegerParam(_Spec):
    type: Literal["integer"]
    description: str = ""
    required: bool = True
    minimum: int | None = None
    maximum: int | None = None


ParamSpec = Annotated[StringParam | EnumParam | IntegerParam, Field(discriminator="type")]


class DaysLabel(_Spec):
    """How a group of consecutive rows is named: one value, a pair, or a range."""

    column: str
    range: str = " to "
    pair: str = " and "


class LanguageAnswer(_Spec):
    text: str = "{items}"
    item: str | dict[str, str] = ""
    none: str
    join: str = ", "
    days: DaysLabel | None = None


class AnswerSpec(_Spec):
    item_by: str | None = None  # a column whose value picks the item template
    group_by: list[str] = []  # consecutive rows equal on these columns become one item
    en: LanguageAnswer
    ja: LanguageAnswer

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for language in ("en", "ja"):
            spec: LanguageAnswer = getattr(self, language)
            if isinstance(spec.item, dict) and not self.item_by:
                raise ValueError(f"{language}.item is a mapping, so item_by must name the column that picks one")
            if self.group_by and spec.days is None:
                raise ValueError(f"group_by is set, so {language}.days must say how a group of rows is named")
        return self


class QuerySpec(_Spec):
    description: str
    sql: str
    params: dict[str, ParamSpec] = {}
    per_user: bool = False
    ttl_s: float = Field(60.0, ge=0)
    answer: AnswerSpec


class QueriesFile(_Spec):
    queries: dict[str, QuerySpec] = Field(min_length=1)


# --------------------------------------------------------------------------------------------
# SQL checks
# --------------------------------------------------------------------------------------------

_COMMENT_OR_QUOTED = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", re.DOTALL)
_WRITE_WORDS = re.compile(  # inside a SELECT / WITH: data-modifying CTEs, SELECT INTO, locks, statements
    r"\b(INSERT|UPDATE|DELETE|MERGE|UPSERT|DROP|CREATE|ALTER|TRUNCATE|GRANT|REVOKE|ATTACH|DETACH|PRAGMA|"
    r"VACUUM|REINDEX|COPY|CALL|EXECUTE|LOCK|INTO|LISTEN|NOTIFY|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|PREPARE)\b",
    re.IGNORECASE,
)
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")  # SQLAlchemy's own rule for text() bind parameters


def _sql_problem(sql: str) -> str | None:
    """Why `sql` is not a single read-only SELECT, or None when it is."""
    if "\\" in sql:
        return "backslashes are not allowed"
    body = _COMMENT_OR_QUOTED.sub(" ", sql).strip()
    if "'" in body or '"' in body or "/*" in body:
        return "unbalanced quote or comment"
    body = body.rstrip().rstrip(";").strip()
    if not body:
        return "it is empty"
    if ";" in body:
        return "it has more than one statement"
    first = body.split(None, 1)[0].upper()
    if first not in ("SELECT", "WITH"):
        return f"it starts with {first}, not SELECT"
    if word := _WRITE_WORDS.search(body):
        return f"it contains {word.group(1).upper()}"
    return None


def _bind_names(sql: str) -> set[str]:
    return set(_BIND.findall(_COMMENT_OR_QUOTED.sub(" ", sql)))


# --------------------------------------------------------------------------------------------
# Parameters: a pydantic model generated from the file
# --------------------------------------------------------------------------------------------


class DatabaseParams(BaseModel):
    """Which named query to run, and its arguments. Each source builds a subclass from its file:
    `query` becomes an enum of the query names, and every argument a validated optional field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(description="the named query to run")

    # query name -> {argument name: required}; set on the generated subclass
    query_arguments: ClassVar[dict[str, dict[str, bool]]] = {}

    @model_validator(mode="after")
    def _arguments_fit_the_query(self) -> Self:
        wanted = self.query_arguments.get(self.query)
        if wanted is None:
            raise ValueError(f"unknown query {self.query!r}")
        given = {name for name in type(self).model_fields if name != "query" and getattr(self, name) is not None}
        if missing := [name for name, required in wanted.items() if required and getattr(self, name) is None]:
            raise ValueError(f"query {self.query!r} needs {', '.join(missing)}")
        if extra := sorted(given - set(wanted)):
            raise ValueError(f"query {self.query!r} takes no {', '.join(extra)}")
        return self

    def arguments(self) -> dict[str, Any]:
        """The bound parameters of the chosen query (absent optional ones are None)."""
        return {name: getattr(self, name) for name in self.query_arguments[self.query]}


def _fold(value: str) -> str:
    """How names are compared: NFKC, case-folded, without spaces, hyphens and middle dots."""
    return re.sub(r"[\s\-‐‑‒–—―−・_]+", "", unicodedata.normalize("NFKC", value).casefold())


def _normalizer(steps: Sequence[str], limit: int) -> Callable[[Any], Any]:
    def normalize(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if len(value) > limit * 4:  # refuse huge input before doing any work on it
            raise ValueError(f"longer than {limit} characters")
        for step in steps:
            if step == "nfkc":
                value = unicodedata.normalize("NFKC", value)
            elif step == "strip":
                value = value.strip()
            elif step == "upper":
                value = value.upper()
            elif step == "lower":
                value = value.lower()
        return value

    return normalize


def _full_match(pattern: re.Pattern[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"does not match {pattern.pattern}")
        return value

    return check


def _enum_resolver(spec: EnumParam) -> Callable[[Any], Any]:
    table = {_fold(value): value for value in spec.values}
    table.update({_fold(alias): value for alias, value in spec.aliases.items()})

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and len(value) <= 200:
            return table.get(_fold(value), value)
        return value

    return resolve


def _field_type(spec: StringParam | EnumParam | IntegerParam) -> Any:
    if isinstance(spec, StringParam):
        validators: list[Any] = [
            BeforeValidator(_normalizer(spec.normalize, spec.max_length)),
            StringConstraints(max_length=spec.max_length),
        ]
        if spec.pattern is not None:
            validators.append(AfterValidator(_full_match(re.compile(spec.pattern))))
        return Annotated[str, *validators]
    if isinstance(spec, EnumParam):
        return Annotated[Literal[tuple(spec.values)], BeforeValidator(_enum_resolver(spec))]
    return Annotated[int, Field(strict=True, ge=spec.minimum, le=spec.maximum)]


def _same_kind(a: StringParam | EnumParam | IntegerParam, b: StringParam | EnumParam | IntegerParam) -> bool:
    ignore = {"description", "required"}
    return a.model_dump(exclude=ignore) == b.model_dump(exclude=ignore)


def _build_params_model(queries: Mapping[str, QuerySpec]) -> type[DatabaseParams]:
    specs: dict[str, StringParam | EnumParam | IntegerParam] = {}
    used_by: dict[str, list[str]] = {}
    for query_name, query in queries.items():
        for name, spec in query.params.items():
            specs.setdefault(name, spec)
            used_by.setdefault(name, []).append(query_name)

    def describe(query_name: str, query: QuerySpec) -> str:
        arguments = [name if spec.required else f"optional {name}" for name, spec in query.params.items()]
        return f"{query_name}: {query.description}" + (f" (arguments: {', '.join(arguments)})" if arguments else "")

    names = tuple(queries)
    fields: dict[str, Any] = {
        "query": (
            Literal[names],
            Field(description="Which named query to run. " + " | ".join(describe(n, q) for n, q in queries.items())),
        )
    }
    for name, spec in specs.items():
        description = f"{spec.description} Used by: {', '.join(used_by[name])}.".strip()
        extra: dict[str, Any] | None = None
        if isinstance(spec, StringParam) and spec.pattern:
            extra = {"pattern": f"^{spec.pattern}$"}
        fields[name] = (
            _field_type(spec) | None,
            Field(None, description=description, json_schema_extra=cast(Any, extra)),
        )
    model = create_model("DatabaseQueryParams", __base__=DatabaseParams, **fields)
    model.query_arguments = {
        query_name: {name: spec.required for name, spec in query.params.items()}
        for query_name, query in queries.items()
    }
    return model


def _load_queries(path: Path) -> dict[str, QuerySpec]:
    """Read and check the queries file; every mistake is a `UserInputError` naming file and query."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"{path}: the database queries file does not exist (DATABASE_QUERIES_FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: cannot read the database queries file: {exc}") from None
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("queries"), dict):
        raise UserInputError(f"{path}: expected a mapping with a 'queries' mapping of named queries")
    try:
        parsed = QueriesFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        in_query = len(loc) > 1 and loc[0] == "queries"
        where = f"query {loc[1]!r}" if in_query else "the file"
        field = ".".join(loc[2:] if in_query else loc)
        message = first["msg"]
        if first["type"] == "union_tag_invalid":
            tag = first.get("ctx", {}).get("tag", "?")
            message = f"unknown parameter type {tag!r} (expected string, enum or integer)"
        raise UserInputError(f"{path}: {where}: {field + ': ' if field else ''}{message}") from None

    for name, query in parsed.queries.items():
        where = f"{path}: query {name!r}"
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise UserInputError(f"{where}: a query name is lower-case letters, digits and _")
        if problem := _sql_problem(query.sql):
            raise UserInputError(f"{where}: the SQL must be a single read-only SELECT ({problem})")
        binds = _bind_names(query.sql)
        if undeclared := sorted(binds - set(query.params)):
            raise UserInputError(f"{where}: the SQL uses undeclared parameters: {', '.join(undeclared)}")
        if unused := sorted(set(query.params) - binds):
            raise UserInputError(f"{where}: declared parameters not used in the SQL: {', '.join(unused)}")
        for param_name, spec in query.params.items():
            if param_name == "query" or not param_name.isidentifier() or param_name.startswith("_"):
                raise UserInputError(f"{where}: {param_name!r} cannot be a parameter name")
            if isinstance(spec, StringParam) and spec.pattern is not None:
                try:
                    re.compile(spec.pattern)
                except re.error as exc:
                    raise UserInputError(f"{where}: parameter {param_name!r}: bad pattern: {exc}") from None
            if isinstance(spec, EnumParam) and (wrong := sorted(set(spec.aliases.values()) - set(spec.values))):
                raise UserInputError(f"{where}: parameter {param_name!r}: aliases point to unknown values {wrong}")
        for language in ("en", "ja"):
            answer: LanguageAnswer = getattr(query.answer, language)
            templates = [answer.text, answer.none]
            templates += list(answer.item.values()) if isinstance(answer.item, dict) else [answer.item]
            for template in templates:
                try:
                    list(string.Formatter().parse(template))
                except ValueError as exc:
                    raise UserInputError(f"{where}: answer.{language}: bad template {template!r}: {exc}") from None

    seen: dict[str, tuple[str, StringParam | EnumParam | IntegerParam]] = {}
    for name, query in parsed.queries.items():
        for param_name, spec in query.params.items():
            if param_name in seen and not _same_kind(seen[param_name][1], spec):
                other = seen[param_name][0]
                raise UserInputError(
                    f"{path}: query {name!r}: parameter {param_name!r} differs from the one of query {other!r}"
                )
            seen.setdefault(param_name, (name, spec))
    return dict(parsed.queries)


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, clock_time):
        return value.strftime("%H:%M") if not value.second and not value.microsecond else value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


class _AnswerFormatter(string.Formatter):
    """`str.format` with None written as nothing and `{col:jdate}` for 2026年4月2日."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return ""
        if format_spec == "jdate":
            day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
            return f"{day.year}年{day.month}月{day.day}日"
        return str(super().format_field(value, format_spec))


_FORMATTER = _AnswerFormatter()


def _days_label(rows: Sequence[Mapping[str, Any]], days: DaysLabel) -> str:
    first, last = str(rows[0][days.column]), str(rows[-1][days.column])
    if len(rows) == 1:
        return first
    return f"{first}{days.pair if len(rows) == 2 else days.range}{last}"


def render_answer(
    answer: AnswerSpec, language: Language, arguments: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> str:
    """The sentence for `rows` (JSON-friendly) in `language`, from the query's templates."""
    spec: LanguageAnswer = getattr(answer, language)
    if not rows:
        return _FORMATTER.format(spec.none, **arguments)
    groups: list[list[Mapping[str, Any]]] = []
    for row in rows:
        key = [row.get(column) for column in answer.group_by]
        if groups and answer.group_by and [groups[-1][0].get(column) for column in answer.group_by] == key:
            groups[-1].append(row)
        else:
            groups.append([row])
    items = []
    for group in groups:
        fields = {**arguments, **group[0]}
        if spec.days is not None:
            fields["days"] = _days_label(group, spec.days)
        template = spec.item
        if isinstance(template, dict):
            choice = str(group[0].get(answer.item_by or ""))
            if choice not in template and "default" not in template:
                raise FetchError("bad_response", f"no answer template for {answer.item_by}={choice!r}")
            template = template.get(choice, template.get("default", ""))
        items.append(_FORMATTER.format(template, **fields))
    return _FORMATTER.format(spec.text, **{**arguments, **rows[0], "items": spec.join.join(items)}).strip()


# --------------------------------------------------------------------------------------------
# Rule-based extraction
# --------------------------------------------------------------------------------------------

_DASH = r"[\-‐‑‒–—―−ー_]"
_ORDER_NUMBER = re.compile(rf"(?<![A-Z0-9])K\s*A\s*{_DASH}?\s*([0-9]{{4}})\s*{_DASH}?\s*([0-9]{{6}})(?![0-9])")
_STOCK_WORDS = re.compile(
    r"\b(stock|stocks|stocked|available|availability|sold out|carry|have any)\b|在庫|入荷|品切れ|売り切れ|欠品|置いて"
)
_HOURS_WORDS = re.compile(
    r"\b(hours?|open|opens|opening|close|closes|closing|closed|what time|business days?)\b"
    r"|営業|何時|開店|閉店|定休|休み|休業|開いて|閉ま|オープン"
)
_FOLLOW_UP_FILLER = re.compile(
    r"\b(and|what|how|about|in|at|the|our|your|store|stores|branch|shop|for|then|also|of|same|there|please|ok)\b"
    r"|支店|店舗|店|の方|では|でも|なら|だと|って|どうですか|どうでしょうか|どう|ですか|でしょうか|は|も|の|で|に"
    r"|[\s\W_]+"
)


def _alias_pattern(terms: Mapping[str, str]) -> re.Pattern[str] | None:
    """One regex finding any of `terms` in NFKC + case-folded text, spaces and hyphens optional."""
    pieces = []
    for term in sorted(terms, key=lambda t: len(_fold(t)), reverse=True):
        folded = unicodedata.normalize("NFKC", term).casefold()
        tokens = [re.escape(token) for token in re.split(r"[\s\-‐‑‒–—―−・_]+", folded) if token]
        if not tokens:
            continue
        body = r"[\s\-‐‑‒–—―−・_]*".join(tokens)
        if re.match(r"[a-z0-9]", folded):
            body = r"(?<![a-z0-9])" + body
        if re.search(r"[a-z0-9]$", folded):
            body += r"(?![a-z0-9])"
        pieces.append(body)
    return re.compile("|".join(pieces)) if pieces else None


class _Vocabulary:
    """Finds the values of one enum parameter (store, product) in a question."""

    def __init__(self, spec: EnumParam | None) -> None:
        self._by_fold: dict[str, str] = {}
        if spec is not None:
            terms = {value: value for value in spec.values} | dict(spec.aliases)
            self._by_fold = {_fold(term): value for term, value in terms.items()}
            self._pattern = _alias_pattern(terms)
        else:
            self._pattern = None

    def find(self, folded_text: str) -> tuple[list[str], str]:
        """The distinct values mentioned (in order) and the text with their mentions blanked."""
        if self._pattern is None:
            return [], folded_text
        found: list[str] = []
        for match in self._pattern.finditer(folded_text):
            value = self._by_fold.get(_fold(match.group(0)))
            if value is not None and value not in found:
                found.append(value)
        return found, self._pattern.sub(" ", folded_text)


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file, for the default `DATABASE_URL`."""
    return URL.create("sqlite+aiosqlite", database=str(Path(path).absolute())).render_as_string()


def _engine_url(database_url: str) -> tuple[URL, Path | None]:
    """The async driver URL (SQLite opened read-only), and the SQLite file if it is one."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise UserInputError(f"DATABASE_URL is not a valid SQLAlchemy URL: {database_url!r}") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg"), None
    if backend == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise UserInputError(f"DATABASE_URL must name a SQLite file (sqlite+aiosqlite:///path): {database_url!r}")
        path = Path(database).absolute()
        query = {key: value for key, value in url.query.items() if key not in ("mode", "uri")}
        read_only = URL.create("sqlite+aiosqlite", database=path.as_uri(), query={**query, "mode": "ro", "uri": "true"})
        return read_only, path
    raise UserInputError(f"DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)")


def _seed_sqlite(path: Path, seed_file: Path) -> None:
    """Create the SQLite file from the seed script, atomically (a failed seed leaves no file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    script = seed_file.read_text(encoding="utf-8")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.seeding")
    temporary.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(temporary)) as connection:
            connection.executescript(script)
            connection.commit()
        os.replace(temporary, path)
    except sqlite3.Error as exc:
        temporary.unlink(missing_ok=True)
        raise UserInputError(f"{seed_file}: cannot seed {path}: {exc}") from None
    log.info("seeded %s from %s", path, seed_file)


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None), getattr(getattr(exc, "orig", None), "__cause__", None)):
        if state := getattr(candidate, "sqlstate", None):
            return str(state)
    return None


class DatabaseSource(Source[DatabaseParams]):
    """Kumo Audio's order and stock system: order status, product stock per store, store hours."""

    name = "database_query"
    description = (
        "Kumo Audio's order and stock database: the status of an online order by its order number "
        "(KA-YYYY-NNNNNN), how many units of a product each store has in stock, and the opening hours "
        "and closing days of the Shibuya, Osaka Umeda and Sapporo stores. Runs one named query."
    )
    labels = {"en": "our order and stock system", "ja": "注文・在庫システム"}  # noqa: RUF012 - constants
    examples = {  # noqa: RUF012
        "en": [
            "Where is my order KA-2026-000123?",
            "Has order KA-2026-000119 shipped yet?",
            "Is the Kumo Halo in stock in Shibuya?",
            "Do you have the KS-50 in stock?",
            "What are the opening hours of the Sapporo store?",
            "What time does the Umeda store close on Sunday?",
        ],
        "ja": [
            "注文番号 KA-2026-000123 の配送状況を教えて",
            "KA-2026-000127 はもう発送されましたか？",
            "渋谷店にクモ ハロの在庫はありますか？",
            "KS-50 の在庫はある？",
            "札幌店の営業時間は？",
            "梅田店は何時まで開いていますか？",
        ],
    }
    params_model: type[BaseModel] = DatabaseParams  # replaced per instance from the file

    def __init__(
        self,
        database_url: str,
        queries_file: Path,
        *,
        seed_file: Path | None = None,
        statement_timeout_ms: int = 1000,
        ttl_s: float = 60.0,
        timeout_s: float = 2.0,
        required_roles: tuple[str, ...] = (),
        pool_size: int = 2,
    ) -> None:
        super().__init__(ttl_s=ttl_s, timeout_s=timeout_s, required_roles=required_roles)
        if statement_timeout_ms <= 0:
            raise UserInputError(f"the statement timeout must be positive, not {statement_timeout_ms} ms")
        self.queries_file = Path(queries_file)
        self.queries: dict[str, QuerySpec] = _load_queries(self.queries_file)
        model = _build_params_model(self.queries)
        self.params_model = model  # the schema names this file's queries
        self._model = model
        self.statement_timeout_s = statement_timeout_ms / 1000
        self._url, self._sqlite_path = _engine_url(database_url)
        if seed_file is not None and self._sqlite_path is not None and not Path(seed_file).is_file():
            raise UserInputError(f"{seed_file}: the seed SQL file does not exist")
        self._seed_file = Path(seed_file) if seed_file is not None else None
        self._ready = self._sqlite_path is None
        self._ready_lock = asyncio.Lock()
        self._engine = self._create_engine(pool_size)
        self._build_vocabulary()

    # ---- engine ------------------------------------------------------------------------------

    def _create_engine(self, pool_size: int) -> AsyncEngine:
        common: dict[str, Any] = {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": self.timeout_s}
        if self._sqlite_path is None:
            connect_args = {
                "timeout": self.timeout_s,  # asyncpg's connect timeout
                "server_settings": {
                    "application_name": "voicerag-database-query",
                    "default_transaction_read_only": "on",
                },
            }
            return create_async_engine(self._url, connect_args=connect_args, pool_recycle=1800, **common)
        engine = create_async_engine(self._url, **common)

        @event.listens_for(engine.sync_engine, "connect")
        def _query_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only = ON")
            cursor.close()

        return engine

    async def _ensure_ready(self) -> None:
        """Seed the SQLite file on first use when it does not exist yet."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            path = self._sqlite_path
            if path is not None and not path.exists() and self._seed_file is not None:
                await asyncio.to_thread(_seed_sqlite, path, self._seed_file)
            self._ready = True

    async def aclose(self) -> None:
        await self._engine.dispose()

    # ---- running SQL -------------------------------------------------------------------------

    async def _execute(self, sql: str, arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run one statement with bound `arguments` in a read-only transaction under the statement
        timeout (capped by the turn's deadline). Rows come back JSON-friendly."""
        await self._ensure_ready()
        if self._sqlite_path is not None and not self._sqlite_path.is_file():
            # read-only: never created here; checked first, as a failed aiosqlite connect leaks a thread
            raise FetchError("unreachable", f"the SQLite database {self._sqlite_path} does not exist")
        budget = capped(self.statement_timeout_s)
        if budget <= 0:
            raise FetchError("timeout", "no time left in the turn for the query")
        connected = False
        try:
            async with asyncio.timeout(budget + _TIMEOUT_GRACE_S), self._engine.connect() as connection:
                connected = True
                try:
                    if self._sqlite_path is None:
                        rows = await self._postgres_read(connection, sql, arguments, budget)
                    else:
                        rows = await self._sqlite_read(connection, sql, arguments, budget)
                finally:
                    with contextlib.suppress(Exception):
                        await connection.rollback()
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError("timeout", f"the query did not finish within {budget:.3f} s") from None
        except DBAPIError as exc:
            raise self._classify(exc, connected) from None
        except (OSError, PoolTimeoutError) as exc:
            raise FetchError("unreachable", f"cannot connect to the database: {exc}") from None
        return [{key: _json_value(value) for key, value in row.items()} for row in rows]

    async def _postgres_read(
        self, connection: AsyncConnection, sql: str, arguments: Mapping[str, Any], budget: float
    ) -> list[dict[str, Any]]:
        await connection.execute(text("SET TRANSACTION READ ONLY"))
        await connection.execute(text(f"SET LOCAL statement_timeout = {max(1, round(budget * 1000))}"))
        result = await connection.execute(text(sql), dict(arguments))
        return [dict(row) for row in result.mappings()]

    async def _sqlite_read(
        self, connection: AsyncConnection, sql: str, arguments: Mapping[str, Any], budget: float
    ) -> list[dict[str, Any]]:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection  # aiosqlite.Connection
        assert driver is not None
        deadline = time.monotonic() + budget
        await driver.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            result = await connection.execute(text(sql), dict(arguments))
            return [dict(row) for row in result.mappings()]
        finally:
            await driver.set_progress_handler(None, 0)

    @staticmethod
    def _classify(exc: DBAPIError, connected: bool) -> FetchError:
        state = _sqlstate(exc)
        message = str(exc.orig if exc.orig is not None else exc).splitlines()[0]
        if state == "57014" or "interrupted" in message:
            return FetchError("timeout", f"the database cancelled the query: {message}")
        if state is not None and state.startswith("28"):
            return FetchError("auth", f"the database refused the credentials: {message}")
        if not connected or exc.connection_invalidated:
            return FetchError("unreachable", f"cannot connect to the database: {message}")
        return FetchError("server_error", f"the database refused the query: {message}")

    # ---- the Source contract -----------------------------------------------------------------

    def _validated(self, params: BaseModel | Mapping[str, Any]) -> DatabaseParams:
        data = params.model_dump() if isinstance(params, BaseModel) else dict(params)
        try:
            return self._model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'params'}: {error['msg']}" for error in exc.errors()
            )
            raise FetchError("bad_response", f"invalid database query parameters: {problems[:300]}") from None

    async def fetch(self, params: DatabaseParams, ctx: SourceContext) -> Fetched:
        checked = self._validated(params)  # again: params may come from an LLM or be built unchecked
        query = self.queries[checked.query]
        arguments = checked.arguments()
        rows = await self._execute(query.sql, arguments)
        summary = render_answer(query.answer, ctx.language, arguments, rows)
        return Fetched(data=rows, summary=summary)

    def cache_key(self, params: DatabaseParams, ctx: SourceContext) -> str:
        """A key for a caller-aware cache: per-user queries include the caller's identity."""
        checked = self._validated(params)
        key = f"{self.name}:{checked.query}:{json.dumps(checked.arguments(), sort_keys=True, ensure_ascii=False)}"
        if self.queries[checked.query].per_user:
            key += f":user={ctx.tenant or ''}/{ctx.user_id}"
        return key

    def query_ttl_s(self, query: str) -> float:
        return self.queries[query].ttl_s

    # ---- extraction (rules, no LLM) ----------------------------------------------------------

    def _build_vocabulary(self) -> None:
        def enum_param(query: str, name: str) -> EnumParam | None:
            spec = self.queries[query].params.get(name) if query in self.queries else None
            return spec if isinstance(spec, EnumParam) else None

        self._products = _Vocabulary(enum_param(STOCK_QUERY, "product_code"))
        self._stores = _Vocabulary(enum_param(STOCK_QUERY, "store") or enum_param(HOURS_QUERY, "store"))
        order = self.queries.get(ORDER_QUERY)
        self._orders_enabled = order is not None and "order_number" in order.params

    def _params(self, values: dict[str, Any]) -> DatabaseParams | None:
        try:
            return self._model.model_validate(values)
        except ValidationError:
            return None

    def _direct(self, question: str) -> DatabaseParams | None:
        """The query a question asks for on its own, without looking at earlier messages."""
        normalized = unicodedata.normalize("NFKC", question)
        if self._orders_enabled and (match := _ORDER_NUMBER.search(normalized.upper())):
            return self._params({"query": ORDER_QUERY, "order_number": f"KA-{match.group(1)}-{match.group(2)}"})
        folded = normalized.casefold()
        products, _ = self._products.find(folded)
        stores, _ = self._stores.find(folded)
        if products and STOCK_QUERY in self.queries and _STOCK_WORDS.search(folded):
            store = stores[0] if len(stores) == 1 else None
            return self._params({"query": STOCK_QUERY, "product_code": products[0], "store": store})
        if stores and HOURS_QUERY in self.queries and _HOURS_WORDS.search(folded):
            return self._params({"query": HOURS_QUERY, "store": stores[0]})
        return None

    def _follow_up(self, question: str, earlier: list[str], depth: int) -> DatabaseParams | None:
        """A follow-up ("And in Sapporo?", "札幌店は？"): the previous question's query, changed to what
        this one names. Only when the question names a store or product and asks nothing else."""
        if not earlier or depth > 3:
            return None
        folded = unicodedata.normalize("NFKC", question).casefold()
        products, rest = self._products.find(folded)
        stores, rest = self._stores.find(rest)
        if not products and not stores:
            return None
        if _FOLLOW_UP_FILLER.sub("", rest):  # something else is asked ("札幌店の住所は？")
            return None
        previous = self._direct(earlier[-1]) or self._follow_up(earlier[-1], earlier[:-1], depth + 1)
        if previous is None:
            return None
        values = previous.model_dump(exclude_none=True)
        if previous.query == STOCK_QUERY:
            if products:
                values["product_code"] = products[0]
            if stores:
                values["store"] = stores[0] if len(stores) == 1 else None
        elif previous.query == HOURS_QUERY and stores and not products:
            values["store"] = stores[0]
        else:
            return None
        return self._params(values)

    def extract(self, question: str, language: Language, earlier: list[str]) -> DatabaseParams | None:
        if len(question) > 2000:  # a spoken question is short; do not scan pasted documents
            return None
        return self._direct(question) or self._follow_up(question, earlier, 0)


def params_of(source: DatabaseSource, **values: Any) -> DatabaseParams:
    """Validated parameters for `source` (for callers and tests that name a query directly)."""
    return cast(DatabaseParams, source.params_model.model_validate(values))
