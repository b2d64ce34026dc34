"""grade_context: keep only the documents an answer may be built from.

By default no LLM is called: a document is kept when its relevance (dense similarity plus a
little keyword coverage) reaches a threshold calibrated per embedding model (see README,
"Grading"), and it is not far behind the best document. An optional single batched LLM grade (`Context.grader = "llm"`)
judges all candidates in one call; its tokens are never streamed and on any failure the score
grade decides.
"""

from __future__ import annotations

import asyncio
import logging
import time

from langgraph.runtime import Runtime

from graph.context import Context
from graph.nodes.common import NOSTREAM, Node, elapsed_ms, parse_json_object
from graph.prompts import GRADER_PROMPT
from graph.services import Services
from graph.state import Problem, State
from retrievers.knowledge_base.hits import SearchHit
from retrievers.masking import mask

log = logging.getLogger(__name__)

MAX_CONTEXT_DOCUMENTS = 3
COVERAGE_WEIGHT = 0.1
FUSED_MARGIN = 2.0  # documents more than this many fused z-units behind the best are dropped
GRADER_DOC_CHARS = 600
KEYWORD_ONLY_MIN_COVERAGE = 0.65


def relevance(doc: SearchHit) -> float:
    """Dense similarity, raised by how much of the question's wording the document contains.
    Dense alone separates in-scope from out-of-scope questions by a hair with e5 (its cosines sit
    in 0.7-0.95); the keyword coverage widens the gap (README, "Grading")."""
    return (doc["dense"] or 0.0) + COVERAGE_WEIGHT * doc["coverage"]


def grade_by_score(docs: list[SearchHit], min_relevance: float) -> list[SearchHit]:
    """Documents relevant enough to the question, and close enough to the best one."""
    relevant = [d for d in docs if d["dense"] is not None and relevance(d) >= min_relevance]
    if not relevant:
        return []
    best = max(d["score"] for d in relevant)
    return [d for d in relevant if d["score"] >= best - FUSED_MARGIN][:MAX_CONTEXT_DOCUMENTS]


def grade_by_coverage(docs: list[SearchHit]) -> list[SearchHit]:
    """Without the dense signal (the query vector was late): only documents holding most of the
    question's informative words. Calibrated on tests/data/sample_kb_questions.jsonl: answerable
    questions' best coverage 0.53-1.0, out-of-scope 0.0-0.50; the bar sits above both overlaps."""
    return [d for d in docs if d["coverage"] >= KEYWORD_ONLY_MIN_COVERAGE][:MAX_CONTEXT_DOCUMENTS]


async def grade_by_llm(services: Services, question: str, docs: list[SearchHit]) -> list[SearchHit] | None:
    """One call grades every candidate; None when the model is missing or fails."""
    model = services.grader_model or services.chat_model
    if model is None or not docs:
        return None
    protect = mask if services.options.mask_for_llm else str  # MASK_FOR_LLM
    listing = "\n\n".join(
        f"[{number}] {doc['title']}\n{doc['text'][:GRADER_DOC_CHARS]}" for number, doc in enumerate(docs, start=1)
    )
    try:
        async with asyncio.timeout(services.options.router_timeout_s * 2):
            reply = await model.with_config(tags=NOSTREAM, run_name="grader").ainvoke(
                GRADER_PROMPT.format(question=protect(question), documents=listing)
            )
    except Exception as exc:  # the score grade decides instead
        log.info("LLM grader failed, using scores: %s", exc)
        return None
    numbers = parse_json_object(reply.text).get("relevant")
    if not isinstance(numbers, list):
        return None
    keep = {n for n in numbers if isinstance(n, int)}
    return [doc for number, doc in enumerate(docs, start=1) if number in keep][:MAX_CONTEXT_DOCUMENTS]


def make_grade_context(services: Services) -> Node:
    async def grade_context(state: State, runtime: Runtime[Context]) -> State:
        """Choose the documents the answer may use (possibly none: then the answer says so)."""
        started = time.perf_counter()
        ctx = runtime.context or Context()
        docs = state.get("documents", [])
        graded: list[SearchHit] | None = None
        if (ctx.grader or services.options.grader) == "llm":
            graded = await grade_by_llm(services, state.get("search_query") or state.get("question", ""), docs)
        if graded is None and state.get("keyword_only"):
            graded = grade_by_coverage(docs)
            if not graded:  # nothing certain from keywords alone: say the search was too slow, not "not found"
                problem = Problem(source="knowledge_base", kind="timeout")
                return {"graded": [], "problems": [problem], "timings_ms": {"grade": elapsed_ms(started)}}
        if graded is None:
            graded = grade_by_score(docs, services.min_relevance)
        return {"graded": graded, "timings_ms": {"grade": elapsed_ms(started)}}

    return grade_context
