"""LangSmith: one masked trace per turn (`LANGSMITH_TRACING=true`), whichever front door runs it.

A turn's trace is its graph run: the root run `voicerag`, the node runs, the chat models (router,
grader, answer: token usage from their `usage_metadata`), the knowledge-base search as a
`retriever` run with `{"documents": [...]}`, each source call as a `tool` run named after the source
(status, elapsed time, cache hit in its outputs). The handler, `TurnTracer`, is LangChain's own
`LangChainTracer` given the product's client, so LangChain adds no default tracer beside it (it adds
one only to a run with no `LangChainTracer`), and the process's default client is this one too:
whatever LangChain traces on its own goes through the same masking.

- Metadata on every run of the turn (LangSmith counts a thread's runs, tokens and cost by it):
  `turn_id`, `session_id` and `thread_id` (the call, the `chat` session, the Studio thread:
  LangSmith groups a session's traces as a thread by either key), `user_id` (a pseudonym:
  `pseudonyms.py`), `tenant`, `front_door`. On the root only, once the turn is over
  (`turn_finished`: route, degraded and the voice stage timings are known only then): `language`,
  `route`, `route_reason`, `degraded`, `cancelled`, `speculative`, `failed`, `first_token_ms`, `total_ms`,
  `llm_calls`, `cost_usd`, and for voice `end_of_turn_delay_ms`, `transcription_delay_ms`,
  `end_of_turn_ms`, `filler`. The root's end is held until then (its children are sent as they
  end), so the root is sent once, complete. A root whose end never comes (a cancelled run whose
  error event is lost) is ended by `turn_finished` after `ROOT_GRACE_S`, or at `close`.
- TTS time to first byte is measured by LiveKit after the turn's record is closed (the speech is
  synthesised after the graph's run): `turn_spoken` sends it as a second update of the root run
  (`tts_ttfb_ms` in its metadata, and `interrupted` when the caller spoke over the answer).
- Masking: the client's `hide_inputs`/`hide_outputs`/`hide_metadata` are the product's masker
  (`langsmith_masking.py`); run errors are masked by the handler before they are queued.
- Never on the turn's path: during the turn the handler only takes note of each callback (its
  arguments and the time, ~µs); when the turn is over (`turn_finished`) the notes go to the process's
  `TraceWorker` (`voicerag/tracing/worker.py`), whose thread replays them into LangChain's tracer
  with the times they happened: building the runs, masking and serialising them happen there, after
  the answer, while it is spoken. The client queues the runs (bounded, `LANGSMITH_TRACING_QUEUE_MAX_SIZE`,
  beyond it dropped) and its own background thread sends them. `close(timeout)` flushes for at most
  `timeout` seconds; what is still queued then is dropped (the thread is a daemon: a LangSmith that
  hangs or refuses connections never holds the process).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import langsmith
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client
from langsmith import utils as ls_utils

from graph.tracing import TurnTraceHandler
from graph.turn_record import TurnRecord
from retrievers.masking import mask
from voicerag.tracing.langsmith_masking import masked
from voicerag.tracing.pseudonyms import user_ids
from voicerag.tracing.worker import TraceWorker

if TYPE_CHECKING:
    from langchain_core.tracers.schemas import Run

    from voicerag.settings import Settings

log = logging.getLogger(__name__)

ROOT_GRACE_S = 2.0  # a finished turn waits this long for its root run's own end before ending it
SPOKEN_TURNS = 64  # finished turns kept, per process, for a late TTS figure
HTTP_TIMEOUT_MS = (2_000, 5_000)  # connect, read: a background send never waits longer
FLUSH_TIMEOUT_S = 1.0  # what closing waits for queued traces at most, whatever it is allowed
# The client's sending threads are daemons (a hanging LangSmith never holds the exit) and send from
# their own thread: run compression would send from a thread pool the interpreter joins at exit.
CLIENT_ENVIRONMENT = {"LANGSMITH_USE_DAEMON": "true", "LANGSMITH_DISABLE_RUN_COMPRESSION": "true"}
ROOT_FIGURES = (
    "language", "route", "route_reason", "degraded", "cancelled", "speculative", "failed", "first_token_ms", "total_ms",
    "llm_calls", "cost_usd", "end_of_turn_ms", "end_of_turn_delay_ms", "transcription_delay_ms", "filler",
    "tts_ttfb_ms",
)  # fmt: skip


# LangChain's tracer callbacks that build runs: on the turn's path each is only noted (`_note`).
REPLAYED = (
    "on_chain_start", "on_chain_end", "on_chain_error", "on_chat_model_start", "on_llm_start", "on_llm_new_token",
    "on_llm_end", "on_llm_error", "on_retry", "on_tool_start", "on_tool_end", "on_tool_error", "on_retriever_start",
    "on_retriever_end", "on_retriever_error",
)  # fmt: skip
Note = tuple[str, datetime, tuple[Any, ...], dict[str, Any]]  # callback, when, its arguments


class TurnTracer(LangChainTracer, TurnTraceHandler):
    """One turn's LangSmith handler: LangChain's tracer, replayed after the turn on the trace worker,
    with the turn's metadata, masked errors and the root run held until the turn is over."""

    def __init__(self, record: TurnRecord, tracer: LangSmithTracer) -> None:
        ids = {
            "turn_id": record.turn_id,
            "session_id": record.session_id,
            "thread_id": record.session_id,
            "user_id": tracer.user_id(record.user_id),
            "tenant": record.tenant,
            "front_door": record.front_door,
        }
        metadata = {key: value for key, value in ids.items() if value}
        super().__init__(project_name=tracer.project, client=tracer.client, metadata=metadata)
        self._identity = metadata  # wins over the run's own (LangGraph's server copies the raw context there)
        self._tracer = tracer
        self._root: Run | None = None
        self._held: Callable[[Run], None] | None = None  # how to send the root, once it has ended
        self._record: TurnRecord | None = None  # set when the turn is over
        self._sent = False
        self._lock = threading.Lock()  # the root's end and the turn's end may race (Studio's server threads)
        self._notes: list[Note] | None = []  # None once the turn is over: later events go straight on
        self._at: datetime | None = None  # while replaying: when the event being replayed happened

    def _note(self, callback: str, *args: Any, **kwargs: Any) -> None:
        """On the turn's path: remember the event and when it happened; nothing else."""
        note = (callback, datetime.now(UTC), args, kwargs)
        with self._lock:
            if self._notes is not None:
                self._notes.append(note)
                return
        self._tracer.worker.submit(self._replay, [note])  # after the turn (a late cancellation's error)

    def _replay(self, notes: list[Note]) -> None:
        """On the trace worker: the events, into LangChain's tracer, each at the time it happened."""
        for callback, at, args, kwargs in notes:
            self._at = at
            try:
                getattr(LangChainTracer, callback)(self, *args, **kwargs)
            except Exception as exc:  # one bad event (say an unknown run id) loses that run, not the turn's
                log.debug("LangSmith: %s not traced: %s", callback, type(exc).__name__)
        self._at = None

    def copy_with_metadata_defaults(self, *, metadata: Any = None, tags: list[str] | None = None) -> LangChainTracer:
        return self  # one handler per turn: its state (the held root) must not be split between copies

    # ------------------------------------------------------------------ LangChain's tracer hooks

    def _start_trace(self, run: Run) -> None:
        if self._at is not None:  # replayed: the run started when the event happened, not now
            run.start_time = self._at
            run.events[0]["time"] = self._at
        run.extra["metadata"] = {**run.metadata, **self._identity}
        if self._root is None:
            self._root = run  # the first run of a turn's handler is the graph's root run
        super()._start_trace(run)

    def _end_trace(self, run: Run) -> None:
        if self._at is not None and run.end_time is not None:
            run.end_time = self._at
            run.events[-1]["time"] = self._at
        if run.error:
            run.error = mask(run.error)  # the client masks inputs, outputs and metadata, not errors
        super()._end_trace(run)

    def _on_chain_end(self, run: Run) -> None:
        if run is self._root:
            self._root_ended(super()._on_chain_end)
        else:
            super()._on_chain_end(run)

    def _on_chain_error(self, run: Run) -> None:
        if run is self._root:
            self._root_ended(super()._on_chain_error)
        else:
            super()._on_chain_error(run)

    def _on_llm_new_token(self, run: Run, token: str | list[str | dict[str, Any]], chunk: Any) -> None:
        if self._at is not None and run.events:
            run.events[-1]["time"] = self._at  # LangSmith's time to first token reads these events
        super()._on_llm_new_token(run, token, chunk)

    # ------------------------------------------------------------------ the turn's end

    def turn_finished(self, record: TurnRecord) -> None:
        """The turn is over: its events, then its end, to the trace worker."""
        with self._lock:
            notes, self._notes = self._notes or [], None
        self._tracer.worker.submit(self._replay, notes)
        self._tracer.worker.submit(self._finish, record)

    def _finish(self, record: TurnRecord) -> None:
        with self._lock:
            self._record = record
            ready = self._held is not None
        if ready:
            self._send_root()
            return
        self._tracer.pending.add(self)
        grace = threading.Timer(ROOT_GRACE_S, self._tracer.worker.submit, (self.end_root,))
        grace.daemon = True
        grace.start()

    def end_root(self) -> None:
        """The turn is over but its root run never ended (cancelled, its error event lost): end it now."""
        with self._lock:
            root, due = self._root, self._held is None and not self._sent and self._record is not None
        if root is None or not due:
            return
        root.end_time = datetime.now(UTC)
        if root.error is None and self._record is not None:
            root.error = "cancelled" if self._record.cancelled else (self._record.failed or "ended before its run")
        self._held = self._update_run_single
        self._send_root()

    def _root_ended(self, send: Callable[[Run], None]) -> None:
        with self._lock:
            if self._sent or self._held is not None:
                return
            self._held = send
            ready = self._record is not None
        if ready:
            self._send_root()

    def _send_root(self) -> None:
        with self._lock:
            root, send, record = self._root, self._held, self._record
            if self._sent or root is None or send is None or record is None:
                return
            self._sent = True
        self._tracer.pending.discard(self)
        root.extra["metadata"] = {**root.metadata, **self._tracer.root_figures(record)}
        send(root)
        self._tracer.remember(record, root)


