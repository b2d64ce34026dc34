"""The graph for LangGraph Studio and `langgraph dev`: a module-level compiled `graph`.

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
then; the keyword index loads on the first run), and live as long as the server process. A
wrong setting fails the import with a `UserInputError` naming the variable: the server logs
"Graph 'voicerag' failed to load: ... EMBEDDINGS: ..." and exits.
"""

from __future__ import annotations

from graph.builder import VoiceGraph, build_graph
from voicerag.services import build_services
from voicerag.settings import load_settings

__all__ = ["graph"]

graph: VoiceGraph = build_graph(build_services(load_settings()))
