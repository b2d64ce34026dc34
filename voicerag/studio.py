"""The graph for LangGraph Studio and `langgraph dev`: a module-level compiled `graph`.

`langgraph.json` at the project root serves it as graph id `voicerag`:

    make studio        # or: LANGGRAPH_CLI_NO_ANALYTICS=1 LANGSMITH_TRACING=false \\
                       #     .venv/bin/langgraph dev --no-browser --host 127.0.0.1 --port 2024

Settings come from the environment and `.env` (read by pydantic-settings from the working
directory, i.e. the project root), exactly as for the `voicerag` command: `VOICERAG_DATA_DIR`
must point at an ingested knowledge base (`voicerag ingest ...` first), `EMBEDDINGS` must name
the model it was ingested with. The graph package never reads settings, which is why this
module lives in `voicerag/`.

Input: `{"messages": [{"role": "user", "content": "..."}]}`. The per-turn `Context`
(`graph.state.Context`: user, roles, language, top_k, ...) is the assistant's context schema, so
Studio shows it as the run's context form; every field has a default.

The server runs without a checkpointer of ours (it brings its own, so threads keep their
history). Services are built once, when the server imports this module (the embedding model,
the Chroma client and the vector cache open then; the keyword index loads on the first run) and
live as long as the server process. A wrong setting fails the import with a `UserInputError`
naming the variable, which the server prints before it exits.
"""

from __future__ import annotations

from graph.builder import VoiceGraph, build_graph
from voicerag.services import build_services
from voicerag.settings import load_settings

__all__ = ["graph"]

graph: VoiceGraph = build_graph(build_services(load_settings()))
