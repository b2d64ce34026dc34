"""multi_worker: how long a second process (no shared disk) takes to serve a version written elsewhere.

A writer (`KnowledgeBaseManager`) and a reader (`KeywordUpkeep` with no index folder: a worker on
another machine, which cannot load the writer's saved copy) share one collection of 100k one-chunk
documents (embedded Chroma, cached in benchmarks/.data/multi_worker, written straight to Chroma
with random vectors as `synthetic.py` does). After each write by the writer, the reader's `refresh`
is timed: the catch-up by the change log (`change_log.py`, `keyword_catch_up.catch_up_documents`:
the chunks of the documents the write touched, `KeywordIndex.updated`), against the full rebuild
from Chroma (timed on the reader's first build, which is one) and the catch-up without the log
(ids and metadata of every chunk compared: what a reader behind a repair's version does). Writes:
one document changed and one added (3 times), 1% of the documents rewritten, then one more small
write read without the log. Each caught-up index is checked against the writer's own (which equals a
rebuild), and its new text is found by keyword. Searches run on the old index meanwhile (the GIL is
shared with the catch-up thread).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from statistics import median
from typing import Any

import numpy as np

from benchmarks import keyword_incremental, synthetic
from benchmarks.common import DATA_DIR, Result, bench_settings, log, now, print_table
from benchmarks.keyword_incremental import marked
from retrievers.documents import Document
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base import KnowledgeBaseManager, keyword_upkeep
from retrievers.knowledge_base.keyword_upkeep import KeywordUpkeep

NAME = "multi_worker"
SMALL_WRITES = 3
LARGE_WRITE_SHARE = 0.01
SEARCH_QUERY = "battery life of the headphones"
SEARCH_EVERY_S = 0.05


def open_collection(count: int, base: list[synthetic.Paragraph]) -> KnowledgeBaseManager:
    return keyword_incremental.open_collection(count, base, benchmark=NAME, prefix="workers")


def catch_up_timed(kb: KnowledgeBaseManager, reader: KeywordUpkeep, marker: str, expect: str) -> dict[str, Any]:
    """The reader's refresh after a write elsewhere: its time, whether it rebuilt, and checks."""
    rebuilds: list[int] = []
    build = reader.build_from_chroma

    def counting(*args: Any) -> Any:
        rebuilds.append(1)
        return build(*args)

    reader.build_from_chroma = counting  # type: ignore[method-assign,assignment]
    serving = reader.index
    assert serving is not None
    refreshed: list[KeywordIndex] = []
    started = now()
    refresh = threading.Thread(target=lambda: refreshed.append(reader.refresh()))  # in the background, as served
    refresh.start()
    searches = searching(serving, until=refresh.is_alive)  # turns searching the old index meanwhile
    refresh.join()
    seconds, index = now() - started, refreshed[0]
    reader.build_from_chroma = build  # type: ignore[method-assign]
    writer = kb.keyword_upkeep.index
    assert reader.version == kb.index_version and writer is not None
    assert index.chunk_ids == writer.chunk_ids and index.metadatas == writer.metadatas
    assert [index.chunk_ids[hit.row] for hit in index.search(marker, 3)] == [f"{expect}::0"]
    return {"s": seconds, "rebuilt": bool(rebuilds), "search_ms": searches}


def searching(index: KeywordIndex, until: Callable[[], bool]) -> list[float]:
    """Latencies (ms) of keyword searches on `index`, one every `SEARCH_EVERY_S`, while `until()`."""
    latencies: list[float] = []
    while until():
        started = now()
        index.search(SEARCH_QUERY, 10)
        latencies.append((now() - started) * 1000)
        time.sleep(SEARCH_EVERY_S)
    return latencies


