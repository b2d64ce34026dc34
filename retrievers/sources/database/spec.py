"""The shape of the database queries file (`data/database.yaml`), as pydantic models.

Only the shape is checked here (types, required keys, one field against another); what needs the
whole query (SQL, bound parameters, templates, find rules) is checked by `loader.py`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retrievers.language import Language
from retrievers.sources.base import CallerField

LANGUAGES: tuple[Language, ...] = ("en", "ja")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not silently ignored


# ---- parameters ------------------------------------------------------------------------------


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
    aliases: dict[str, str] = {}  # other spellings -> value; also how the values are found in questions


class IntegerParam(_Spec):
    type: Literal["integer"]
    description: str = ""
    required: bool = True
    minimum: int | None = None
    maximum: int | None = None


AnyParam = StringParam | EnumParam | IntegerParam
ParamSpec = Annotated[AnyParam, Field(discriminator="type")]


# ---- answers ---------------------------------------------------------------------------------


class DaysLabel(_Spec):
    """How a group of consecutive rows is named: one value, a pair, or a range."""

    column: str
    range: str = " to "
    pair: str = " and "


class LanguageAnswer(_Spec):
    text: str = "{items}"
    item: str | dict[str, str] = ""
    none: str | None = None  # required, except in a query bound to the caller (no row: the refusal)
    join: str = ", "
    days: DaysLabel | None = None


class AnswerSpec(_Spec):
    item_by: str | None = None  # a column whose value picks the item template
    group_by: list[str] = []  # consecutive rows equal on these columns become one item
    en: LanguageAnswer
    ja: LanguageAnswer

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for language in LANGUAGES:
            spec: LanguageAnswer = getattr(self, language)
            if isinstance(spec.item, dict) and not self.item_by:
                raise ValueError(f"{language}.item is a mapping, so item_by must name the column that picks one")
            if self.group_by and spec.days is None:
                raise ValueError(f"group_by is set, so {language}.days must say how a group of rows is named")
        return self


# ---- finding a query's arguments in a question (no LLM) ---------------------------------------


class ParamFind(_Spec):
    """How one parameter is found in a question. Enum parameters are found by their values and
    aliases; string and integer parameters by `regex`, the value being built by `value`."""

    regex: str | None = None  # searched in the NFKC-normalised question, ignoring case
    value: str | None = None  # from the regex groups: {0} the whole match, {1}, {2}... or {name}
    several: Literal["first", "omit"] = "first"  # when the question names several values


class FindSpec(_Spec):
    """When rules (without an LLM) pick this query, and where its arguments are in the question."""

    words: list[str] = []  # one must be heard (Latin: whole words; Japanese: anywhere); [] = none needed
    params: dict[str, ParamFind] = {}


class QuerySpec(_Spec):
    description: str
    sql: str
    params: dict[str, ParamSpec] = {}
    per_user: bool = False
    # :name in the SQL -> the caller's user_id or tenant, bound by the code, never by a question or a model
    caller: dict[str, CallerField] = {}
    withheld: dict[Language, str] | None = None  # what the refusal names ({what}): "order details"
    ttl_s: float = Field(60.0, ge=0)
    answer: AnswerSpec
    find: FindSpec | None = None  # absent: only the LLM router picks this query


# ---- the file --------------------------------------------------------------------------------


class DatabaseFile(_Spec):
    queries: dict[str, QuerySpec] = Field(min_length=1)  # in priority order for the rules
    description: str = Field(min_length=1)  # what the source answers, for the LLM router
    labels: dict[Language, str]  # how the source is named in a spoken sentence
    examples: dict[Language, list[str]]  # questions it answers, for the router

    @field_validator("labels", "examples")
    @classmethod
    def _both_languages(cls, value: dict[Language, object]) -> dict[Language, object]:
        if missing := [language for language in LANGUAGES if not value.get(language)]:
            raise ValueError(f"needs en and ja (missing {', '.join(missing)})")
        return value