def _noting(callback: str) -> Callable[..., None]:
    def note(self: TurnTracer, *args: Any, **kwargs: Any) -> None:
        self._note(callback, *args, **kwargs)

    note.__name__ = callback
    return note


for _callback in REPLAYED:  # each of LangChain's run-building callbacks, only noted on the turn's path
    setattr(TurnTracer, _callback, _noting(_callback))


class LangSmithTracer:
    """The process's LangSmith tracer (a `graph.tracing.Tracer`): one `TurnTracer` per turn, and the
    worker their runs are built on."""

    def __init__(self, client: Client, project: str | None, user_id: Callable[[str], str]) -> None:
        self.client = client
        self.project = project
        self.user_id = user_id
        self.pending: weakref.WeakSet[TurnTracer] = weakref.WeakSet()  # turns whose root has not ended
        self._sent: OrderedDict[str, Run] = OrderedDict()  # turn id -> its root run, for `turn_spoken`
        self._lock = threading.Lock()
        self.worker = TraceWorker("langsmith-traces")

    def __call__(self, record: TurnRecord) -> list[BaseCallbackHandler]:
        return [TurnTracer(record, self)]

    def root_figures(self, record: TurnRecord) -> dict[str, Any]:
        figures = {name: getattr(record, name, None) for name in ROOT_FIGURES}
        return {name: value for name, value in figures.items() if value is not None}

    def remember(self, record: TurnRecord, root: Run) -> None:
        if record.front_door != "voice":
            return
        with self._lock:
            self._sent[record.turn_id] = root
            while len(self._sent) > SPOKEN_TURNS:
                self._sent.popitem(last=False)

    def turn_spoken(self, record: TurnRecord) -> None:
        """LiveKit measured the turn's TTS time to first byte (after the turn's record was closed):
        the root run is updated with it (on the trace worker, after the turn's own runs)."""
        self.worker.submit(self._spoken, record)

    def _spoken(self, record: TurnRecord) -> None:
        with self._lock:
            root = self._sent.pop(record.turn_id, None)
        if root is None or (record.tts_ttfb_ms is None and not record.interrupted):
            return
        heard = {"tts_ttfb_ms": record.tts_ttfb_ms, "interrupted": record.interrupted}
        root.extra["metadata"] = {**root.metadata, **{key: value for key, value in heard.items() if value is not None}}
        self.client.update_run(
            root.id,
            trace_id=root.trace_id,
            dotted_order=root.dotted_order,
            parent_run_id=root.parent_run_id,
            end_time=root.end_time,
            extra=root.extra,
            session_name=root.session_name,
        )

    def close(self, timeout_s: float) -> None:
        """End the roots still held, then send what is queued, for at most `timeout_s` (and
        `FLUSH_TIMEOUT_S`): what is left is dropped with the process's daemon threads."""
        timeout_s = min(timeout_s, FLUSH_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        for turn in list(self.pending):
            self.worker.submit(turn.end_root)
        if not self.worker.drain(timeout_s / 2):
            log.warning("LangSmith: %d turns not traced within %.1f s, dropped", self.worker.waiting, timeout_s / 2)
        try:
            self.client.flush(timeout=max(deadline - time.monotonic(), 0.0))
        except Exception as exc:  # never fail a process's exit over its traces
            log.warning("LangSmith: traces not flushed: %s", mask(str(exc)))
        queue = self.client.tracing_queue
        if queue is not None and queue.unfinished_tasks:
            log.warning("LangSmith: %d trace operations not sent within %.1f s, dropped", queue.qsize(), timeout_s)


def open_langsmith(settings: Settings) -> LangSmithTracer:
    """The tracer the settings describe; the process's default LangSmith client becomes its client."""
    os.environ.update(CLIENT_ENVIRONMENT)
    ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]  # the client reads them through this cache
    client = Client(
        api_url=str(settings.langsmith_endpoint).rstrip("/") if settings.langsmith_endpoint else None,
        api_key=settings.langsmith_api_key.get_secret_value() if settings.langsmith_api_key else None,
        timeout_ms=HTTP_TIMEOUT_MS,
        hide_inputs=masked,
        hide_outputs=masked,
        hide_metadata=masked,
    )
    langsmith.configure(client=client)  # LangChain's own default tracer, if it ever adds one, masks too
    return LangSmithTracer(client, settings.langsmith_project, user_ids(settings))
