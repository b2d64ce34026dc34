"""Reading and checking the database queries file (`DATABASE_QUERIES_FILE`).

Every mistake is a `UserInputError` naming the file, the query and the field. Messages never
quote the file's text (SQL, templates, YAML lines): they say where, and what is wrong.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from retrievers.config_files import read_yaml
from retrievers.errors import UserInputError
from retrievers.sources.database.extraction import value_template_problem
from retrievers.sources.database.spec import (
    LANGUAGES,
    AnyParam,
    DatabaseFile,
    EnumParam,
    LanguageAnswer,
    QuerySpec,
    StringParam,
)
from retrievers.sources.database.sql_checks import bind_names, sql_problem
from retrievers.sources.database.vocabulary import fold_text


def load_database_file(path: Path) -> DatabaseFile:
    """The checked contents of the queries file at `path`."""
    parsed = _validated(path, _read(path))
    for name, query in parsed.queries.items():
        where = f"{path}: query {name!r}"
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise UserInputError(f"{where}: a query name is lower-case letters, digits and _")
        _check_caller(where, query)
        _check_sql(where, query)
        _check_params(where, query)
        _check_answer(where, query)
        _check_find(where, query)
    _check_shared_params(path, parsed)
    return parsed


def _read(path: Path) -> dict[str, Any]:
    raw = read_yaml(path, what="database queries file", variable="DATABASE_QUERIES_FILE")
    if not isinstance(raw, dict) or not isinstance(raw.get("queries"), dict):
        raise UserInputError(f"{path}: expected a mapping with a 'queries' mapping of named queries")
    return raw


def _validated(path: Path, raw: dict[str, Any]) -> DatabaseFile:
    try:
        return DatabaseFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]  # pydantic messages name the expectation, never the input
        loc = [str(part) for part in first["loc"]]
        in_query = len(loc) > 1 and loc[0] == "queries"
        where = f"query {loc[1]!r}" if in_query else "the file"
        field = ".".join(loc[2:] if in_query else loc)
        message = first["msg"]
        if first["type"] == "union_tag_invalid":
            tag = first.get("ctx", {}).get("tag", "?")
            message = f"unknown parameter type {tag!r} (expected string, enum or integer)"
        raise UserInputError(f"{path}: {where}: {field + ': ' if field else ''}{message}") from None


def _check_sql(where: str, query: QuerySpec) -> None:
    if problem := sql_problem(query.sql):
        raise UserInputError(f"{where}: sql: must be a single read-only SELECT ({problem})")
    binds = bind_names(query.sql)
    if undeclared := sorted(binds - set(query.params) - set(query.caller)):
        raise UserInputError(f"{where}: sql: the SQL uses undeclared parameters: {', '.join(undeclared)}")
    if unused := sorted(set(query.params) - binds):
        raise UserInputError(f"{where}: params: declared parameters not used in the SQL: {', '.join(unused)}")
    if unused := sorted(set(query.caller) - binds):
        raise UserInputError(f"{where}: caller: bound to the caller but not used in the SQL: {', '.join(unused)}")


def _check_caller(where: str, query: QuerySpec) -> None:
    """A query bound to the caller: names apart from the parameters, cached per caller, and a
    `withheld` phrase for the refusal everyone else hears."""
    if not query.caller:
        if query.withheld is not None:
            raise UserInputError(f"{where}: withheld: only a query with a caller binding is withheld")
        return
    for name in query.caller:
        if name in query.params:
            raise UserInputError(f"{where}: caller.{name}: also a parameter; the caller's value cannot be given")
        if not name.isidentifier() or name.startswith("_") or name == "query":
            raise UserInputError(f"{where}: caller: {name!r} cannot be a bound name")
    if not query.per_user:
        raise UserInputError(f"{where}: per_user: a query bound to the caller must be per_user: true")
    if query.withheld is None or any(not query.withheld.get(language) for language in LANGUAGES):
        raise UserInputError(f"{where}: withheld: name what is withheld from other callers, in en and ja")


def _check_params(where: str, query: QuerySpec) -> None:
    for name, spec in query.params.items():
        if name == "query" or not name.isidentifier() or name.startswith("_"):
            raise UserInputError(f"{where}: params: {name!r} cannot be a parameter name")
        if isinstance(spec, StringParam) and spec.pattern is not None:
            try:
                re.compile(spec.pattern)
            except re.error as exc:
                raise UserInputError(f"{where}: params.{name}.pattern: bad pattern: {exc}") from None
        if isinstance(spec, EnumParam) and (wrong := [a for a, v in spec.aliases.items() if v not in spec.values]):
            raise UserInputError(f"{where}: params.{name}.aliases: {', '.join(wrong)}: not one of the values")


def _check_answer(where: str, query: QuerySpec) -> None:
    for language in LANGUAGES:
        answer: LanguageAnswer = getattr(query.answer, language)
        if query.caller and answer.none is not None:
            raise UserInputError(
                f"{where}: answer.{language}.none: a query bound to the caller says no more when no row is the "
                "caller's (the persona's needs_verified_caller sentence); remove it"
            )
        if not query.caller and answer.none is None:
            raise UserInputError(f"{where}: answer.{language}.none: field required")
        templates = {"text": answer.text, "none": answer.none or ""}
        items = answer.item if isinstance(answer.item, dict) else {"": answer.item}
        templates |= {f"item.{key}" if key else "item": template for key, template in items.items()}
        for field, template in templates.items():
            try:
                list(string.Formatter().parse(template))
            except ValueError as exc:
                raise UserInputError(f"{where}: answer.{language}.{field}: bad template: {exc}") from None


def _check_find(where: str, query: QuerySpec) -> None:
    """The find rules: declared parameters only, a regex where one is needed, groups that exist."""
    find = query.find
    if find is None:
        return
    if not find.words and not find.params:
        raise UserInputError(f"{where}: find: give words, params or both")
    if any(not fold_text(word).strip() for word in find.words):
        raise UserInputError(f"{where}: find.words: a word is empty")
    for name, rule in find.params.items():
        field = f"find.params.{name}"
        spec = query.params.get(name)
        if spec is None:
            raise UserInputError(f"{where}: {field}: not a parameter of this query (declare it under params)")
        if isinstance(spec, EnumParam):
            if rule.regex is not None or rule.value is not None:
                raise UserInputError(f"{where}: {field}: an enum is found by its values and aliases, not a regex")
            continue
        if rule.regex is None:
            raise UserInputError(f"{where}: {field}.regex: a {spec.type} parameter needs a regex to be found")
        try:
            pattern = re.compile(rule.regex)
        except re.error as exc:
            raise UserInputError(f"{where}: {field}.regex: bad regex: {exc}") from None
        if rule.value is not None and (problem := value_template_problem(rule.value, pattern)):
            raise UserInputError(f"{where}: {field}.value: {problem}")
    if missing := [name for name, spec in query.params.items() if spec.required and name not in find.params]:
        raise UserInputError(f"{where}: find.params: required parameters that must be found too: {', '.join(missing)}")


def _same_kind(a: AnyParam, b: AnyParam) -> bool:
    ignore = {"description", "required"}
    return a.model_dump(exclude=ignore) == b.model_dump(exclude=ignore)


def _check_shared_params(path: Path, parsed: DatabaseFile) -> None:
    """A parameter name used by several queries is one field of the parameter model: one kind."""
    seen: dict[str, tuple[str, AnyParam]] = {}
    for name, query in parsed.queries.items():
        for param_name, spec in query.params.items():
            if param_name in seen and not _same_kind(seen[param_name][1], spec):
                other = seen[param_name][0]
                raise UserInputError(
                    f"{path}: query {name!r}: params.{param_name}: differs from the one of query {other!r}"
                )
            seen.setdefault(param_name, (name, spec))
