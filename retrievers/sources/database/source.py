"""`DatabaseSource`: the glue between the graph's `Source` contract and the pieces of this package.

Everything company-specific — the queries, their answers, how they are found in a question, and
how the source is described and named — comes from the queries file; this class only wires it up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from retrievers.errors import UserInputError
from retrievers.http.cache import ResponseCache
from retrievers.language import Language
from retrievers.sources.base import CallerRequired, Fetched, Source, SourceContext
from retrievers.sources.database.answers import render_answer
from retrievers.sources.database.caching import query_cache_key
from retrievers.sources.database.connect import open_runner
from retrievers.sources.database.extraction import QueryRules
from retrievers.sources.database.loader import load_database_file
from retrievers.sources.database.params import DatabaseParams, build_params_model
from retrievers.sources.database.runner import CachePolicy, QueryRunner
from retrievers.sources.database.spec import QuerySpec
from retrievers.turn.failures import FetchError


class DatabaseSource(Source[DatabaseParams]):
    """Named, parameterised, read-only SQL queries declared in a file (`DATABASE_QUERIES_FILE`)."""

    name = "database_query"
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
        cache: ResponseCache | None = None,  # None: nothing is cached; else each query's ttl_s applies
    ) -> None:
        super().__init__(ttl_s=ttl_s, timeout_s=timeout_s, required_roles=required_roles)
        if statement_timeout_ms <= 0:
            raise UserInputError(f"the statement timeout must be positive, not {statement_timeout_ms} ms")
        self.queries_file = Path(queries_file)
        declared = load_database_file(self.queries_file)
        self.description = declared.description
        self.labels = dict(declared.labels)
        self.examples = {language: list(questions) for language, questions in declared.examples.items()}
        self.queries: dict[str, QuerySpec] = dict(declared.queries)
        self._model = build_params_model(self.queries)
        self.params_model = self._model  # the tool schema names this file's queries
        self._narrowed: dict[tuple[str, ...], type[DatabaseParams]] = {}  # parameter models of fewer queries
        self.statement_timeout_s = statement_timeout_ms / 1000
        self.runner: QueryRunner = open_runner(
            database_url,
            statement_timeout_s=self.statement_timeout_s,
            timeout_s=timeout_s,
            pool_size=pool_size,
            seed_file=seed_file,
            cache=cache,
        )
        self._rules = QueryRules(self.queries, self._model)

    def extract(self, question: str, language: Language, earlier: list[str]) -> DatabaseParams | None:
        return self._rules.extract(question, earlier)

    def offered_to(self, ctx: SourceContext) -> type[BaseModel] | None:
        """The queries this caller may run: those bound to the caller only when the caller has the
        identity they bind (an anonymous caller is offered none of them)."""
        if not self.allowed_for(ctx):
            return None
        names = tuple(name for name, query in self.queries.items() if _binds_available(query, ctx))
        if len(names) == len(self.queries):
            return self._model
        if not names:
            return None
        if names not in self._narrowed:
            self._narrowed[names] = build_params_model({name: self.queries[name] for name in names})
        return self._narrowed[names]

    async def fetch(self, params: DatabaseParams, ctx: SourceContext) -> Fetched:
        checked = self._validated(params)  # again: params may come from an LLM or be built unchecked
        query = self.queries[checked.query]
        arguments = checked.arguments()
        bound = _caller_values(query, ctx)  # before any I/O: an anonymous caller's query never runs
        caching = CachePolicy(self._cache_key(checked, ctx), query.ttl_s)
        result = await self.runner.run(query.sql, {**arguments, **bound}, caching=caching)
        if query.caller and not result.rows:  # not the caller's, or no such record: one refusal for both
            raise CallerRequired(_withheld(query, ctx))
        summary = render_answer(query.answer, ctx.language, arguments, result.rows)
        return Fetched(data=result.rows, summary=summary, cached=result.cached)

    def cache_key(self, params: DatabaseParams, ctx: SourceContext) -> str:
        """Where a result is cached: per-user queries include the caller's identity."""
        return self._cache_key(self._validated(params), ctx)

    def _cache_key(self, checked: DatabaseParams, ctx: SourceContext) -> str:
        query = self.queries[checked.query]
        identity = json.dumps([ctx.tenant, ctx.user_id]) if query.per_user else None
        return query_cache_key(self.name, checked.query, query.sql, checked.arguments(), identity)

    def query_ttl_s(self, query: str) -> float:
        return self.queries[query].ttl_s

    def _validated(self, params: BaseModel | Mapping[str, Any]) -> DatabaseParams:
        data = params.model_dump() if isinstance(params, BaseModel) else dict(params)
        try:
            return self._model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'params'}: {error['msg']}" for error in exc.errors()
            )
            raise FetchError("bad_response", f"invalid database query parameters: {problems[:300]}") from None

    async def aclose(self) -> None:
        await self.runner.aclose()


def _binds_available(query: QuerySpec, ctx: SourceContext) -> bool:
    return all(ctx.caller(field) is not None for field in query.caller.values())


def _withheld(query: QuerySpec, ctx: SourceContext) -> str:
    return (query.withheld or {}).get(ctx.language, "")


def _caller_values(query: QuerySpec, ctx: SourceContext) -> dict[str, str]:
    """The bound names of `query` that take the caller's identity; `CallerRequired` when the caller
    has no such identity."""
    values = {name: ctx.caller(field) for name, field in query.caller.items()}
    if any(value is None for value in values.values()):
        raise CallerRequired(_withheld(query, ctx))
    return {name: value for name, value in values.items() if value is not None}


def params_of(source: DatabaseSource, **values: Any) -> DatabaseParams:
    """Validated parameters for `source` (for callers and tests that name a query directly)."""
    return cast(DatabaseParams, source.params_model.model_validate(values))
