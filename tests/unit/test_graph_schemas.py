"""The graph as LangGraph Studio shows it: a narrow input, the answer and how it was found as the
output, and a context form whose fields say what they are."""

from __future__ import annotations

import pytest
from helpers import SAMPLE_PERSONA
from pydantic import ValidationError

from graph.builder import build_graph
from graph.context import Context
from graph.services import GraphOptions, Services
from retrievers.embeddings import Embeddings
from retrievers.knowledge_base import KnowledgeBaseManager

OPTIONS = GraphOptions(
    top_k=5,
    router="rules",
    grader="score",
    min_relevance=None,
    deadline_ms=1500,
    llm_timeout_s=8,
    llm_first_token_timeout_s=3,
    router_timeout_s=1.5,
    mask_for_llm=False,
)


def test_studio_sees_a_question_in_and_the_answer_out(kb: KnowledgeBaseManager, embeddings: Embeddings) -> None:
    graph = build_graph(Services(knowledge_base=kb, embeddings=embeddings, options=OPTIONS, persona=SAMPLE_PERSONA))

    inputs = graph.get_input_jsonschema()["properties"]
    assert set(inputs) == {"messages", "question"}

    outputs = graph.get_output_jsonschema()["properties"]
    assert {"answer", "documents", "graded", "api_results", "degraded", "timings_ms", "route"} <= set(outputs)
    assert not {"started_at", "deadline_at", "search_query"} & set(outputs)  # internal to the run

    context = graph.get_context_jsonschema()["properties"]
    assert {"user_id", "roles", "tenant", "language", "top_k", "category"} <= set(context)
    assert all(field.get("description") for field in context.values()), "every context field says what it is"
    assert context["category"]["anyOf"][0]["enum"] == ["product", "support", "general"]


@pytest.mark.parametrize(
    ("context", "field"),
    [({"language": "fr"}, "language"), ({"bogus": 1}, "bogus"), ({"top_k": "many"}, "top_k")],
)
async def test_a_wrong_context_from_outside_fails_naming_the_field(
    kb: KnowledgeBaseManager, embeddings: Embeddings, context: dict[str, object], field: str
) -> None:
    """Studio and the API send the context as JSON: a wrong value stops the run at once, naming the
    field — not a KeyError half-way, and not an answer that blames the knowledge base."""
    graph = build_graph(Services(knowledge_base=kb, embeddings=embeddings, options=OPTIONS, persona=SAMPLE_PERSONA))
    with pytest.raises(ValidationError) as caught:
        await graph.ainvoke({"question": "What is the warranty?"}, context=context)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_roles_may_be_given_comma_separated() -> None:
    assert Context(roles="member, staff").roles == ["member", "staff"]  # type: ignore[arg-type]
