"""REST and GraphQL endpoints declared in configuration (`data/sources.yaml`), one source each.

No code per endpoint: a declaration names the URL template, method or GraphQL query, parameters
(each with a validation pattern, and how to find it in a question), auth, TTL, which fields of the
response to keep, and the sentence to say. The host of every URL is fixed by the declaration (only
path and query values are filled in, escaped), and the HTTP client only calls declared hosts and
follows no redirect to another origin: a source's credentials reach only the origins it declares.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlparse

import httpx
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from retrievers.http.auth import ApiKeyAuth, BearerAuth, OAuth2ClientCredentials
from retrievers.language import Language
from retrievers.sources.base import CallerField, CallerRequired, Fetched, Source, SourceContext
from retrievers.sources.keywords import KeywordMatcher
from retrievers.turn.failures import FetchError

if TYPE_CHECKING:
    from retrievers.http.client import ResilientHttp

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # an HTTP token
CallerBinding = Literal["caller.user_id", "caller.tenant"]


def _caller_field(binding: CallerBinding) -> CallerField:
    return "tenant" if binding == "caller.tenant" else "user_id"


class ParamSpec(BaseModel):
    """One parameter of a declared source."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["string", "integer", "number"] = "string"
    description: str = ""
    pattern: str | None = None  # the value must match it (whole value)
    find: str | None = None  # regex with one group: how to find the value in a question
    default: str | int | float | None = None
    # The caller's user id or tenant, never from the question or a model (`caller: true` = caller.user_id)
    from_: CallerBinding | None = Field(None, alias="from")
    caller: bool = False
    max_length: int = 200

    @property
    def bound_to(self) -> CallerField | None:
        """What of the caller fills this parameter, or None when the question or the router does."""
        if self.from_ is not None:
            return _caller_field(self.from_)
        return "user_id" if self.caller else None

    @field_validator("pattern", "find")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


class HeaderSpec(BaseModel):
    """A request header: the caller's identity (`from: caller.user_id`), or a fixed value (`${VAR}`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: CallerBinding | None = Field(None, alias="from")
    value: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> HeaderSpec:
        if (self.from_ is None) == (self.value is None):
            raise ValueError("give either from (caller.user_id or caller.tenant) or value")
        return self


class AuthSpec(BaseModel):
    """Credentials come from environment variables named here, never from the file itself."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["api_key", "bearer", "oauth2_client_credentials"]
    name: str = "X-API-Key"  # api_key: header or query parameter name
    location: Literal["header", "query"] = "header"
    value: str | None = None  # api_key / bearer (usually "${SOME_ENV_VAR}")
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None

    def build(self) -> httpx.Auth:
        if self.type == "api_key" and self.value:
            return ApiKeyAuth(self.name, self.value, self.location)
        if self.type == "bearer" and self.value:
            return BearerAuth(self.value)
        if self.type == "oauth2_client_credentials" and self.token_url and self.client_id and self.client_secret:
            return OAuth2ClientCredentials(self.token_url, self.client_id, self.client_secret, self.scope)
        raise ValueError(f"{self.type} auth is missing its credentials")


