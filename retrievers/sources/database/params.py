"""The parameters of `database_query`: a pydantic model generated from the queries file.

`query` becomes an enum of the query names and every declared argument a validated optional
field, so what the LLM router or the rules give is checked before any SQL runs: patterns match
the whole value, enum spellings resolve to the declared value, huge strings are refused early.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, Self, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    model_validator,
)

from retrievers.sources.database.spec import AnyParam, EnumParam, QuerySpec, StringParam
from retrievers.sources.database.vocabulary import fold


class DatabaseParams(BaseModel):
    """Which named query to run, and its arguments. Each source builds a subclass from its file."""

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
        if not pattern.fullmatch(value):  # fullmatch: no "$ before a trailing newline" gap
            raise ValueError(f"does not match {pattern.pattern}")
        return value

    return check


def _enum_resolver(spec: EnumParam) -> Callable[[Any], Any]:
    table = {fold(value): value for value in spec.values}
    table.update({fold(alias): value for alias, value in spec.aliases.items()})

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and len(value) <= 200:
            return table.get(fold(value), value)
        return value

    return resolve


def _field_type(spec: AnyParam) -> Any:
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


def _describe(name: str, query: QuerySpec) -> str:
    arguments = [param if spec.required else f"optional {param}" for param, spec in query.params.items()]
    return f"{name}: {query.description}" + (f" (arguments: {', '.join(arguments)})" if arguments else "")


def build_params_model(queries: Mapping[str, QuerySpec]) -> type[DatabaseParams]:
    """The parameter model of these queries (a parameter shared by queries is one field)."""
    specs: dict[str, AnyParam] = {}
    used_by: dict[str, list[str]] = {}
    for query_name, query in queries.items():
        for name, spec in query.params.items():
            specs.setdefault(name, spec)
            used_by.setdefault(name, []).append(query_name)

    fields: dict[str, Any] = {
        "query": (
            Literal[tuple(queries)],
            Field(description="Which named query to run. " + " | ".join(_describe(n, q) for n, q in queries.items())),
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
