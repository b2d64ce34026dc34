"""Picking a named query and its arguments from a question by rules, without an LLM.

The rules are data: each query's `find` block in the queries file (see the file's header). The
first query, in file order, whose words are heard and whose required parameters are found wins.
A follow-up that only names other values of enum parameters ("and in <place>?", "<place>は？") reruns
the previous question's query with those values, when that query takes every one of them.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from retrievers.follow_ups import only_filler
from retrievers.language import has_japanese
from retrievers.sources.database.params import DatabaseParams
from retrievers.sources.database.spec import AnyParam, EnumParam, IntegerParam, ParamFind, QuerySpec
from retrievers.sources.database.vocabulary import Vocabulary, fold_text

MAX_QUESTION_CHARS = 2000  # a spoken question is short; do not scan pasted documents
MAX_FOLLOW_UP_DEPTH = 3  # how far back a chain of follow-ups is followed


def value_template_problem(template: str, pattern: re.Pattern[str]) -> str | None:
    """Why `template` cannot be filled from `pattern`'s groups, or None when it can."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"bad template: {exc}"
    for name in fields:
        if name.isdigit() and int(name) > pattern.groups:
            return f"the regex has no group {name} (it has {pattern.groups})"
        if not name.isdigit() and name not in pattern.groupindex:
            return f"the regex has no group named {name!r}" if name else "number the groups: {1}, {2}..."
    return None


def _words_pattern(words: list[str]) -> re.Pattern[str] | None:
    """Latin words match whole words only ("open" not in "opener"); Japanese anywhere."""
    pieces = []
    for word in words:
        folded = re.escape(fold_text(word).strip())
        pieces.append(folded if has_japanese(word) else rf"(?<!\w){folded}(?!\w)")
    return re.compile("|".join(pieces)) if pieces else None


@dataclass
class _Heard:
    """One question, normalised once: for regexes, for words, and the enum values it names."""

    normal: str  # NFKC
    folded: str  # NFKC + case-folded
    mentions: dict[str, list[str]] = field(default_factory=dict)  # enum parameter -> values, in order
    rest: str = ""  # `folded` with every mention blanked: what else the question says


@dataclass(frozen=True)
class _ParamRule:
    name: str
    several: str  # "first" or "omit"
    regex: re.Pattern[str] | None  # None: an enum, found by its vocabulary
    value: str
    integer: bool

    def found(self, heard: _Heard) -> list[str | int]:
        """The distinct values the question gives this parameter, in order."""
        if self.regex is None:
            return list(heard.mentions.get(self.name, []))
        values: list[str | int] = []
        for match in self.regex.finditer(heard.normal):
            groups = [match.group(0), *(group or "" for group in match.groups())]
            named = {key: value or "" for key, value in match.groupdict().items()}
            text = self.value.format(*groups, **named)
            value: str | int = text
            if self.integer:
                if not re.fullmatch(r"[+-]?[0-9]{1,18}", text.strip()):
                    continue
                value = int(text)
            if value not in values:
                values.append(value)
        return values


@dataclass(frozen=True)
class _QueryRule:
    name: str
    words: re.Pattern[str] | None
    params: dict[str, _ParamRule]
    required: frozenset[str]

    def arguments(self, heard: _Heard) -> dict[str, Any] | None:
        """The arguments when the question asks this query, else None."""
        if self.words is not None and not self.words.search(heard.folded):
            return None
        values: dict[str, Any] = {}
        for rule in self.params.values():
            found = rule.found(heard)
            if found and not (len(found) > 1 and rule.several == "omit"):
                values[rule.name] = found[0]
        if not self.required <= set(values) or (self.words is None and not values):
            return None
        return values


def _param_rule(name: str, spec: AnyParam, rule: ParamFind) -> _ParamRule:
    regex = None if isinstance(spec, EnumParam) else re.compile(rule.regex or "", re.IGNORECASE)
    return _ParamRule(name, rule.several, regex, rule.value or "{0}", isinstance(spec, IntegerParam))


class QueryRules:
    """The `find` rules of every query, compiled once when the source is built."""

    def __init__(self, queries: Mapping[str, QuerySpec], model: type[DatabaseParams]) -> None:
        self._model = model
        self._rules: dict[str, _QueryRule] = {}
        self._vocabularies: dict[str, Vocabulary] = {}  # enum parameters found by rules, first seen first
        for query_name, query in queries.items():
            if query.find is None:
                continue
            params = {name: _param_rule(name, query.params[name], rule) for name, rule in query.find.params.items()}
            required = frozenset(name for name, spec in query.params.items() if spec.required)
            self._rules[query_name] = _QueryRule(query_name, _words_pattern(query.find.words), params, required)
            for name in query.find.params:
                spec = query.params[name]
                if isinstance(spec, EnumParam) and name not in self._vocabularies:
                    self._vocabularies[name] = Vocabulary(spec)

    def extract(self, question: str, earlier: list[str]) -> DatabaseParams | None:
        if len(question) > MAX_QUESTION_CHARS:
            return None
        return self._direct(question) or self._follow_up(question, earlier, 0)

    def _hear(self, question: str) -> _Heard:
        normal = unicodedata.normalize("NFKC", question)
        heard = _Heard(normal, normal.casefold())
        heard.rest = heard.folded
        for name, vocabulary in self._vocabularies.items():
            heard.mentions[name], heard.rest = vocabulary.find(heard.rest)
        return heard

    def _params(self, values: dict[str, Any]) -> DatabaseParams | None:
        try:
            return self._model.model_validate(values)
        except ValidationError:
            return None

    def _direct(self, question: str) -> DatabaseParams | None:
        """The query a question asks for on its own; the first matching rule decides."""
        heard = self._hear(question)
        for rule in self._rules.values():
            if (values := rule.arguments(heard)) is not None:
                return self._params({"query": rule.name, **values})
        return None

    def _follow_up(self, question: str, earlier: list[str], depth: int) -> DatabaseParams | None:
        """The previous question's query, changed to the enum values this one names, when it names
        nothing else and the query takes each of them."""
        if not earlier or depth > MAX_FOLLOW_UP_DEPTH:
            return None
        heard = self._hear(question)
        mentioned = {name: values for name, values in heard.mentions.items() if values}
        if not mentioned or not only_filler(heard.rest):
            return None
        previous = self._direct(earlier[-1]) or self._follow_up(earlier[-1], earlier[:-1], depth + 1)
        if previous is None:
            return None
        rule = self._rules[previous.query]
        values = previous.model_dump(exclude_none=True)
        for name, found in mentioned.items():
            if name not in rule.params:
                return None  # e.g. a product named after a query that takes no product
            if len(found) > 1 and rule.params[name].several == "omit":
                values.pop(name, None)
            else:
                values[name] = found[0]
        return self._params(values)
