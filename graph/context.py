"""`Context`: who is asking and how, for one turn. Passed to every run (`graph.astream(...,
context=Context(...))`), never stored in the state; LangGraph Studio shows it as the run's context
form, with each field's description below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from retrievers.documents import Category
from retrievers.language import Language


@dataclass
class Context:
    """Per user and per turn: identity, language and options. Every field has a default: the
    least-privileged caller, with the configured options."""

    user_id: str = field(
        default="anonymous", metadata={"description": "The caller's id (per-caller results, caching, audit)."}
    )
    roles: list[str] = field(
        default_factory=list, metadata={"description": "The caller's roles, e.g. ['member']: sources may require one."}
    )
    tenant: str | None = field(default=None, metadata={"description": "The caller's tenant (organisation), if any."})
    language: Language | None = field(
        default=None, metadata={"description": "Answer in this language (ja or en); empty: the question's language."}
    )
    turn_id: str = field(default="", metadata={"description": "An id for this turn (logs, traces)."})
    deadline_ms: int | None = field(
        default=None, metadata={"description": "Lookup budget of the turn in ms; empty: TURN_DEADLINE_MS."}
    )
    router: Literal["rules", "llm"] | None = field(
        default=None, metadata={"description": "How the turn is routed: rules, or the chat model; empty: ROUTER."}
    )
    grader: Literal["score", "llm"] | None = field(
        default=None, metadata={"description": "How documents are graded: score, or the chat model; empty: GRADER."}
    )
    top_k: int | None = field(default=None, metadata={"description": "Documents retrieved; empty: TOP_K."})
    category: Category | None = field(
        default=None, metadata={"description": "Search only this category of documents (product, support, general)."}
    )
