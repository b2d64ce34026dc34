"""The answer prompt's budget: estimated offline, trimmed in the stated order — the oldest history,
then the lowest-scored documents, then the tail of the last document — and never beyond what it
needs (a prompt within budget is left whole)."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from graph.context_budget import estimate_tokens, fit_prompt, prompt_tokens
from retrievers.knowledge_base.hits import SearchHit


def hit(doc_id: str, score: float, text: str) -> SearchHit:
    return SearchHit(
        doc_id=doc_id, title=doc_id, text=text, score=score, dense=None, keyword=None, coverage=1.0,
        category="", lang="en", source="", chunk_index=0, metadata={},
    )  # fmt: skip


def compose(documents: list[SearchHit]) -> str:
    return "Answer from these documents.\n" + "\n\n".join(f"[{d['doc_id']}] {d['text']}" for d in documents)


HISTORY: list[BaseMessage] = [
    HumanMessage("first question " * 20),
    AIMessage("first answer " * 20),
    HumanMessage("second question " * 20),
    AIMessage("second answer " * 20),
]
DOCS = [hit("best", 3.0, "The KH-300 has a two-year warranty. " * 10), hit("mid", 2.0, "Shipping " * 200),
        hit("low", 1.0, "Returns " * 200)]  # fmt: skip
QUESTION = "What is the warranty on the KH-300?"


def full() -> int:
    return prompt_tokens(compose(DOCS), HISTORY, QUESTION)


def test_the_estimate_counts_english_by_characters_and_japanese_by_the_character() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a" * 400) == 100
    assert estimate_tokens("保証期間は二年です") == 9
    assert estimate_tokens("KH-300の保証") == 5  # 6 ASCII characters (1.5) + 3 others, rounded up


def test_a_prompt_within_budget_is_left_whole() -> None:
    fitted = fit_prompt(compose, HISTORY, QUESTION, DOCS, full())
    assert fitted.history == HISTORY and fitted.documents == DOCS and fitted.tokens == full()
    assert (fitted.dropped_history, fitted.dropped_documents, fitted.cut_chars) == (0, [], 0)


def test_the_oldest_history_goes_first() -> None:
    fitted = fit_prompt(compose, HISTORY, QUESTION, DOCS, full() - 30)
    assert fitted.history == HISTORY[1:] and fitted.documents == DOCS  # one message was enough
    assert fitted.tokens <= full() - 30


def test_then_the_lowest_scored_documents_then_the_tail_of_the_best() -> None:
    without_history = prompt_tokens(compose(DOCS), [], QUESTION)
    fitted = fit_prompt(compose, HISTORY, QUESTION, DOCS, without_history - 10)
    assert fitted.history == [] and fitted.dropped_documents == ["low"]  # the middle one still fits
    assert [d["doc_id"] for d in fitted.documents] == ["best", "mid"]

    best_only = prompt_tokens(compose(DOCS[:1]), [], QUESTION)
    budget = best_only - 40
    fitted = fit_prompt(compose, HISTORY, QUESTION, DOCS, budget)
    assert fitted.dropped_documents == ["low", "mid"] and fitted.cut_chars > 0
    (best,) = fitted.documents
    assert DOCS[0]["text"].startswith(best["text"]) and best["text"].startswith("The KH-300 has a two-year warranty.")
    assert budget - 5 <= fitted.tokens <= budget  # under budget, and not cut far beyond it
    assert DOCS[0]["text"].count("warranty") == 10  # the caller's documents are not changed


def test_a_budget_smaller_than_the_system_prompt_and_question_says_so() -> None:
    fitted = fit_prompt(compose, HISTORY, QUESTION, DOCS, 10)
    assert fitted.documents == [] or fitted.documents[0]["text"] == ""
    assert fitted.over_budget(10)  # what cannot be cut (instructions, question) is kept
