"""`voicerag ask "QUESTION" [--json] [--lang ja|en] [--user ID] [--roles R1,R2] [--tenant T]`: one turn.

The caller is the least-privileged one unless told otherwise (`anonymous`, no roles, no tenant);
the turn is one session of its own. Its record goes to the log line and the audit log.
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from retrievers.errors import UserInputError
from voicerag.cli.common import caller_context, open_services, settings, turn_outputs
from voicerag.cli.running import run_async
from voicerag.cli.terminal import json_text, stream

if TYPE_CHECKING:
    from graph.context import Context
    from voicerag.settings import Settings


def ask(
    question: Annotated[str, typer.Argument(help="The question, in Japanese or English.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of streaming text.")] = False,
    lang: Annotated[str | None, typer.Option("--lang", help="Answer in this language: ja or en.")] = None,
    user: Annotated[str, typer.Option("--user", help="The caller's id (default: anonymous).")] = "anonymous",
    roles: Annotated[str, typer.Option("--roles", help="Comma-separated roles of the caller.")] = "",
    tenant: Annotated[str | None, typer.Option("--tenant", help="The caller's tenant (organisation).")] = None,
) -> None:
    """Answer one question; the answer streams to stdout."""
    if not question.strip():
        raise UserInputError("QUESTION: is empty")
    context = caller_context(user=user, roles=roles, tenant=tenant, lang=lang, session_id=uuid.uuid4().hex)
    loaded = settings()
    run_async(_ask(loaded, question, context, as_json))


async def _ask(loaded: Settings, question: str, context: Context, as_json: bool) -> None:
    from langchain_core.messages import HumanMessage

    from graph.builder import build_graph, warm_up
    from voicerag.cli.turn import observed_turn, turn_json

    async with turn_outputs(loaded, serves_metrics=False) as outputs, open_services(loaded) as services:
        graph = build_graph(services)
        await warm_up(services)  # model and index loading are not part of the turn's timings
        on_text = None if as_json else stream
        state = await observed_turn(
            graph, [HumanMessage(question)], context, "ask", outputs.sinks, on_text, outputs.tracers
        )
    if as_json:
        print(json_text(turn_json(state), indent=2))
    else:
        sys.stdout.write("\n")
