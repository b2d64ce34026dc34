"""The LLM router's tools: what one caller is offered, and the check of every call the model returns.

The router is the only model whose output acts (it picks the lookups), so nothing it says is
trusted: it is offered only the sources this caller may use (`Source.offered_to`: roles, and
sources bound to the caller's identity only for a caller who has it), plus the knowledge base; and
each call it returns runs only if it names an offered tool and its arguments pass that tool's
parameter model. Anything else is dropped and logged, masked. A model talked into calling a
forbidden tool — by a question, or anything else — gets nothing from it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graph.services import Services
from graph.state import SourceCall
from retrievers.documents import CATEGORIES, Category
from retrievers.language import Language
from retrievers.masking import mask, mask_value
from retrievers.sources.base import SourceContext

log = logging.getLogger(__name__)

KNOWLEDGE_BASE_TOOL = "search_knowledge_base"
MAX_SOURCE_CALLS = 4  # a voice turn waits for the slowest lookup: a model asking for more is cut
SEARCH_QUERY_MAX_CHARS = 1000  # as route.py cuts a question's search query


class KnowledgeBaseArgs(BaseModel):
    """The knowledge-base tool's arguments: what to search, and optionally where."""

    model_config = ConfigDict(extra="ignore")  # a model adding a field of its own is harmless here

    query: str = Field(min_length=1, max_length=SEARCH_QUERY_MAX_CHARS, description="the question, standalone")
    category: Category | None = Field(None, description="search only this category")


def knowledge_base_tool(description: str) -> dict[str, Any]:
    """The knowledge base as a tool for the LLM router, listed beside the sources' own tools."""
    return {
        "type": "function",
        "function": {
            "name": KNOWLEDGE_BASE_TOOL,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "the user's question, rewritten to stand alone"},
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                },
                "required": ["query"],
            },
        },
    }


def offered_tools(services: Services, caller: SourceContext) -> list[dict[str, Any]]:
    """The tools this caller's router may call: the knowledge base and the sources they may use."""
    return [knowledge_base_tool(services.persona.knowledge_base), *services.sources.tool_schemas(caller)]


@dataclass
class CheckedCalls:
    """What survives the check of the router's tool calls."""

    search: KnowledgeBaseArgs | None = None  # the knowledge-base call (the first valid one)
    calls: list[SourceCall] = field(default_factory=list)  # permitted source calls, validated
    made: int = 0  # tool calls the model made, kept or not (none: small talk)


def _drop(name: str, args: Any, why: str) -> None:
    shown = json.dumps(mask_value(args), ensure_ascii=False, default=str)[:300]
    log.warning("LLM router: dropped a call to %s(%s): %s", mask(str(name))[:80], shown, why)


def check_tool_calls(services: Services, reply: AIMessage, caller: SourceContext) -> CheckedCalls:
    """Keep the calls that name a tool offered to `caller`, with arguments its parameter model accepts."""
    checked = CheckedCalls(made=len(reply.tool_calls) + len(reply.invalid_tool_calls))
    for bad in reply.invalid_tool_calls:  # arguments that were not JSON
        _drop(str(bad.get("name")), bad.get("args"), "arguments are not a JSON object")
    for call in reply.tool_calls:
        name, args = call["name"], call["args"]
        if name == KNOWLEDGE_BASE_TOOL:
            try:
                search = KnowledgeBaseArgs.model_validate(args)
            except ValidationError as exc:
                _drop(name, args, f"invalid arguments ({exc.error_count()} errors)")
                continue
            checked.search = checked.search or search
            continue
        source = services.sources.get(name)
        model = source.offered_to(caller) if source is not None else None
        if model is None:
            _drop(name, args, "not a tool offered to this caller")
            continue
        try:
            params = model.model_validate(args)
        except ValidationError as exc:
            _drop(name, args, f"invalid arguments ({exc.error_count()} errors)")
            continue
        source_call = SourceCall(source=name, params=params.model_dump(mode="json"))
        if source_call in checked.calls:
            continue
        if len(checked.calls) >= MAX_SOURCE_CALLS:
            _drop(name, args, f"more than {MAX_SOURCE_CALLS} source calls")
            continue
        checked.calls.append(source_call)
    return checked


def withheld_calls(
    services: Services, caller: SourceContext, question: str, language: Language, earlier: list[str]
) -> list[SourceCall]:
    """What the rules would look up for this question that the caller was not offered because it is
    bound to an identity they lack (an anonymous caller's order number): called all the same, it
    runs nothing and the caller hears why (needs_verified_caller), as on the rules path."""
    withheld = []
    for source, params in services.sources.select(question, language, earlier):
        if not source.allowed_for(caller):
            continue  # a role the caller lacks: not consulted, as on the rules path
        model = source.offered_to(caller)
        try:
            offered = model is not None and model.model_validate(params.model_dump()) is not None
        except ValidationError:
            offered = False
        if not offered:
            withheld.append(SourceCall(source=source.name, params=params.model_dump(mode="json")))
    return withheld