class DeclaredSpec(BaseModel):
    """What REST and GraphQL declarations share."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    description: str
    labels: dict[Language, str]
    examples: dict[Language, list[str]] = Field(default_factory=dict)
    keywords: dict[Language, list[str]] = Field(default_factory=dict)  # any of them makes the source apply
    url: str
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    headers: dict[str, HeaderSpec] = Field(default_factory=dict)
    auth: AuthSpec | None = None
    ttl_s: float = Field(300.0, ge=0)
    timeout_s: float = Field(1.5, gt=0, le=30)
    per_user: bool = False  # results depend on the caller: the caller's id is part of the cache key
    required_roles: list[str] = Field(default_factory=list)
    keep: dict[str, str] = Field(default_factory=dict)  # field name -> dot path in the response
    summary: dict[Language, str]  # template over the kept fields, e.g. "Your parcel is {status}."
    withheld: dict[Language, str] | None = None  # bound to the caller: what the refusal names (default: labels)

    @field_validator("labels", "summary")
    @classmethod
    def _both_languages(cls, value: dict[Language, str]) -> dict[Language, str]:
        missing = {"en", "ja"} - set(value)
        if missing:
            raise ValueError(f"needs en and ja (missing {', '.join(sorted(missing))})")
        return value

    @field_validator("url")
    @classmethod
    def _fixed_host(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if "{" in parsed.netloc:
            raise ValueError("the host cannot be a parameter")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, HeaderSpec]) -> dict[str, HeaderSpec]:
        if bad := [name for name in value if not _HEADER_NAME.match(name)]:
            raise ValueError(f"not a header name: {bad[0]!r}")
        return value

    @field_validator("withheld")
    @classmethod
    def _withheld_languages(cls, value: dict[Language, str] | None) -> dict[Language, str] | None:
        return None if value is None else cls._both_languages(value)

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or ""

    def caller_bindings(self) -> dict[str, CallerField]:
        """Parameters and headers (`header:Name`) filled from the caller's identity."""
        bound = {name: field for name, param in self.params.items() if (field := param.bound_to) is not None}
        bound |= {f"header:{name}": _caller_field(h.from_) for name, h in self.headers.items() if h.from_}
        return bound


class RestSpec(DeclaredSpec):
    method: Literal["GET", "POST"] = "GET"

    @model_validator(mode="after")
    def _placeholders_declared(self) -> RestSpec:
        unknown = set(_PLACEHOLDER.findall(self.url)) - set(self.params)
        if unknown:
            raise ValueError(f"url uses undeclared parameter(s) {', '.join(sorted(unknown))}")
        return self


class GraphQLSpec(DeclaredSpec):
    query: str  # the GraphQL document; its variables are the declared params
    data_path: str = "data"  # where `keep` paths start


def _params_model(spec: DeclaredSpec) -> type[BaseModel]:
    """A pydantic model of the declared parameters (for validation and the LLM tool schema)."""
    python = {"string": str, "integer": int, "number": float}
    fields: dict[str, Any] = {}
    for name, param in spec.params.items():
        if param.bound_to is not None:
            continue  # never asked of the model or the question
        constraints: dict[str, Any] = {"description": param.description}
        if param.type == "string":
            constraints["max_length"] = param.max_length
            if param.pattern:
                constraints["pattern"] = f"^(?:{param.pattern})$"
        default = param.default if param.default is not None else ...
        fields[name] = (python[param.type], Field(default, **constraints))
    return create_model(f"{spec.name}_params", **fields)


