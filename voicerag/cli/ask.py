"""`voicerag ask "QUESTION" [--json] [--lang ja|en] [--user ID] [--roles R1,R2]`: one turn."""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from retrievers.errors import UserInputError
from voicerag.cli.common import open_services, settings
from voicerag.cli.running import run_async
from voicerag.cli.terminal import json_text, stream

if TYPE_CHECKING:
    from graph.context import Context


def ask(
    question: Annotated[str, typer.Argument(help="The question, in Japanese or English.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of streaming text.")] = False,
    lang: Annotated[str | None, typer.Option("--lang", help="Answer in this language: ja or en.")] = None,
    user: Annotated[str, typer.Option("--user", help="Caller identity passed to the graph.")] = "cli",
    roles: Annotated[str, typer.Option("--roles", help="Comma-separated roles of the caller.")] = "",
) -> None:
    """Answer one question; the answer streams to stdout."""
    if not question.strip():
        raise UserInputError("QUESTION: is empty")
    if lang not in (None, "ja", "en"):
        raise UserInputError(f"--lang: expected ja or en, got {lang!r}")
    from graph.context import Context

    context = Context(
        user_id=user,
        roles=[r.strip() for r in roles.split(",") if r.strip()],
        language=lang,  # type: ignore[arg-type]
        turn_id=uuid.uuid4().hex,
    )
    run_async(_ask(question, context, as_json))


async def _ask(question: str, context: Context, as_json: bool) -> None:
    from langchain_core.messages import HumanMessage

    from graph.builder import build_graph, warm_up
    from voicerag.cli.turn import run_turn, turn_json

    async with open_services(settings()) as services:
        graph = build_graph(services)
        await warm_up(services)  # model and index loading are not part of the turn's timings
        on_text = None if as_json else stream
        state = await run_turn(graph, [HumanMessage(question)], context, on_text)
    if as_json:
        print(json_text(turn_json(state), indent=2))
    else:
        sys.stdout.write("\n")
