"""What an external source is: a small class with a name, examples, a parameter model and `fetch`.

A source never decides how long the turn may wait or what to do when it fails: `run_source`
(below) applies the timeout and the turn's deadline, measures it, and turns every failure into a
`SourceResult` with a status, so no exception ever leaves a source into the graph.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic (Studio's schemas) needs it on Python < 3.12

from retrievers.language import Language
from retrievers.turn.deadline import remaining
from retrievers.turn.failures import FetchError

log = logging.getLogger(__name__)

SourceStatus = Literal["ok", "error", "timeout", "skipped"]
P = TypeVar("P", bound=BaseModel)


class SourceResult(TypedDict):
    """One source's outcome in a turn (JSON-friendly: it goes into the graph state and `--json`)."""

    source: str
    status: SourceStatus
    data: Any
    summary: str  # answer-ready, in the turn's language; says what failed when it failed
    # (withheld from this caller, `data["error"] == NEEDS_CALLER`: empty; the graph says the persona's sentence)
    elapsed_ms: float
    cached: bool


ANONYMOUS = "anonymous"  # the user id of a caller nobody vouched for
CallerField = Literal["user_id", "tenant"]  # what of the caller a source may bind (`from: caller.<field>`)


@dataclass(frozen=True)
class SourceContext:
    """Who is asking, for per-user results and permissions. The user id and tenant come from the
    front door (a LiveKit participant's attributes, `--user`), never from the question or a model."""

    user_id: str = ANONYMOUS
    roles: tuple[str, ...] = ()
    tenant: str | None = None
    language: Language = "en"

    def caller(self, field: CallerField) -> str | None:
        """The caller's user id or tenant, or None when the caller has none (anonymous)."""
        value = self.tenant if field == "tenant" else self.user_id
        return None if not value or value == ANONYMOUS else value


class CallerRequired(Exception):
    """A lookup bound to the caller's identity that this caller cannot have: they are anonymous, or
    the record is not theirs — deliberately indistinguishable, so nothing says whether it exists.
    `what` names the withheld information in the turn's language ("order details")."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True)
class Fetched:
    """What `fetch` returns on success: data as the API gave it, and a sentence to say."""

    data: Any
    summary: str
    cached: bool = False


class Source(ABC, Generic[P]):
    """An external system the graph can consult during a turn.

    Hand-written sources set the identity in the class body (`name = "weather"`); sources declared
    in configuration set it on the instance (`self.name = spec.name`)."""

    name: str
    description: str  # what it answers; used by the LLM router's tool description
    labels: dict[Language, str]  # how it is named in a spoken sentence ("the weather service")
    examples: dict[Language, list[str]]  # questions it answers (router examples)
    params_model: type[BaseModel]

    unavailable: str | None = None  # why it cannot be used (a secret is not set): answered, never called
    ttl_s: float = 300.0  # how long its results may be cached
    timeout_s: float = 2.0  # its own budget; the turn's deadline may cut it shorter
    required_roles: tuple[str, ...] = ()  # empty: anyone may use it

    def __init__(self, *, ttl_s: float = 300.0, timeout_s: float = 2.0, required_roles: tuple[str, ...] = ()) -> None:
        self.ttl_s, self.timeout_s, self.required_roles = ttl_s, timeout_s, tuple(required_roles)

    @abstractmethod
    def extract(self, question: str, language: Language, earlier: list[str]) -> P | None:
        """Parameters for this question without an LLM, or None when the source does not apply.
        `earlier` are the user's previous messages (oldest first), for follow-ups ("明日は？")."""

    @abstractmethod
    async def fetch(self, params: P, ctx: SourceContext) -> Fetched:
        """Get the data. Raise `FetchError` (or anything) on failure; `run_source` reports it."""

    def tool_schema(self) -> dict[str, Any]:
        """An OpenAI tool definition generated from the parameter model, for the LLM router."""
        return tool_definition(self.name, self.description, self.params_model)

    def allowed_for(self, ctx: SourceContext) -> bool:
        return not self.required_roles or bool(set(self.required_roles) & set(ctx.roles))

    def offered_to(self, ctx: SourceContext) -> type[BaseModel] | None:
        """The parameter model this caller may call the source with (the LLM router's tool, and
        the check of every call it returns), or None when the source is not offered to them.
        Sources bound to the caller's identity narrow it or withhold it from anonymous callers."""
        return self.params_model if self.allowed_for(ctx) else None

    def tool_schema_for(self, ctx: SourceContext) -> dict[str, Any] | None:
        """The OpenAI tool definition this caller is offered, or None."""
        model = self.offered_to(ctx)
        return None if model is None else tool_definition(self.name, self.description, model)

    async def start(self) -> None:  # most sources need nothing started
        """Start background work (a real-time subscription); called once before the first turn."""

    async def aclose(self) -> None:  # most sources hold nothing of their own
        """Release what the source holds (connections, subscriptions)."""


def tool_definition(name: str, description: str, model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAI tool definition (function calling) whose parameters are `model`'s JSON schema."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


UNAVAILABLE = "unavailable"  # `data["error"]` of a skipped result whose source is switched off
NEEDS_CALLER = "needs_verified_caller"  # `data["error"]` of a skipped result withheld from this caller

FAILED: dict[Language, str] = {
    "en": "I couldn't get {what} just now.",
    "ja": "{what}の情報を今取得できませんでした。",
}


async def run_source(source: Source[Any], params: BaseModel, ctx: SourceContext) -> SourceResult:
    """Fetch under the source's timeout and the turn's deadline; every outcome becomes a result."""
    started = time.perf_counter()

    def result(status: SourceStatus, data: Any, summary: str, cached: bool = False) -> SourceResult:
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        return SourceResult(
            source=source.name, status=status, data=data, summary=summary, elapsed_ms=elapsed, cached=cached
        )

    failed = FAILED[ctx.language].format(what=source.labels[ctx.language])
    if source.unavailable is not None:
        return result("skipped", {"error": UNAVAILABLE, "reason": source.unavailable}, failed)
    if not source.allowed_for(ctx):
        return result("skipped", None, failed)
    budget = min(source.timeout_s, remaining())
    if budget <= 0:
        return result("timeout", None, failed)
    try:
        async with asyncio.timeout(budget):
            fetched = await source.fetch(params, ctx)
    except CallerRequired as exc:  # the same outcome whether the record exists or not
        return result("skipped", {"error": NEEDS_CALLER, "what": exc.what}, "")
    except TimeoutError:
        log.info("source %s timed out after %.0f ms", source.name, budget * 1000)
        return result("timeout", None, failed)
    except FetchError as exc:
        log.info("source %s failed (%s): %s", source.name, exc.kind, exc)
        return result("timeout" if exc.is_timeout else "error", {"error": exc.kind}, failed)
    except Exception as exc:  # a bug in one source must not take the turn down
        log.warning("source %s raised %s: %s", source.name, type(exc).__name__, exc)
        return result("error", {"error": type(exc).__name__}, failed)
    return result("ok", fetched.data, fetched.summary, fetched.cached)
