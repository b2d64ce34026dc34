"""A stand-in for one voice worker's knowledge-base reads, for the multi-worker test.

Opens the knowledge base as the product does (`voicerag.services`: settings from the environment,
CHROMA_URL, its own VOICERAG_DATA_DIR), warms it (model, keyword index), prints `{"ready": ...}`, then
searches continuously as turns would — each search the product's `candidates` (the keyword index of
the version this process knows, refreshed in the background, and the dense search over it) — and
prints one JSON line per search: wall-clock end time, latency, and whether the document `FACT_DOC`
is found by keyword and by dense search for the query `FACT_QUERY`. Ends when `STOP_FILE` exists,
printing `{"rebuilds": n}`: full rebuilds of the keyword index after warm-up (catch-ups are not).

Usage: python tests/kb_worker_driver.py (settings and FACT_DOC, FACT_QUERY, STOP_FILE from the environment).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base.ingest import ProgressCallback
from voicerag.services import build_embeddings, build_knowledge_base
from voicerag.settings import load_settings

PAUSE_S = 0.02  # between searches: a busy worker, leaving some CPU to the others


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


async def main() -> None:
    settings = load_settings()
    embeddings = build_embeddings(settings)
    kb = build_knowledge_base(settings, embeddings)
    doc, query, stop = os.environ["FACT_DOC"], os.environ["FACT_QUERY"], Path(os.environ["STOP_FILE"])
    try:
        await kb.search(query)  # warm: the model, the keyword index of the current version
        rebuilds = 0
        build = kb.keyword_upkeep.build_from_chroma

        def counting_build(progress: ProgressCallback | None = None) -> KeywordIndex:
            nonlocal rebuilds
            rebuilds += 1
            return build(progress)

        kb.keyword_upkeep.build_from_chroma = counting_build  # type: ignore[method-assign]
        emit({"ready": time.time(), "version": kb.index_version})
        while not await asyncio.to_thread(stop.exists):
            started = time.perf_counter()
            found = await kb.candidates(query)
            latency_ms = (time.perf_counter() - started) * 1000
            emit(
                {
                    "t": time.time(),
                    "ms": round(latency_ms, 2),
                    "keyword": found is not None and doc in found.keyword,
                    "dense": found is not None and doc in found.dense,
                    "version": kb.index_version,
                }
            )
            await asyncio.sleep(PAUSE_S)
        emit({"rebuilds": rebuilds})
    finally:
        await kb.close()
        embeddings.close()


if __name__ == "__main__":
    asyncio.run(main())
