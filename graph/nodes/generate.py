"""generate: the only node that speaks.

With a chat model, its tokens stream out (LangGraph `messages` mode picks them up), bounded by a
first-token and a total timeout. Without one, or when it fails before saying anything, the
answer is extractive: sentences read from the graded documents, introduced as such (degraded).
With no usable document the answer says so; it never invents. Lookups that failed are named.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from graph.context import Context
from graph.context_budget import fit_prompt
from graph.extractive import extract_answer
from graph.nodes.common import Node, elapsed_ms
from graph.nodes.grade import grade_by_score
from graph.nodes.retrieve import viewer_of
from graph.nodes.small_talk import small_talk_reply
from graph.prompts import ANSWER_SYSTEM, DETAILS_NOTE, SMALL_TALK_SYSTEM, SPOKEN_STYLE, UNAVAILABLE_NOTE, WITHHELD_NOTE
from graph.services import GraphOptions, Services
from graph.speakable import past_budget, shape_answer, strip_markup, wants_details
from graph.state import Problem, State
from retrievers.knowledge_base.hits import SearchHit
from retrievers.language import Language, detect_language
from retrievers.masking import mask
from retrievers.sources.base import SourceResult

log = logging.getLogger(__name__)

HISTORY_TURNS = 6  # earlier messages given to the chat model for follow-ups
LIVE_DATA_CHARS = 1500  # of each live result's data shown to the model


@dataclass
class StreamOutcome:
    text: str
    message_id: str | None
    error: str | None
    stopped: bool = False  # `stop` said enough: the answer reached its spoken budget


async def stream_reply(
    model: BaseChatModel,
    messages: list[BaseMessage],
    options: GraphOptions,
    stop: Callable[[str], bool] | None = None,
) -> StreamOutcome:
    """Stream a reply, stopping at the first-token or total timeout, at an error, or when
    `stop(text so far)` says the answer is long enough.

    Tokens reach listeners through LangGraph's callbacks as they arrive (shaping adds nothing
    before the first one); this returns what was said, so the caller knows whether to fall back
    (nothing said), to apologise (cut short) or to offer the rest (stopped).
    """
    text = ""
    message_id: str | None = None
    stream = model.astream(messages).__aiter__()
    deadline = time.monotonic() + options.llm_timeout_s
    try:
        async with asyncio.timeout(options.llm_first_token_timeout_s):
            while not text:  # servers send an empty role chunk first: that is not a token yet
                chunk: AIMessageChunk = await anext(stream)
                message_id, text = message_id or chunk.id, text + chunk.text
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + deadline - time.monotonic()):
            async for chunk in stream:
                text += chunk.text
                if stop is not None and stop(text):
                    return StreamOutcome(text, message_id, None, stopped=True)
        return StreamOutcome(text, message_id, None)
    except StopAsyncIteration:
        return StreamOutcome(text, message_id, None)
    except TimeoutError:
        return StreamOutcome(text, message_id, "timeout")
    except Exception as exc:  # a model error must end in a spoken answer, not an exception
        log.warning("chat model failed: %s", exc)
        return StreamOutcome(text, message_id, type(exc).__name__)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


def _history(state: State, limit: int) -> list[BaseMessage]:
    """Earlier user and assistant messages (not the current question) for follow-ups."""
    messages: list[BaseMessage] = [m for m in state.get("messages", []) if isinstance(m, HumanMessage | AIMessage)]
    if messages and isinstance(messages[-1], HumanMessage):
        messages = messages[:-1]
    return messages[-limit:]


def _spaced(first: str, second: str, language: Language) -> str:
    """Two spoken pieces one after the other: a space between English sentences."""
    if not first or language == "ja" or first.endswith(" "):
        return first + second
    return f"{first} {second}"


def offered_question(state: State, offers: tuple[str, ...]) -> str | None:
    """The previous question, when the previous answer ended by offering details. It is read from
    the conversation, so it works the same for a checkpointed thread and for LiveKit's resent chat."""
    earlier = _history(state, HISTORY_TURNS)
    if not earlier or not isinstance(earlier[-1], AIMessage):
        return None
    if not any(earlier[-1].text.rstrip().endswith(offer.strip()) for offer in offers):
        return None
    questions = [m.text for m in earlier if isinstance(m, HumanMessage)]
    return questions[-1] if questions else None


def _page_note(doc: SearchHit) -> str:
    """Where in a paged document (a PDF) the passage is, so the answer can say "page 3"."""
    pages = doc["metadata"].get("pages")
    return f" (p. {pages})" if pages else ""


def _context_block(docs: list[SearchHit], live: list[SourceResult]) -> str:
    """What the model may answer from: live results first (they answer the question as asked),
    then the graded documents."""
    parts = [
        f"[{r['source']}] {r['summary']}\n{json.dumps(r['data'], ensure_ascii=False)[:LIVE_DATA_CHARS]}" for r in live
    ]
    parts += [f"[{n}] {d['title']}{_page_note(d)}\n{d['text']}" for n, d in enumerate(docs, start=1)]
    return "\n\n".join(parts)