def _graphql_errors(body: Any) -> str | None:
    """GraphQL reports failures inside a 200 response: those are errors, and are not cached."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None
    first = errors[0] if isinstance(errors, list) else errors
    return f"GraphQL: {first.get('message', 'error') if isinstance(first, dict) else first}"


def dig(data: Any, path: str) -> Any:
    """The value at a dot path (`data.items.0.name`); None when absent."""
    for part in path.split(".") if path else []:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


class DeclaredSource(Source[BaseModel]):
    """A REST or GraphQL endpoint described by a `RestSpec` / `GraphQLSpec`."""

    def __init__(self, spec: RestSpec | GraphQLSpec, http: ResilientHttp | None) -> None:
        super().__init__(ttl_s=spec.ttl_s, timeout_s=spec.timeout_s, required_roles=tuple(spec.required_roles))
        self.spec = spec
        self.http = http
        self.name, self.description, self.labels, self.examples = (
            spec.name,
            spec.description,
            spec.labels,
            spec.examples,
        )
        self.params_model = _params_model(spec)
        self._keywords = KeywordMatcher(word for words in spec.keywords.values() for word in words)  # either language
        self._auth = spec.auth.build() if spec.auth else None
        self._bindings = spec.caller_bindings()

    def extract(self, question: str, language: Language, earlier: list[str]) -> BaseModel | None:
        normal = unicodedata.normalize("NFKC", question)
        values: dict[str, Any] = {}
        for name, param in self.spec.params.items():
            if param.bound_to is not None:
                continue
            match = re.search(param.find, normal, re.IGNORECASE) if param.find else None
            if match:
                values[name] = match.group(1)
        # Declared keywords must be heard ("KH-300" alone is not a question about its reviews);
        # without keywords, finding the parameters is enough.
        mentioned = self._keywords.heard_in(question) if self._keywords else bool(values)
        if not mentioned:
            return None
        try:
            return self.params_model.model_validate(values)
        except ValueError:  # a required value is missing or malformed: not this source's question
            return None

    def offered_to(self, ctx: SourceContext) -> type[BaseModel] | None:
        """Not offered to a caller without the identity it binds (an anonymous caller, no tenant)."""
        if not self.allowed_for(ctx) or any(ctx.caller(f) is None for f in self._bindings.values()):
            return None
        return self.params_model

    def _caller_values(self, ctx: SourceContext) -> dict[str, str]:
        """Bound names -> the caller's identity; `CallerRequired` (nothing is sent) when it is missing."""
        values = {name: ctx.caller(field) for name, field in self._bindings.items()}
        if any(value is None for value in values.values()):
            withheld = self.spec.withheld or self.labels
            raise CallerRequired(withheld[ctx.language])
        return {name: value for name, value in values.items() if value is not None}

    async def fetch(self, params: BaseModel, ctx: SourceContext) -> Fetched:
        if self.http is None:
            raise FetchError("unreachable", "no HTTP client configured")
        bound = self._caller_values(ctx)
        # The caller's values last: a forged parameter of the same name cannot replace them.
        values = {**params.model_dump(), **{n: v for n, v in bound.items() if not n.startswith("header:")}}
        headers = {name: spec.value for name, spec in self.spec.headers.items() if spec.value is not None}
        headers |= {n.removeprefix("header:"): v for n, v in bound.items() if n.startswith("header:")}
        response = await self._request(values, headers, ctx)
        root = dig(response.data, self.spec.data_path) if isinstance(self.spec, GraphQLSpec) else response.data
        kept = {field: dig(root, path) for field, path in self.spec.keep.items()} if self.spec.keep else root
        if isinstance(kept, dict) and self.spec.keep and all(v is None for v in kept.values()):
            raise FetchError("bad_response", "none of the kept fields were in the response")
        try:
            summary = self.spec.summary[ctx.language].format(**(kept if isinstance(kept, dict) else {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise FetchError("bad_response", f"summary template: {exc}") from None
        return Fetched(data=kept, summary=summary, cached=response.cached)

    async def _request(self, values: dict[str, Any], headers: dict[str, str], ctx: SourceContext) -> Any:
        assert self.http is not None
        # Results bound to the caller are cached per caller even when headers carry the binding.
        per_caller = self.spec.per_user or bool(self._bindings)
        common: dict[str, Any] = {
            "auth": self._auth,
            "headers": headers or None,
            "timeout_s": self.timeout_s,
            "cache_ttl_s": self.ttl_s,
            "cache_namespace": self.name,
            "identity": json.dumps([ctx.tenant, ctx.user_id]) if per_caller else None,
        }
        if isinstance(self.spec, GraphQLSpec):
            return await self.http.request_json(
                "POST",
                self.spec.url,
                json={"query": self.spec.query, "variables": values},
                cacheable=True,
                refuse=_graphql_errors,
                **common,
            )
        in_path = set(_PLACEHOLDER.findall(self.spec.url))
        url = _PLACEHOLDER.sub(lambda m: quote(str(values[m.group(1)]), safe=""), self.spec.url)
        rest = {k: v for k, v in values.items() if k not in in_path}
        if self.spec.method == "GET":
            return await self.http.request_json("GET", url, params=rest, **common)
        return await self.http.request_json("POST", url, json=rest, **common)
