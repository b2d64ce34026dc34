"""Token usage and its cost: what a chat model reported (LangChain `usage_metadata`), priced from
the table in settings (`LLM_PRICES`, USD per 1M tokens).

The price of a model travels with the model: `voicerag/services.py` puts `price_metadata(...)` in
the chat model's `metadata`, which LangChain hands to every callback of its runs — so the
`TurnObserver` prices router, grader and answer calls alike, whatever front door ran the turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # settings import this module: no LangChain at start-up
    from langchain_core.outputs import LLMResult

SNAPSHOT = re.compile(r"^(?P<base>.+?)-(\d{4}-\d{2}-\d{2}|\d{4})$")  # gpt-4o-2024-08-06, gpt-4-0613
PRICE_KEY = "usd_per_1m_tokens"  # in a chat model's metadata: {"input": x, "output": y}

# USD per 1M tokens (OpenAI's list prices, 2025); LLM_PRICES replaces this table.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "gpt-5-mini": {"input": 0.25, "output": 2.00},
}


def price_for(model: str, table: Mapping[str, Mapping[str, float]]) -> dict[str, float] | None:
    """The model's price: its own entry, else the entry it is a dated snapshot of
    (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`); None for a model the table does not know."""
    if model in table:
        return dict(table[model])
    if (snapshot := SNAPSHOT.match(model)) and snapshot["base"] in table:
        return dict(table[snapshot["base"]])
    return None


def price_metadata(model: str, table: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The chat model's `metadata` carrying its price (empty when unknown: its cost is null)."""
    price = price_for(model, table)
    return {PRICE_KEY: price} if price else {}


def cost_usd(input_tokens: int, output_tokens: int, price: Mapping[str, float]) -> float:
    return (input_tokens * price["input"] + output_tokens * price["output"]) / 1_000_000


def usage_of(response: LLMResult) -> tuple[int, int] | None:
    """(input, output) tokens a model call reported, or None when it reported none (a server
    without `stream_options.include_usage`, a call cut short)."""
    found = False
    input_tokens = output_tokens = 0
    for generations in response.generations:
        for generation in generations:
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if usage:
                found = True
                input_tokens += usage.get("input_tokens", 0)
                output_tokens += usage.get("output_tokens", 0)
    if not found and response.llm_output and (token_usage := response.llm_output.get("token_usage")):
        found = True
        input_tokens, output_tokens = token_usage.get("prompt_tokens", 0), token_usage.get("completion_tokens", 0)
    return (input_tokens, output_tokens) if found else None
