"""route_query: decide what a turn needs, by default without calling an LLM.

Rules first (greetings, thanks, goodbyes in both languages, anchored to the whole utterance so
"hi, what's the warranty?" is still a lookup), then embedding similarity to example utterances
for short turns the rules do not know. The query vector computed here is cached by `Embeddings`,
so retrieval does not embed the question again. An LLM router is an option (`Context.router`);
its tokens are never streamed (tag `nostream`) and any failure falls back to the rules.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
import weakref
from typing import cast

import numpy as np
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import Context
from graph.lookup_reuse import reuse_or_fetch
from graph.nodes.call_apis import source_context
from graph.nodes.common import NOSTREAM, Node, describe, elapsed_ms
from graph.nodes.router_tools import check_tool_calls, offered_tools, withheld_calls
from graph.nodes.small_talk import small_talk_kind
from graph.prompts import ROUTER_SYSTEM
from graph.services import Services
from graph.state import Route, SourceCall, State
from retrievers.embeddings import Embeddings
from retrievers.follow_ups import is_follow_up
from retrievers.language import Language, detect_language
from retrievers.masking import mask
from retrievers.sources.base import SourceContext
from retrievers.turn.reuse import normalised

log = logging.getLogger(__name__)

# Example utterances for the embedding router (short turns only); lookups are the default.
SMALL_TALK_EXAMPLES = [
    "hello there",
    "good evening",
    "thanks a lot",
    "that's all, thank you",
    "bye for now",
    "how are you",
    "nice talking to you",
    "ok great",
    "you're helpful",
    "こんにちは",
    "ありがとうございました",
    "またよろしくお願いします",
    "お元気ですか",
    "よい一日を",
    "わかりました",
    "助かります",
    "さようなら",
    "いい天気ですね",
    "おつかれさまです",
]
LOOKUP_EXAMPLES = [
    "how much does it cost",
    "what is the warranty",
    "when are you open",
    "how do I return an item",
    "my order has not arrived",
    "how do I reset my headphones",
    "what is the battery life",
    "do you ship to Okinawa",
    "what payment methods do you accept",
    "is it in stock",
    "値段はいくらですか",
    "保証期間は",
    "営業時間を教えて",
    "返品したい",
    "注文が届かない",
    "リセット方法",
    "電池はどのくらい持ちますか",
    "送料は",
    "支払い方法は",
    "在庫はありますか",
]
EMBEDDING_ROUTE_MAX_CHARS = 40
_QUESTION = re.compile(
    r"[?？]|\b(who|what|when|where|why|how|which|can|do|does|is|are)\b|誰|何|いつ|どこ|なぜ|どう(?!も)|か$"
)
EMBEDDING_MARGIN = 0.04
# What is searched of a question: its topic is in its first sentences, and a query embedding costs
# time per character (measured: a 5,000-character question alone outran the turn's 1.5 s deadline).
SEARCH_QUERY_MAX_CHARS = 1000
_LATIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9]")  # product names and codes in any text


def last_human_text(messages: list[AnyMessage]) -> tuple[str, list[str]]:
    """The last user message and the user messages before it (oldest first)."""
    texts = [str(m.text) for m in messages if isinstance(m, HumanMessage) and m.text.strip()]
    return (texts[-1], texts[:-1]) if texts else ("", [])


def standalone_query(question: str, earlier: list[str]) -> str:
    """The question made standalone: a short or elliptic follow-up carries the previous question.
    Across languages ("KH-300の保証は？" then "And the price?") only the previous question's names and
    codes are carried: the other language's words would pull its documents ahead of the caller's."""
    if not earlier or not is_follow_up(question):
        return question
    previous = earlier[-1]
    if detect_language(previous) != detect_language(question):
        names = " ".join(_LATIN_NAME.findall(previous))
        return f"{names} {question}" if names else f"{previous} {question}"
    return f"{previous} {question}"


# Held weakly: a process that builds many `Services` (tests, notebooks) must not keep every model alive.
_EXAMPLE_VECTORS: weakref.WeakKeyDictionary[Embeddings, tuple[np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


def example_vectors(embeddings: Embeddings) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the small-talk and lookup examples, computed once per model."""
    vectors = _EXAMPLE_VECTORS.get(embeddings)
    if vectors is None:
        vectors = embeddings.model.queries(SMALL_TALK_EXAMPLES), embeddings.model.queries(LOOKUP_EXAMPLES)
        _EXAMPLE_VECTORS[embeddings] = vectors
    return vectors


async def looks_like_small_talk(services: Services, question: str) -> bool:
    """A short turn, not a question, whose nearest example utterance is small talk by a clear
    margin. Questions never go this way ("Who wrote Hamlet?" is near "how are you" for the
    models, but deserves a truthful "I don't know"); the rules catch "how are you?" itself."""
    if len(question) > EMBEDDING_ROUTE_MAX_CHARS or _QUESTION.search(question.lower()):
        return False
    small, lookup = await asyncio.to_thread(example_vectors, services.embeddings)
    vector = await services.embeddings.aembed_query(question)
    return float((small @ vector).max()) >= float((lookup @ vector).max()) + EMBEDDING_MARGIN


