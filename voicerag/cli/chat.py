"""`voicerag chat`: a conversation in the terminal, with streamed answers and follow-ups."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Annotated

import typer

from voicerag.cli.common import err, open_services, settings
from voicerag.cli.running import run_async
from voicerag.cli.terminal import stream

HISTORY_MESSAGES = 12  # what the graph sees of the conversation (follow-ups need the last turns)


def chat(
    user: Annotated[str, typer.Option("--user", help="Caller identity passed to the graph.")] = "cli",
    lang: Annotated[str | None, typer.Option("--lang", help="Answer in this language: ja or en.")] = None,
) -> None:
    """Talk to the agent in the terminal. Empty line or Ctrl-D ends; /reset forgets the conversation."""
    run_async(_chat(user, lang))


async def _chat(user: str, lang: str | None) -> None:
    from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

    from graph.builder import build_graph, warm_up
    from graph.context import Context
    from voicerag.cli.turn import run_turn

    async with open_services(settings()) as services:
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
            context = Context(user_id=user, language=lang, turn_id=uuid.uuid4().hex)  # type: ignore[arg-type]
            state = await run_turn(graph, history[-HISTORY_MESSAGES:], context, stream)
            sys.stdout.write("\n")
            history.append(AIMessage(state.get("answer", "")))
