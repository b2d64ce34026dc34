"""The graph for LangGraph Studio and `langgraph dev`: `graph`, a factory of the compiled graph, observed.

`langgraph.json` at the project root serves it as graph id `voicerag`. From the project root:

    make demo      # once: ingests data/knowledge_base into .voicerag
    make studio    # LANGGRAPH_CLI_NO_ANALYTICS=1 .venv/bin/langgraph dev --no-browser --port 2024 ...

The API (and its docs at /docs) works offline; the Studio UI itself is hosted by LangSmith.

Settings come from the environment and `.env`, read by pydantic-settings from the working
directory (the project root) exactly as for the `voicerag` command, the environment winning
over `.env`: `VOICERAG_DATA_DIR` must point at an ingested knowledge base and `EMBEDDINGS` must
name the model it was ingested with. `langgraph.json` sets `"env": {}` on purpose: with
`"env": ".env"` the server copies `.env` into the environment *over* the variables already set,
so `VOICERAG_DATA_DIR=... make studio` would be ignored. The graph package never reads
settings, which is why this module lives in `voicerag/`.

Input: `{"messages": [{"role": "user", "content": "..."}]}` or `{"question": "..."}` (the graph's
`InputState`; its output is `OutputState`). The per-turn `Context` (`graph/context.py`: user,
roles, language, top_k, ...) is the assistant's context schema,
which Studio shows as the run's context form; every field has a default.

The server brings its own checkpointer, so Studio threads keep their history (in
`.langgraph_api/` in the working directory, gitignored). Services are built once, when the
server imports this module (the embedding model, the Chroma client and the vector cache open
then, and the model is loaded; the keyword index loads on the first run), and live as long as the server process. A
wrong setting fails the import with a `UserInputError` naming the variable: the server logs
"Graph 'voicerag' failed to load: ... EMBEDDINGS: ..." and exits.

Every run is a turn like any other front door's: `graph` is a graph factory (the server calls it
with each run's config) returning the one compiled graph with a `TurnObserver` of that run attached
(`with_config(callbacks=...)`). Its record, front door `studio`, goes to the per-turn log line and
the audit log (one writer for the server process, closed at exit within `CLOSE_TIMEOUT_S`). The
caller is the run's context (the server mirrors it into the config's `configurable`); the session
is the thread (none for a threadless run); the turn id is the server's run id.
"""

from __future__ import annotations

import atexit
import uuid
from dataclasses import fields
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from graph.builder import VoiceGraph, build_graph
from graph.context import Context
from graph.observer import TurnObserver
from graph.tracing import turn_config
from graph.turn_record import TurnRecord, log_turn
from voicerag import metrics
from voicerag.audit import open_audit_writer
from voicerag.audit.turns import audit_sink
from voicerag.audit.wiring import CLOSE_TIMEOUT_S
from voicerag.services import build_services
from voicerag.settings import load_settings
from voicerag.tracing import open_tracing

__all__ = ["compiled", "graph"]

_settings = load_settings()
_services = build_services(_settings)
_services.embeddings.embed_query("warm up")  # the model loads now, not in the first run (as the voice worker does)
compiled: VoiceGraph = build_graph(_services)
_audit = open_audit_writer(_settings)
atexit.unregister(_audit.close)  # its own registration waits 5 s: this process waits CLOSE_TIMEOUT_S
atexit.register(_audit.close, CLOSE_TIMEOUT_S)
if _settings.metrics_port:
    metrics.serve(_settings.metrics_port)  # /metrics of the server's turns, front door "studio"
_sinks = [log_turn, audit_sink(_audit), *metrics.turn_sinks()]
_tracing = open_tracing(_settings)
atexit.register(_tracing.close)  # bounded: a hanging tracing backend never holds the exit
_CONTEXT_FIELDS = frozenset(f.name for f in fields(Context))


def graph(config: RunnableConfig) -> VoiceGraph:
    """The graph of one Studio run (or of a schema read, which runs nothing), observed."""
    return compiled.with_config(turn_config(TurnObserver(studio_record(config), _sinks), _tracing.tracers))


def studio_record(config: RunnableConfig) -> TurnRecord:
    """The record a Studio run starts with: its caller, session and run id."""
    configurable: dict[str, Any] = dict(config.get("configurable") or {})
    try:
        context = Context(**{k: v for k, v in configurable.items() if k in _CONTEXT_FIELDS})
    except ValidationError:  # the run fails on it, naming the field; the record says who, as far as known
        context = Context()
    record = TurnRecord.for_context(context, "studio")
    record.turn_id = context.turn_id or str(configurable.get("run_id") or config.get("run_id") or uuid.uuid4().hex)
    record.session_id = context.session_id or str(configurable.get("thread_id") or "")
    return record