def make_route_query(services: Services) -> Node:
    async def route_query(state: State, runtime: Runtime[Context]) -> State:
        """Find the question, its language and standalone form; choose small talk or lookup."""
        started = time.perf_counter()
        turn_started = time.monotonic()
        ctx = runtime.context or Context()
        question, earlier = last_human_text(state.get("messages", []))
        # The new message wins: in a checkpointed thread `question` is still the previous turn's.
        question = (question or state.get("question") or "").strip()
        language: Language = ctx.language or detect_language(question)
        search_query = standalone_query(question, earlier)[:SEARCH_QUERY_MAX_CHARS]
        route: Route | None = None
        # Too long, or over a rate limit: refused before any lookup or model (retrievers/turn/admission.py).
        if services.admission is not None:
            refusal = await _shared_admission(services, ctx, question, earlier)
            route = Route(kind="refused", sources=[], category=None, reason=refusal) if refusal else None
        if route is None:
            route, search_query = await _shared_route(services, ctx, question, earlier, search_query, language)
        if route["kind"] == "lookup" and ctx.category and not route["category"]:
            route["category"] = ctx.category
        update = {
            "question": question,
            "language": language,
            "search_query": search_query,
            "route": route,
            # A checkpointed thread keeps the last turn's values: this turn starts from nothing
            # (`Overwrite` replaces what the reducers of problems and timings would merge).
            "documents": [],
            "graded": [],
            "api_results": [],
            "problems": Overwrite([]),
            "degraded": False,
            "keyword_only": False,
            "started_at": turn_started,
            "deadline_at": turn_started + (ctx.deadline_ms or services.options.deadline_ms) / 1000,
            "timings_ms": Overwrite({"route": elapsed_ms(started)}),
        }
        return cast(State, update)

    return route_query


async def _shared_admission(services: Services, ctx: Context, question: str, earlier: list[str]) -> str | None:
    """The rate limit's verdict, or an earlier run's for the same question in the call: LiveKit's
    restarted speculative run is one turn of the caller's, not two (graph/lookup_reuse.py)."""
    admission = services.admission
    assert admission is not None

    async def admit() -> str | None:
        return await admission.refusal(question, user_id=ctx.user_id, session_id=ctx.session_id, tenant=ctx.tenant)

    key = ("admission", normalised(question), tuple(normalised(text) for text in earlier[-4:]))
    refusal, _ = await reuse_or_fetch(services, ctx, key, admit)
    return refusal


async def _shared_route(
    services: Services, ctx: Context, question: str, earlier: list[str], search_query: str, language: Language
) -> tuple[Route, str]:
    """The route, or an earlier run's for the same question and conversation (a speculative run's:
    graph/lookup_reuse.py), so the LLM router is asked once per question, not once per run."""
    router = ctx.router or services.options.router

    async def decide() -> tuple[Route, str]:
        route, query = None, search_query
        if router == "llm":
            caller = source_context(ctx, language)
            route, query = await _llm_route(services, question, earlier, search_query, caller, language)
        if route is None:
            route = await _rules_route(services, question, language, earlier)
        return route, query

    key = ("route", router, normalised(question), tuple(normalised(text) for text in earlier[-4:]), language)
    (route, query), _ = await reuse_or_fetch(services, ctx, key, decide)
    return copy.deepcopy(route), query  # the node changes its own (category)


async def _rules_route(services: Services, question: str, language: Language, earlier: list[str]) -> Route:
    if not question:
        return Route(kind="small_talk", sources=[], category=None, reason="rules: empty")
    if small_talk_kind(question):
        return Route(kind="small_talk", sources=[], category=None, reason="rules")
    calls = [
        SourceCall(source=source.name, params=params.model_dump(mode="json"))
        for source, params in services.sources.select(question, language, earlier)
    ]
    if not calls and await looks_like_small_talk(services, question):
        return Route(kind="small_talk", sources=[], category=None, reason="embedding")
    return lookup_route(calls, category=None, reason="rules")


def lookup_route(calls: list[SourceCall], category: str | None, reason: str) -> Route:
    """A lookup: the knowledge base is always searched, alongside the chosen sources."""
    return Route(
        kind="lookup",
        sources=["knowledge_base", *(call["source"] for call in calls)],
        category=category,
        reason=reason,
        calls=calls,
    )


async def _llm_route(
    services: Services,
    question: str,
    earlier: list[str],
    search_query: str,
    caller: SourceContext,
    language: Language,
) -> tuple[Route | None, str]:
    """The chat model routes by calling tools (native function calling), offered only what this
    caller may use; every call it returns is checked (`router_tools.py`). None: the rules decide."""
    model = services.router_model or services.chat_model
    if model is None:
        return None, search_query
    protect = mask if services.options.mask_for_llm else str
    # The user's own messages only: an assistant reply may quote a document, and documents never
    # reach the one model whose output acts.
    messages = [
        SystemMessage(ROUTER_SYSTEM.format(company=services.persona.company["en"])),
        *(HumanMessage(protect(text)) for text in earlier[-4:]),
        HumanMessage(protect(question)),
    ]
    try:
        router = model.bind_tools(offered_tools(services, caller))
        async with asyncio.timeout(services.options.router_timeout_s):
            # Not streamed: nothing of it is spoken (NOSTREAM), and one body is cheaper than chunks.
            reply = await router.with_config(tags=NOSTREAM, run_name="router").ainvoke(messages, stream=False)
        if not isinstance(reply, AIMessage):
            return None, search_query
        checked = check_tool_calls(services, reply, caller)
    except Exception as exc:  # a router failure must never stop the turn: the rules decide
        log.info("LLM router failed, routing by rules: %s", describe(exc))
        return None, search_query
    if not checked.made:
        return Route(kind="small_talk", sources=[], category=None, reason="llm"), search_query
    calls = checked.calls + [
        call for call in withheld_calls(services, caller, question, language, earlier) if call not in checked.calls
    ]
    search = checked.search
    category = search.category if search else None
    query = search.query.strip() if search and search.query.strip() else search_query
    return lookup_route(calls, category, "llm"), query
