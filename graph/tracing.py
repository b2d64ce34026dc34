"""The seam where tracers (LangSmith, OpenTelemetry) watch a turn, whichever front door runs it.

A front door runs each turn with `turn_config(observer, tracers)`: the run is named `voicerag` (the
root run a trace shows) and its callbacks are the turn's `TurnObserver` followed by the handlers
each tracer gives for this turn. A tracer is a function of the turn's record — live: the observer
fills it as the run goes — returning LangChain callback handlers. A handler that is a
`TurnTraceHandler` is also told `turn_finished(record)` once the record is complete (for voice,
after the run, with LiveKit's own stage timings): that is when route, degraded and the timings are
known. It gets the raw record, like every sink, and masks what it sends away.

The nodes report the knowledge-base search and each source call as child runs
(`graph/nodes/child_runs.py`), so a tracer sees retrieval and tools as LangChain events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig

from graph.observer import TurnObserver
from graph.turn_record import TurnRecord

ROOT_RUN_NAME = "voicerag"

Tracer = Callable[[TurnRecord], list[BaseCallbackHandler]]


class TurnTraceHandler(BaseCallbackHandler):
    """A tracer's handler that also wants the complete record of its turn."""

    def turn_finished(self, record: TurnRecord) -> None:
        """The turn is over and `record` complete (called once, guarded like a sink: a failure is
        logged and never reaches the turn)."""


def turn_config(observer: TurnObserver, tracers: Sequence[Tracer] = ()) -> RunnableConfig:
    """The run config of one observed turn: its name, the observer and each tracer's handlers."""
    handlers = [handler for tracer in tracers for handler in tracer(observer.record)]
    for handler in handlers:
        if isinstance(handler, TurnTraceHandler):
            observer.add_sink(handler.turn_finished)
    return {"callbacks": [observer, *handlers], "run_name": ROOT_RUN_NAME}
