"""The answer prompt's token budget (`LLM_CONTEXT_TOKENS`): system prompt + history + documents +
live data, counted offline and trimmed in a fixed order when over.

Counting: no tokenizer is downloaded at run time (tiktoken fetches its BPE files on first use), so
tokens are estimated from characters — ASCII text at ~4 characters a token (English in OpenAI's
o200k/cl100k encodings), every other character (Japanese kana and kanji, full-width forms) as one
token, plus a few tokens per message. It errs high for Japanese (o200k often packs 1.2-1.5
kanji/kana into a token), which keeps a prompt under the real budget rather than over it.

Trim order — what goes first when the prompt is over budget:
1. the oldest history messages (a follow-up needs the last exchange most, the first one least);
2. the lowest-scored documents, down to the best one (the grader's order says which help least);
3. the tail of the remaining document (a chunk's answer is usually near its start: chunks follow
   headings).
Live results are never trimmed here: each is already capped (`LIVE_DATA_CHARS`) and answers the
question as asked. The system prompt and the question are never cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage

from retrievers.knowledge_base.hits import SearchHit

ASCII_CHARS_PER_TOKEN = 4.0
MESSAGE_TOKENS = 4  # each message's role and separators
REPLY_TOKENS = 3  # the primer of the assistant's reply


def estimate_tokens(text: str) -> int:
    """Tokens `text` costs, estimated from its characters (see the module's docstring)."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN + (len(text) - ascii_chars))


@dataclass
class FittedPrompt:
    system: str
    history: list[BaseMessage]
    documents: list[SearchHit]
    tokens: int  # the estimate of the prompt as fitted (may exceed the budget: see `over_budget`)
    dropped_history: int = 0
    dropped_documents: list[str] = field(default_factory=list)  # doc ids, lowest score first
    cut_chars: int = 0  # cut from the last document's tail

    def over_budget(self, budget: int) -> bool:
        return self.tokens > budget


def prompt_tokens(system: str, history: list[BaseMessage], question: str) -> int:
    messages = [system, *(m.text for m in history), question]
    return sum(estimate_tokens(text) + MESSAGE_TOKENS for text in messages) + REPLY_TOKENS


def fit_prompt(
    compose: Callable[[list[SearchHit]], str],
    history: list[BaseMessage],
    question: str,
    documents: list[SearchHit],
    budget: int,
) -> FittedPrompt:
    """The prompt within `budget` tokens: `compose(documents)` is the system prompt with those
    documents in it (and the live data); history and documents are trimmed in the module's order."""
    history, documents = list(history), list(documents)
    fitted = FittedPrompt(compose(documents), history, documents, 0)

    def measure() -> int:
        fitted.tokens = prompt_tokens(fitted.system, fitted.history, question)
        return fitted.tokens

    while measure() > budget and fitted.history:
        fitted.history.pop(0)
        fitted.dropped_history += 1
    while fitted.tokens > budget and len(fitted.documents) > 1:
        lowest = min(range(len(fitted.documents)), key=lambda n: fitted.documents[n]["score"])
        fitted.dropped_documents.append(fitted.documents.pop(lowest)["doc_id"])
        fitted.system = compose(fitted.documents)
        measure()
    for _ in range(4):  # each cut is sized from the estimate; a second one absorbs rounding
        if fitted.tokens <= budget or not fitted.documents:
            break
        last = fitted.documents[-1]
        text = last["text"]
        chars_per_token = len(text) / max(estimate_tokens(text), 1)
        keep = max(0, len(text) - math.ceil((fitted.tokens - budget) * chars_per_token) - 1)
        fitted.cut_chars += len(text) - keep
        trimmed = last.copy()
        trimmed["text"] = text[:keep]
        fitted.documents[-1] = trimmed
        fitted.system = compose(fitted.documents)
        measure()
    return fitted
