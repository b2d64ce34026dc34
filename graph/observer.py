"""`TurnObserver`: measures one graph run from its LangChain callbacks, apart from the code that runs
it (as pipecat keeps its latency observers apart from its processors), and hands the finished
`TurnRecord` to sinks.

Attached through the run's config (`graph.astream(..., config={"callbacks": [observer]})`, or
`graph.with_config(callbacks=[observer])` for LangGraph Studio), it watches:
- the root run (`parent_run_id` None): the question from its input, the final state from its
  output, its end — or its error: a `CancelledError`/`GeneratorExit` is a cancelled turn (barge-in,
  Ctrl-C), anything else a failed one;
- the node runs (children of the root carrying `langgraph_node`): each node's time, its state
  update folded in as it ends (so a turn cut short still says how far it got);
- every chat model's end (router, grader, answer): its reported token usage, priced from the
  model's metadata (`graph/usage.py`), summed into the record's `tokens` and `cost_usd`;
- the speaking node's chat model: its first non-empty token is the turn's first token (an
  extractive answer's is the node's end), its tokens the answer so far.

One observer serves one turn: the front door that owns the turn creates it with the caller's
`TurnRecord` and, through `observing(...)`, finishes it when the run returns or raises (the root's
error callback of a cancelled run is shielded into a task of its own and may come later, so the
owner's word is the one that counts). Studio has no owner: its observer (`hold=False`) emits when
the root run ends. Events after the record was emitted are ignored.

The handler runs inline (`run_inline`): no executor hop, a few dictionary operations per event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langgraph.types import Overwrite

from graph.builder import SPEAKING_NODE
from graph.turn_record import Sink, TurnRecord, emit
from graph.usage import PRICE_KEY, cost_usd, usage_of

ERROR_CHARS = 300  # of an error message kept in the record (masked when emitted)
CANCELLATIONS = (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)


class TurnObserver(BaseCallbackHandler):
    run_inline = True  # called where the event happens: no thread hop on the turn's path

    def __init__(self, record: TurnRecord, sinks: list[Sink], *, hold: bool = False) -> None:
        """`hold`: the owner adds what it knows and emits with `close()`; otherwise the record is
        emitted as soon as the root run ends."""
        self.record = record
        self._sinks = list(sinks)  # this turn's own list: `add_sink` must not change the caller's
        self._hold = hold
        self._started = time.perf_counter()
        self._root: UUID | None = None
        self._nodes: dict[UUID, tuple[str, float]] = {}  # node run -> (node, started)
        self._speaking: set[UUID] = set()  # chat-model runs of the speaking node
        self._prices: dict[UUID, dict[str, float] | None] = {}  # chat-model run -> its price
        self._said: list[str] = []  # the speaking node's tokens so far
        self._ended = False  # the run is over (the record is complete but for the owner's fields)
        self.emitted = False

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._started) * 1000, 2)

    # ------------------------------------------------------------------ the run's callbacks

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._ended:
            return
        if parent_run_id is None:
            if self._root is None:
                self._root = run_id
                self.record.question = self.record.question or _question(inputs)
        elif parent_run_id == self._root and metadata and (node := metadata.get("langgraph_node")):
            self._nodes[run_id] = (node, time.perf_counter())

    def on_chain_end(self, outputs: dict[str, Any] | Any, *, run_id: UUID, **kwargs: Any) -> None:
        if self._ended:
            return
        if run_id == self._root:
            if isinstance(outputs, dict):
                self.record.take_state(outputs)  # the final state: what the turn returned
            self._end()
        elif (started := self._nodes.pop(run_id, None)) is not None:
            node, at = started
            self.record.nodes_ms[node] = round((time.perf_counter() - at) * 1000, 2)
            if isinstance(outputs, dict):
                self._fold(outputs)
            if node == SPEAKING_NODE and self.record.first_token_ms is None and self.record.answer:
                self.record.first_token_ms = self.elapsed_ms()  # an answer that did not stream

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if self._ended:
            return
        if run_id == self._root:
            self.ended_by(error)
        elif (started := self._nodes.pop(run_id, None)) is not None:
            node, at = started
            self.record.nodes_ms[node] = round((time.perf_counter() - at) * 1000, 2)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._prices[run_id] = (metadata or {}).get(PRICE_KEY)
        if metadata and metadata.get("langgraph_node") == SPEAKING_NODE:
            self._speaking.add(run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        price = self._prices.pop(run_id, None)
        if self.emitted:
            return
        usage = usage_of(response)
        if usage is None:  # the call happened but its size is unknown: so is the turn's cost
            self.record.add_usage(0, 0, None)
            return
        input_tokens, output_tokens = usage
        self.record.add_usage(input_tokens, output_tokens, cost_usd(*usage, price) if price else None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        price = self._prices.pop(run_id, None)
        partial = kwargs.get("response")
        if self.emitted or not isinstance(partial, LLMResult) or not any(partial.generations):
            return  # refused before it said anything (an HTTP error): nothing was generated
        # Cut short after it began (a timeout, a barge-in): billed, but the usage chunk never came.
        usage = usage_of(partial)
        self.record.add_usage(*(usage or (0, 0)), cost_usd(*usage, price) if usage and price else None)

    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], *, run_id: UUID, **kwargs: Any) -> None:
        if isinstance(token, str) and token and run_id in self._speaking and not self._ended:
            if self.record.first_token_ms is None:
                self.record.first_token_ms = self.elapsed_ms()
            self._said.append(token)

    # ------------------------------------------------------------------ the owner's side

    def ended_by(self, error: BaseException) -> None:
        """The run raised `error`: cancelled, or failed."""
        if self._ended:
            return
        if isinstance(error, CANCELLATIONS):
            self.record.cancelled = True
        else:
            self.record.failed, self.record.degraded = type(error).__name__, True
            self.record.error = str(error)[:ERROR_CHARS] or None
        self._end()

    def add_sink(self, sink: Sink) -> None:
        """One more sink for this turn's record (a tracer's `turn_finished`)."""
        self._sinks.append(sink)

    def close(self) -> TurnRecord:
        """The turn is over: complete the record and emit it (once)."""
        self._end()
        if not self.emitted:
            self.emitted = True
            emit(self.record, self._sinks)
        return self.record

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.record.total_ms = self.elapsed_ms()
        if not self.record.answer and self._said:
            self.record.answer = "".join(self._said)  # cut short: what was said before it stopped
        if not self._hold:
            self.close()

    def _fold(self, update: dict[str, Any]) -> None:
        """A node's state update, as the graph's reducers would apply it."""
        values = {key: value.value if isinstance(value, Overwrite) else value for key, value in update.items()}
        problems = values.pop("problems", None)
        if problems is not None:
            if isinstance(update.get("problems"), Overwrite):
                self.record.problems = []
            self.record.problems += [dict(p) for p in problems]
        self.record.take_state(values)


@contextmanager
def observing(record: TurnRecord, sinks: list[Sink]) -> Iterator[TurnObserver]:
    """An observer for a turn this code runs: the record is emitted once the block ends, however
    it ends (an exception out of the block marks it cancelled or failed, and goes on)."""
    observer = TurnObserver(record, sinks, hold=True)
    try:
        yield observer
    except BaseException as exc:
        observer.ended_by(exc)
        raise
    finally:
        observer.close()


def _question(inputs: Any) -> str:
    """The question a run was given: `question`, or the text of the last user message."""
    if not isinstance(inputs, dict):
        return ""
    if isinstance(inputs.get("question"), str):
        return str(inputs["question"])
    for message in reversed(inputs.get("messages") or []):
        if isinstance(message, BaseMessage) and message.type == "human":
            return message.text
        if isinstance(message, dict) and message.get("role", message.get("type")) in ("user", "human"):
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""
