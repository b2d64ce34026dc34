"""A scripted chat model that supports tool calling (`bind_tools`), for graph tests that need no
server: each reply is an `AIMessage`, e.g. one with `tool_calls` for the LLM router. For a model
over the real OpenAI client, use `fakes.openai_server` with `ToolCall` replies. Tests only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field


class ToolCallingFakeChatModel(GenericFakeChatModel):
    """`GenericFakeChatModel` that accepts tools; the tools it was offered are kept in `offered`."""

    offered: list[list[str]] = Field(default_factory=list)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        self.offered.append([t["function"]["name"] for t in tools if isinstance(t, dict)])
        return self.bind(tools=list(tools), **kwargs)


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> AIMessage:
    """A router reply calling these tools with these arguments."""
    return AIMessage(
        "", tool_calls=[{"name": name, "args": args, "id": f"call_{n}"} for n, (name, args) in enumerate(calls)]
    )