async def run(quick: bool) -> Result:
    count = 10_000 if quick else 100_000
    settings = bench_settings(DATA_DIR / NAME)
    base = synthetic.paragraphs(settings.chunk_size, settings.chunk_overlap)
    docs = synthetic.documents(base, 0, count)
    kb = open_collection(count, base)
    await kb.keyword_index()
    reader = KeywordUpkeep(kb.store, None, refresh_interval_s=0)
    log(f"the reader's first index: a full build from Chroma ({count:,} chunks)")
    started = now()
    reader.refresh()
    rebuild_s = now() - started

    started = now()
    listed = sum(len(page) for page in kb.store.pages(texts=False))
    listing_s = now() - started
    assert listed == count

    idle_until = now() + 3.0
    assert reader.index is not None
    idle = searching(reader.index, until=lambda: now() < idle_until)
    run_id = uuid.uuid4().hex[:6]
    rng = np.random.default_rng(7)
    small: list[dict[str, Any]] = []
    for n in range(SMALL_WRITES):
        doc = docs[int(rng.integers(len(docs)))]
        added = marked(docs[n].model_copy(update={"id": f"bench-added-{run_id}-{n}"}), f"zq{run_id}a{n}")
        await kb.index_documents([marked(doc, f"zq{run_id}c{n}"), added])
        small.append(catch_up_timed(kb, reader, f"zq{run_id}a{n}", added.id))
    rewritten = [docs[int(i)] for i in rng.choice(len(docs), int(count * LARGE_WRITE_SHARE), replace=False)]
    changed: list[Document] = [marked(doc, f"zq{run_id}l{n}") for n, doc in enumerate(rewritten)]
    log(f"rewriting {len(changed):,} documents")
    await kb.index_documents(changed)
    large = catch_up_timed(kb, reader, f"zq{run_id}l0", changed[0].id)
    log("one more small write, caught up without the change log")
    unlogged_doc = marked(docs[SMALL_WRITES].model_copy(update={"id": f"bench-added-{run_id}-u"}), f"zq{run_id}u")
    await kb.index_documents([unlogged_doc])
    found = keyword_upkeep.documents_between
    keyword_upkeep.documents_between = lambda *args: None  # type: ignore[assignment]
    try:
        unlogged = catch_up_timed(kb, reader, f"zq{run_id}u", unlogged_doc.id)
    finally:
        keyword_upkeep.documents_between = found
    for doc_id in [f"bench-added-{run_id}-{n}" for n in range(SMALL_WRITES)] + [unlogged_doc.id]:
        await kb.delete(doc_id)  # back to `count` chunks: the next run reuses the collection
    await kb.close()
    figures = {
        "chunks": count,
        "full_rebuild_s": round(rebuild_s, 2),
        "list_ids_and_metadata_s": round(listing_s, 2),
        "catch_up_small_write_s": {
            "median": round(median(r["s"] for r in small), 2),
            "max": round(max(r["s"] for r in small), 2),
        },
        "catch_up_1pct_write_s": round(large["s"], 2),
        "catch_up_without_log_s": round(unlogged["s"], 2),
        "rebuilt_instead": sum(r["rebuilt"] for r in [*small, large, unlogged]),
        "search_ms_idle": _ms(idle),
        "search_ms_during_catch_up": _ms([ms for r in [*small, large] for ms in r["search_ms"]]),
        "search_ms_during_catch_up_without_log": _ms(unlogged["search_ms"]),
    }
    report(figures)
    return Result(NAME, quick, figures)


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(median(ordered), 1),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
    }


def report(figures: dict[str, Any]) -> None:
    print_table(
        f"multi_worker: a version written elsewhere, caught up by a process with no shared disk "
        f"({figures['chunks']:,} chunks), s",
        ["step", "s"],
        [
            ["full rebuild from Chroma (before)", figures["full_rebuild_s"]],
            ["by the change log, 1 changed + 1 added document, median", figures["catch_up_small_write_s"]["median"]],
            ["by the change log, 1 changed + 1 added document, max", figures["catch_up_small_write_s"]["max"]],
            ["by the change log, 1% of documents rewritten", figures["catch_up_1pct_write_s"]],
            ["without the log (every chunk compared), 1 added document", figures["catch_up_without_log_s"]],
            ["  of which: listing ids and metadata", figures["list_ids_and_metadata_s"]],
            ["refreshes that rebuilt instead", figures["rebuilt_instead"]],
            ["keyword search, idle: median / max ms", _pair(figures["search_ms_idle"])],
            ["search during a catch-up by the log: median / max ms", _pair(figures["search_ms_during_catch_up"])],
            [
                "search during a catch-up without it: median / max ms",
                _pair(figures["search_ms_during_catch_up_without_log"]),
            ],
        ],
    )


def _pair(ms: dict[str, float]) -> str:
    return f"{ms['median']} / {ms['max']}"
