"""What flows through the graph: `State` (one run), and the narrower `InputState` / `OutputState`
that LangGraph Studio shows as the graph's input and output. Who is asking is `graph/context.py`.

State values are plain JSON-friendly data so the same run can be shown in LangGraph Studio,
printed by `voicerag ask --json` and traced in LangSmith.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # Studio reads the schemas of these on Python < 3.12

from retrievers.knowledge_base.hits import SearchHit
from retrievers.language import Language
from retrievers.sources.base import SourceResult

RouteKind = Literal["lookup", "small_talk", "refused"]  # refused: no lookup (retrievers/turn/admission.py)


class SourceCall(TypedDict):
    source: str  # a name in the source registry
    params: dict[str, Any]  # the source's parameter model, as JSON


class Route(TypedDict):
    kind: RouteKind
    sources: list[str]  # names of the sources to consult, e.g. ["knowledge_base", "weather"]
    category: str | None  # knowledge-base category to search in, when the question names one
    reason: str  # how the decision was made: "rules", "embedding", "llm"; refused: "rate_limited", "question_too_long"
    calls: NotRequired[list[SourceCall]]  # the external sources to call, with their parameters


# needs_caller: withheld from this caller (a lookup bound to an identity they do not have)
ProblemKind = Literal["unreachable", "timeout", "unavailable", "needs_caller"]


class Problem(TypedDict):
    """A lookup of this turn that gave nothing, and why: the answer says so, truthfully ("that took
    too long" is not "unreachable"; a source switched off is "not available")."""

    source: str  # "knowledge_base" or a source name
    kind: ProblemKind
    what: NotRequired[str]  # needs_caller: what was withheld ("order details"), in the turn's language


def merge_timings(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: nodes add their own keys without overwriting each other's (parallel nodes write in
    the same step). A new turn starts afresh with `Overwrite` (route_query), as checkpointed
    threads keep the state of earlier turns."""
    return {**(left or {}), **(right or {})}


class InputState(TypedDict):
    """What a run takes: the conversation so far (its last user message is the question), or
    just a `question`. Studio's input form shows these two."""

    messages: NotRequired[Annotated[list[AnyMessage], add_messages]]
    question: NotRequired[str]  # this turn's question; taken from the last human message if absent


class OutputState(InputState):
    """What a run gives back: the answer and how it was found."""

    language: NotRequired[Language]
    route: NotRequired[Route]
    documents: NotRequired[list[SearchHit]]  # what retrieval returned
    graded: NotRequired[list[SearchHit]]  # what the answer may use
    api_results: NotRequired[list[SourceResult]]  # one per external source called this turn
    problems: NotRequired[Annotated[list[Problem], operator.add]]  # lookups that gave nothing, and why
    answer: NotRequired[str]
    degraded: NotRequired[bool]  # the answer is not the full one: a fallback, or something failed
    keyword_only: NotRequired[bool]  # retrieval ranked by keywords alone: the query vector was late
    timings_ms: NotRequired[Annotated[dict[str, Any], merge_timings]]


class State(OutputState):
    """One run of the graph (one user turn): the output, and what the nodes pass each other."""

    held_back: NotRequired[str]  # the rest of the answer, offered ("Want the details?"); a yes reads it
    search_query: NotRequired[str]  # the question made standalone (follow-ups carry the previous one)
    started_at: NotRequired[float]  # time.monotonic() when the turn entered the graph
    deadline_at: NotRequired[float]  # time.monotonic() by which lookups must be done (retrievers.turn.deadline)