def make_generate(services: Services) -> Node:
    options = services.options
    phrases = services.persona.phrases

    async def answer_from_model(
        state: State,
        language: Language,
        compose: Callable[[list[SearchHit]], str],
        question: str,
        documents: list[SearchHit] | None = None,
    ) -> tuple[list[AnyMessage], str, bool] | None:
        """The model's streamed answer as messages, or None when it said nothing. `compose(documents)`
        is the system prompt; history and documents are trimmed to LLM_CONTEXT_TOKENS (context_budget)."""
        model = services.chat_model
        if model is None:
            return None
        history = _history(state, HISTORY_TURNS)
        if options.mask_for_llm:  # MASK_FOR_LLM: no phone number or e-mail reaches the chat model
            history = [m.model_copy(update={"content": mask(m.text)}) for m in history]
            question = mask(question)
        fitted = fit_prompt(compose, history, question, documents or [], options.context_tokens)
        if fitted.dropped_history or fitted.dropped_documents or fitted.cut_chars:
            log.info(
                "answer prompt trimmed to ~%d tokens: %d history messages, documents %s, %d chars of a tail",
                fitted.tokens, fitted.dropped_history, fitted.dropped_documents, fitted.cut_chars,
            )  # fmt: skip
        prompt = [SystemMessage(fitted.system), *fitted.history, HumanMessage(question)]
        outcome = await stream_reply(model, prompt, options, lambda text: past_budget(text, language, options.budget))
        if not outcome.text.strip():
            return None
        said = AIMessage(outcome.text, id=outcome.message_id)
        spoken = strip_markup(outcome.text, language)  # what LiveKit's markdown filter leaves of the stream
        if outcome.stopped:  # the model would say more: offer it (a yes asks it to go on)
            offer = _spaced(spoken, phrases.offer_details[language], language)[len(spoken) :]  # " Want..."
            return [said, AIMessage(offer)], spoken + offer, False
        if outcome.error is None:
            return [said], spoken, False
        apology = phrases.cut_short[language]
        return [said, AIMessage(apology)], spoken + apology, True

    def _names(sources: list[str], language: Language) -> str:
        joiner = "、" if language == "ja" else ", "
        return joiner.join(services.source_label(name, language) for name in dict.fromkeys(sources))

    def problems_said(problems: list[Problem], language: Language) -> str:
        """One true sentence per kind of failure: unreachable, too slow, switched off."""
        said = ""
        for kind, phrase in (
            ("needs_caller", phrases.needs_verified_caller),
            ("unreachable", phrases.could_not_reach),
            ("timeout", phrases.took_too_long),
            ("unavailable", phrases.not_available),
        ):
            if kind == "needs_caller":  # names what was withheld ("order details"), not the system
                withheld = [p.get("what") or p["source"] for p in problems if p["kind"] == kind]
                names = ("、" if language == "ja" else " and ").join(dict.fromkeys(withheld))
            else:
                names = _names([p["source"] for p in problems if p["kind"] == kind], language)
            if names:
                sentence = phrase[language].format(what=names)
                said += sentence[:1].upper() + sentence[1:]  # "The weather service took too long..."
        return said

    def refused(state: State, reason: str, started: float) -> State:
        """The persona's sentence for a refused turn (too long, over a rate limit): nothing was looked up."""
        language: Language = state.get("language", "en")
        text = (phrases.question_too_long if reason == "question_too_long" else phrases.rate_limited)[language]
        timings: dict[str, Any] = {"generate": elapsed_ms(started)}
        if turn_started := state.get("started_at"):
            timings["total"] = round((time.monotonic() - turn_started) * 1000, 2)
        return {
            "messages": [AIMessage(text)],
            "answer": text,
            "held_back": "",
            "degraded": False,
            "timings_ms": timings,
        }

    def extractive(question: str, documents: list[SearchHit], language: Language, lead: str) -> tuple[str, str]:
        """The passage that answers `question`, shaped for speech after `lead`: (said, held back)."""
        passage = extract_answer(question, documents, language, services.knowledge_base.term_weight)
        shaped = shape_answer(passage, language, options.budget, phrases.offer_details[language], lead)
        return shaped.spoken, shaped.rest

    def extractive_lead(documents: list[SearchHit], language: Language) -> str:
        lead = phrases.fallback_prefix if services.chat_model else phrases.extractive_prefix
        if not services.chat_model and not any(doc["lang"] == language for doc in documents):
            lead = phrases.other_language  # read out, never translated: say which language it is in
        return lead[language]

    async def details(
        state: State, previous: str, runtime: Runtime[Context]
    ) -> tuple[tuple[list[AnyMessage], str, bool], str]:
        """The caller said yes to "Want the details?": the rest of the previous answer. A checkpointed
        thread kept it (`held_back`); LiveKit's resent chat has only what was said, so the rest is
        recomputed from the previous question (the extractive answer is deterministic), or the chat
        model, which sees its own answer in the history, is asked to go on."""
        language = detect_language(previous)
        # The previous question's own documents, graded as its turn graded them (the search is cached).
        found = await services.knowledge_base.search(previous, top_k=options.top_k, viewer=viewer_of(runtime.context))
        documents = grade_by_score(found, services.min_relevance) or state.get("graded", [])
        if services.chat_model is not None and not state.get("held_back"):
            company = services.persona.company[language]

            def compose(docs: list[SearchHit]) -> str:
                system = ANSWER_SYSTEM[language].format(company=company, context=_context_block(docs, []))
                return (
                    system
                    + SPOKEN_STYLE[language].format(limit=options.budget.limit(language))
                    + DETAILS_NOTE[language]
                )

            reply = await answer_from_model(state, language, compose, state.get("question", ""), documents)
            if reply is not None:
                return reply, ""
        rest = (
            state.get("held_back") or extractive(previous, documents, language, extractive_lead(documents, language))[1]
        )
        if not rest:
            text = phrases.no_more_details[language]
            return ([AIMessage(text)], text, False), ""
        shaped = shape_answer(rest, language, options.budget, phrases.offer_details[language])
        return ([AIMessage(shaped.spoken)], shaped.spoken, False), shaped.rest

    async def generate(state: State, runtime: Runtime[Context]) -> State:
        """Answer the question from the graded context, in the question's language."""
        started = time.perf_counter()
        if (refusal := state.get("route")) and refusal["kind"] == "refused":
            return refused(state, refusal["reason"], started)
        language: Language = state.get("language", "en")
        question = state.get("question", "")
        route = state.get("route") or {"kind": "lookup"}
        graded = state.get("graded", [])
        company = services.persona.company[language]
        turn_started = state.get("started_at")
        pre_generation = round((time.monotonic() - turn_started) * 1000, 2) if turn_started else None

        problems = state.get("problems", [])
        prefix = problems_said(problems, language)
        failures = [p for p in problems if p["kind"] != "needs_caller"]  # withheld is no failure
        unavailable = _names([p["source"] for p in failures], language)
        live = [r for r in state.get("api_results", []) if r["status"] == "ok"]
        reply: tuple[list[AnyMessage], str, bool] | None = None
        held_back = ""
        offers = (phrases.offer_details.en, phrases.offer_details.ja)
        if wants_details(question) and (previous := offered_question(state, offers)) is not None:
            reply, held_back = await details(state, previous, runtime)
        elif route["kind"] == "small_talk":
            small_talk_system = SMALL_TALK_SYSTEM[language].format(company=company)
            reply = await answer_from_model(state, language, lambda _: small_talk_system, question)
            if reply is None:
                reply_text = small_talk_reply(question, language, services.persona.small_talk)
                reply = [AIMessage(reply_text)], reply_text, services.chat_model is not None  # model failed
        elif not graded and not live:
            text = prefix or phrases.not_found[language]
            reply = [AIMessage(text)], text, bool(failures)
        else:
            withheld = problems_said([p for p in problems if p["kind"] == "needs_caller"], language)

            def compose(documents: list[SearchHit]) -> str:
                system = ANSWER_SYSTEM[language].format(company=company, context=_context_block(documents, live))
                system += SPOKEN_STYLE[language].format(limit=options.budget.limit(language))
                if unavailable:  # the model must say what could not be fetched, as the fixed sentences do
                    system += UNAVAILABLE_NOTE[language].format(what=unavailable)
                if withheld:
                    system += WITHHELD_NOTE[language].format(sentence=withheld.strip())
                return system

            reply = await answer_from_model(state, language, compose, question, graded)
            if reply is None:
                # Live results come as answer-ready sentences and answer what was asked about live data;
                # without them, documents are read out, introduced as such.
                summaries = (" " if language == "en" else "").join(r["summary"] for r in live)
                if graded and not live:
                    text, held_back = extractive(question, graded, language, prefix + extractive_lead(graded, language))
                else:
                    shaped = shape_answer(summaries, language, options.budget, phrases.offer_details[language], prefix)
                    text, held_back = shaped.spoken, shaped.rest
                reply = [AIMessage(text)], text, True
        messages, answer, degraded = reply
        timings: dict[str, Any] = {"generate": elapsed_ms(started)}
        if pre_generation is not None:
            timings["pre_generation"] = pre_generation
            timings["total"] = round((time.monotonic() - turn_started) * 1000, 2)  # type: ignore[operator]
        return {
            "messages": messages,
            "answer": answer,
            "held_back": held_back,
            "degraded": degraded or bool(failures) or bool(state.get("keyword_only")),
            "timings_ms": timings,
        }

    return generate
