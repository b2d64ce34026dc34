"""context_budget: which trim order keeps the answer's fact when the prompt is over LLM_CONTEXT_TOKENS.

For each answerable question of `tests/data/sample_kb_questions.jsonl` whose expected text is in its
graded documents, the answer prompt (the product's own system prompt, a 4-message earlier exchange,
the graded documents) is fitted to budgets of 90% ... 30% of its full size by three policies:
- `ours` (graph/context_budget.py): oldest history, then lowest-scored documents, then the best one's tail;
- `tails_first`: oldest history, then every document's tail cut by the same share (all kept);
- `docs_only`: oldest history, then lowest-scored documents, never a tail — the best document is
  kept whole even over budget.
Figures: the share of prompts still holding the expected text, and the share within budget.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from benchmarks.common import DATA_DIR, SAMPLE_KB, Result, bench_settings, print_table
from graph.builder import build_graph, warm_up
from graph.context_budget import estimate_tokens, fit_prompt, prompt_tokens
from graph.nodes.generate import _context_block
from graph.prompts import ANSWER_SYSTEM
from retrievers.documents import load_documents
from retrievers.knowledge_base.hits import SearchHit
from voicerag.services import build_services

NAME = "context_budget"
QUESTIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "sample_kb_questions.jsonl"
SHARES = (0.9, 0.75, 0.6, 0.45, 0.3)
HISTORY: dict[str, list[BaseMessage]] = {
    "en": [HumanMessage("Do you ship to Okinawa, and how long does it take? " * 3),
           AIMessage("Yes, we ship to Okinawa; standard delivery takes three to five business days. " * 3)],
    "ja": [HumanMessage("沖縄にも配送していますか？何日かかりますか？" * 3),
           AIMessage("はい、沖縄にも配送しています。通常は三〜五営業日でお届けします。" * 3)],
}  # fmt: skip


def tails_first(compose: Any, history: list[BaseMessage], question: str, docs: list[SearchHit], budget: int) -> str:
    history = list(history)
    while prompt_tokens(compose(docs), history, question) > budget and history:
        history.pop(0)
    share = 1.0
    while prompt_tokens(compose(docs), history, question) > budget and share > 0:
        share -= 0.02
        docs = [{**d, "text": d["text"][: math.floor(len(d["text"]) * share)]} for d in docs]
    return str(compose(docs))


def docs_only(compose: Any, history: list[BaseMessage], question: str, docs: list[SearchHit], budget: int) -> str:
    history, docs = list(history), list(docs)
    while prompt_tokens(compose(docs), history, question) > budget and history:
        history.pop(0)
    while prompt_tokens(compose(docs), history, question) > budget and len(docs) > 1:
        docs.remove(min(docs, key=lambda d: d["score"]))
    return str(compose(docs))


async def run(quick: bool) -> Result:
    data_dir = DATA_DIR / NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    no_sources = data_dir / "sources.yaml"
    no_sources.write_text("", encoding="utf-8")
    services = build_services(
        bench_settings(data_dir, embeddings="use", collection="bench-sample-kb-use", sources_file=no_sources)
    )
    await services.knowledge_base.index_documents(load_documents([SAMPLE_KB]).documents, prune_sources=True)
    await warm_up(services)
    graph = build_graph(services)
    records = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = []
    for record in records:
        if not record["answerable"]:
            continue
        state = await graph.ainvoke({"messages": [HumanMessage(record["question"])]})
        graded = state.get("graded") or []
        if graded and any(record["expect_text"] in d["text"] for d in graded):
            cases.append((record, graded))
    await services.aclose()
    kept: dict[str, dict[float, list[bool]]] = {
        p: {s: [] for s in SHARES} for p in ("ours", "tails_first", "docs_only")
    }
    within: dict[str, dict[float, list[bool]]] = {p: {s: [] for s in SHARES} for p in kept}
    for record, graded in cases:
        lang, question = record["lang"], record["question"]

        def compose(docs: list[SearchHit], lang: str = lang) -> str:
            return ANSWER_SYSTEM[lang].format(company="Kumo", context=_context_block(docs, []))

        history = HISTORY[lang]
        full = prompt_tokens(compose(graded), history, question)
        for share in SHARES:
            budget = int(full * share)
            fitted = fit_prompt(compose, history, question, graded, budget)
            prompts = {"ours": fitted.system, "tails_first": tails_first(compose, history, question, graded, budget),
                       "docs_only": docs_only(compose, history, question, graded, budget)}  # fmt: skip
            for policy, system in prompts.items():
                kept[policy][share].append(record["expect_text"] in system)
                extra = prompt_tokens(system, [], question) - estimate_tokens(system)
                within[policy][share].append(estimate_tokens(system) + extra <= budget)
    rows, figures = [], {}
    for policy in kept:
        shares = {s: round(sum(kept[policy][s]) / len(cases), 3) for s in SHARES}
        fits = {s: round(sum(within[policy][s]) / len(cases), 3) for s in SHARES}
        figures[policy] = {"fact_kept": shares, "within_budget": fits}
        rows.append([policy, *(f"{shares[s]:.2f} / {fits[s]:.2f}" for s in SHARES)])
    print_table(
        f"context budget: fact kept / within budget, {len(cases)} questions",
        ["policy", *(f"{int(s * 100)}%" for s in SHARES)],
        rows,
    )
    return Result(NAME, quick, {"questions": len(cases), "shares": list(SHARES), "policies": figures})
