"""`voicerag eval-answers FILE [--json]`: answer quality on a question file.

Each question is one turn of the real graph, as `voicerag ask` runs it: an anonymous caller, a
session of its own, front door "ask", observed by a `TurnObserver`. Its record is scored by
`graph/answer_evaluation.py` (grounded, fact, declined; latency is the record's `total_ms`). The
turns go to no sink but the evaluation: they are not a caller's, so not audited.
`answer_questions` is what the answer-quality and turns notebooks call too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from voicerag.cli.common import caller_context, err, open_services, out, progress_bar, settings
from voicerag.cli.running import run_async
from voicerag.cli.terminal import json_text, safe

if TYPE_CHECKING:
    from graph.answer_evaluation import AnswerQuestion, AnswerRow
    from graph.services import Services
    from graph.turn_record import TurnRecord
    from voicerag.settings import Settings

ANSWER_CHARS = 70  # of an answer shown in the table of misses


@dataclass(frozen=True, slots=True)
class AnsweredTurn:
    """A question, the final state of the turn that answered it, and the turn's record."""

    question: AnswerQuestion
    state: dict[str, Any]
    record: TurnRecord


def eval_answers(
    file: Annotated[Path, typer.Argument(help="JSONL: text, doc_id (null: must decline), expect, lang, category.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: the figures and every row.")] = False,
) -> None:
    """Ask every question of FILE through the graph and print grounded, fact, correct-decline,
    invented-answer and degraded rates and turn latency, overall and per language."""
    from graph.answer_evaluation import load_answer_questions

    questions = load_answer_questions(file)  # a bad file stops here, before any model is loaded
    loaded = settings()
    result = run_async(_evaluate(loaded, questions))
    if as_json:
        print(json_text(result))
        return
    _print(file, result)


async def answer_questions(
    services: Services,
    questions: list[AnswerQuestion],
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
) -> list[AnsweredTurn]:
    """One observed turn per question, in order, each as a new anonymous caller would ask it."""
    from langchain_core.messages import HumanMessage

    from graph.builder import build_graph, warm_up
    from voicerag.cli.turn import observed_turn

    graph = build_graph(services)
    await warm_up(services)  # model and index loading are not part of the first turn's latency
    answered = []
    for number, question in enumerate(questions, start=1):
        context = caller_context(user="anonymous", roles="", tenant=None, lang=None, session_id=uuid.uuid4().hex)
        records: list[TurnRecord] = []
        state = await observed_turn(graph, [HumanMessage(question.text)], context, "ask", [records.append])
        answered.append(AnsweredTurn(question, state, records[0]))
        progress("questions", number, len(questions))
    return answered


def scored(services: Services, answered: list[AnsweredTurn]) -> list[AnswerRow]:
    from graph.answer_evaluation import decline_sentences, score

    sentences = decline_sentences(services.persona.phrases)
    return [score(turn.question, turn.record, sentences) for turn in answered]


async def _evaluate(loaded: Settings, questions: list[AnswerQuestion]) -> dict[str, Any]:
    from graph.answer_evaluation import report

    async with open_services(loaded) as services:
        if not await services.knowledge_base.count():
            err.print(f"note: the collection {services.knowledge_base.collection_name!r} is empty: run voicerag ingest")
        with progress_bar() as progress:
            answered = await answer_questions(services, questions, progress)
        rows = scored(services, answered)
        setup = {"embeddings": services.embeddings.name, "chat_model": services.chat_model is not None}
    return setup | report(rows)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _print(file: Path, result: dict[str, Any]) -> None:
    answerer = "chat model" if result["chat_model"] else "extractive answers"
    table = Table(title=Text(safe(f"{file} ({result['questions']} questions, {result['embeddings']}, {answerer})")))
    for name in ("", "questions", "grounded", "fact", "correct decline", "invented", "missed", "degraded"):
        table.add_column(name, justify="left" if not name else "right")
    table.add_column("latency p50 / p95 ms", justify="right")
    groups = {"all": result} | {f"lang {name}": figures for name, figures in result["by_language"].items()}
    for name, figures in groups.items():
        table.add_row(
            safe(name),
            f"{figures['answerable']} + {figures['out_of_scope']} out of scope",
            _percent(figures["grounded_rate"]),
            _percent(figures["fact_rate"]),
            _percent(figures["correct_decline_rate"]),
            _percent(figures["invented_answer_rate"]),
            _percent(figures["missed_rate"]),
            _percent(figures["degraded_rate"]),
            f"{figures['latency_ms_p50'] or 0:.0f} / {figures['latency_ms_p95'] or 0:.0f}",
        )
    out.print(table)
    misses = Table(title="Questions that missed", show_lines=False)
    for name in ("question", "expected", "used", "answer"):
        misses.add_column(name, overflow="fold")
    for row in result["rows"]:
        expected = _missed(row)
        if expected is None:
            continue
        answer = row["answer"] if len(row["answer"]) <= ANSWER_CHARS else row["answer"][:ANSWER_CHARS] + "…"
        misses.add_row(safe(row["text"]), safe(expected), safe(", ".join(row["used"]) or "-"), safe(answer))
    if misses.row_count:
        out.print(misses)


def _missed(row: dict[str, Any]) -> str | None:
    """What a row should have had, when it missed: a decline, or the document and the fact."""
    if row["expected_docs"] is None:
        return None if row["declined"] else "a decline"
    if row["grounded"] and row["fact"] is not False:
        return None
    return " | ".join(row["expected_docs"]) + (f" «{row['expected_text']}»" if row["expected_text"] else "")
