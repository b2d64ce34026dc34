"""`Context`: who is asking and how, for one turn. Passed to every run (`graph.astream(...,
context=Context(...))` or, from LangGraph Studio and the API, a JSON object), never stored in the
state. Studio shows it as the run's context form, with each field's description below.

A pydantic dataclass: a context from outside (Studio, the API) is validated when the run starts, so
a wrong value fails with one message naming the field instead of breaking a node half-way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass

from retrievers.documents import Category
from retrievers.language import Language


def _comma_separated(value: object) -> object:
    """Roles may come as "member,staff" (a token attribute, a CLI flag) or as a list."""
    if isinstance(value, str):
        return [role.strip() for role in value.split(",") if role.strip()]
    return value


@dataclass(config=ConfigDict(extra="forbid"))
class Context:
    """Per user and per turn: identity, language and options. Every field has a default: the
    least-privileged caller, with the configured options."""

    user_id: str = Field(default="anonymous", description="The caller's id (per-caller results, caching, audit).")
    roles: Annotated[list[str], BeforeValidator(_comma_separated)] = Field(
        default_factory=list, description="The caller's roles, e.g. ['member']: sources may require one."
    )
    tenant: str | None = Field(default=None, description="The caller's tenant (organisation), if any.")
    language: Language | None = Field(
        default=None, description="Answer in this language (ja or en); empty: the question's language."
    )
    turn_id: str = Field(default="", description="An id for this turn (logs, traces).")
    session_id: str = Field(
        default="", description="The conversation this turn belongs to (a LiveKit room, a chat session)."
    )
    deadline_ms: int | None = Field(
        default=None, ge=100, le=60_000, description="Lookup budget of the turn in ms; empty: TURN_DEADLINE_MS."
    )
    router: Literal["rules", "llm"] | None = Field(
        default=None, description="How the turn is routed: rules, or the chat model; empty: ROUTER."
    )
    grader: Literal["score", "llm"] | None = Field(
        default=None, description="How documents are graded: score, or the chat model; empty: GRADER."
    )
    top_k: int | None = Field(default=None, ge=1, le=50, description="Documents retrieved; empty: TOP_K.")
    category: Category | None = Field(
        default=None, description="Search only this category of documents (product, support, general)."
    )
    shares_lookups: bool = Field(
        default=False,
        description="Runs of the same question in this session share their lookups (voice: LiveKit may start a "
        "turn's run early and restart it; graph/lookup_reuse.py).",
    )
