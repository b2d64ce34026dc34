"""`voicerag chat [--user ID] [--roles R1,R2] [--tenant T] [--lang ja|en]`: a conversation in the
terminal, with streamed answers and follow-ups. One session id for the whole chat; each turn's record
goes to the log line and the audit log."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from voicerag.cli.common import caller_context, err, open_services, settings, turn_outputs
from voicerag.cli.running import run_async
from voicerag.cli.terminal import stream

if TYPE_CHECKING:
    from graph.context import Context
    from voicerag.settings import Settings

HISTORY_MESSAGES = 12  # what the graph sees of the conversation (follow-ups need the last turns)


def chat(
    user: Annotated[str, typer.Option("--user", help="The caller's id (default: anonymous).")] = "anonymous",
    roles: Annotated[str, typer.Option("--roles", help="Comma-separated roles of the caller.")] = "",
    tenant: Annotated[str | None, typer.Option("--tenant", help="The caller's tenant (organisation).")] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="Answer in this language: ja or en.")] = None,
) -> None:
    """Talk to the agent in the terminal. Empty line or Ctrl-D ends; /reset forgets the conversation."""
    caller = caller_context(user=user, roles=roles, tenant=tenant, lang=lang, session_id=uuid.uuid4().hex)
    loaded = settings()
    run_async(_chat(loaded, caller))


async def _chat(loaded: Settings, caller: Context) -> None:
    from dataclasses import replace

    from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

    from graph.builder import build_graph, warm_up
    from voicerag.cli.turn import observed_turn

    async with turn_outputs(loaded, serves_metrics=True) as outputs, open_services(loaded) as services:
        graph = build_graph(services)
        await warm_up(services)
        history: list[AnyMessage] = []
        err.print("voicerag chat: ask in Japanese or English. /reset forgets, Ctrl-D or an empty line quits.")
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                break
            line = line.strip()
            if not line or line in ("/quit", "/exit"):
                break
            if line == "/reset":
                history.clear()
                continue
            history.append(HumanMessage(line))
            sys.stdout.write("agent> ")
            context = replace(caller, turn_id=uuid.uuid4().hex)  # the same caller and session, a new turn
            state = await observed_turn(
                graph, history[-HISTORY_MESSAGES:], context, "chat", outputs.sinks, stream, outputs.tracers
            )
            sys.stdout.write("\n")
            history.append(AIMessage(state.get("answer", "")))
