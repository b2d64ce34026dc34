"""The one path that changes a knowledge base, all-or-nothing as seen by readers and the next writer.

A write, under the writer lock (`writer_lock.py`; one writer per knowledge base across processes):

1. mark the collection as being written (`kb_writing` in its metadata);
2. upsert the chunks, every head chunk last: a document counts as stored only when its head and all
   its chunks, carrying the head's hash, are there (`consistency.py`), so until then it is absent;
3. delete the stale chunks (heads first);
4. derive the keyword index of a new version from the previous one and the write (over another
   process's version: also the documents its change log names; after a repair, or past the log,
   build and save it from what Chroma now holds);
5. stamp that version, with the documents it touched (`change_log.py`), which also clears the
   mark: only now do other processes switch to it, reading only those documents.

A process killed at any step leaves the mark. The next writer finds it and first repairs (`recover`):
it deletes every document that is not whole and every stray chunk, then commits a fresh version, so
that its own ingest re-adds what was lost. A store written by the older scheme is verified the same
way once. A write that fails (Chroma down, a timeout) also leaves the mark, for the same repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from retrievers.errors import ServiceError
from retrievers.knowledge_base.chroma_store import ChromaStore
from retrievers.knowledge_base.consistency import verify
from retrievers.knowledge_base.ingest import ProgressCallback, StageCounter, WritePlan
from retrievers.knowledge_base.keyword_upkeep import KeywordUpkeep
from retrievers.knowledge_base.writer_lock import DEFAULT_LOCK_TIMEOUT_S, WriterLock

_LOCK_POLL_S = 0.2  # between tries of a lock another writer holds

WaitCallback = Callable[[str], None]  # told the lock's name once, when a writer has to wait


@dataclass(frozen=True, slots=True)
class Repair:
    """What `recover` removed: what a write cut short had left behind."""

    documents: int  # documents with a head that were not whole
    strays: int  # chunks with no document, or past their document's count


class Writer:
    """Writes of one knowledge base: one at a time in this process and, with `lock`, across processes."""

    def __init__(
        self,
        store: ChromaStore,
        upkeep: KeywordUpkeep,
        lock: WriterLock,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.upkeep = upkeep
        self.lock = lock
        self.lock_timeout_s = lock_timeout_s
        self._local = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def exclusive(self, on_wait: WaitCallback | None = None) -> AsyncIterator[None]:
        """Held from reading what is stored (to plan) until the new version is stamped."""
        async with self._local:
            await self._acquire(on_wait)
            try:
                yield
            finally:
                self.lock.release()

    async def _acquire(self, on_wait: WaitCallback | None) -> None:
        """Try the lock until it is free (telling `on_wait` once) or `lock_timeout_s` has passed."""
        deadline = time.monotonic() + self.lock_timeout_s
        told = False
        while not self.lock.try_acquire():
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"gave up waiting for another writer of {self.store.name!r} after {self.lock_timeout_s:g} s "
                    f"(lock: {self.lock.name})"
                )
            if on_wait is not None and not told:
                on_wait(self.lock.name)
                told = True
            await asyncio.sleep(_LOCK_POLL_S)

    def recover(self, progress: ProgressCallback | None = None) -> Repair | None:
        """Repair what a write cut short left (see the module's docstring); None: nothing to repair."""
        state = self.store.read_state()
        if not state.writing and (state.current_format or self.store.count() == 0):
            return None
        self.store.begin_write()
        verdict = verify((chunk_id, meta) for page in self.store.pages(texts=False) for chunk_id, _, meta in page)
        self.store.delete(verdict.delete, on_batch=self._guarded("repair", len(verdict.delete), progress))
        self.commit(progress)
        return Repair(documents=len(verdict.broken), strays=verdict.strays)

    def apply(self, plan: WritePlan, progress: ProgressCallback | None = None) -> None:
        """Write the plan's chunks (heads last), delete its stale ones (heads first), then commit."""
        base = self.store.read_version()  # what the keyword index may be derived from
        self.store.begin_write()
        self.lock.ensure_held()
        written = self._guarded("write", len(plan.ids), progress)
        for heads in (False, True):  # every other chunk first, then the heads: a document appears whole
            rows = [i for i, meta in enumerate(plan.metadatas) if (meta.get("chunk_index") == 0) == heads]
            self.store.upsert(
                [plan.ids[i] for i in rows],
                plan.vectors[rows],
                [plan.texts[i] for i in rows],
                [plan.metadatas[i] for i in rows],
                on_batch=written,
            )
        stale = sorted(plan.stale_ids, key=lambda chunk_id: not chunk_id.endswith("::0"))
        self.store.delete(stale, on_batch=self._guarded("delete", len(stale), progress))
        self.commit(progress, (base, plan))

    def commit(self, progress: ProgressCallback | None = None, write: tuple[str, WritePlan] | None = None) -> str:
        """Make the keyword index of a new version, then stamp the version. `write`: (the version
        written over, the plan written), from which the index is derived without a rebuild; without
        it the index is built and saved first, so other processes that see the version load the
        saved copy instead of rebuilding (41 s at 100k chunks)."""
        version = uuid.uuid4().hex
        base: str | None = None
        documents: set[str] | None = None  # what the write touched; unknown after a repair
        if write is None:
            self.upkeep.install(version, progress)
        else:
            base, plan = write
            self.upkeep.apply(base, version, plan, progress)
            documents = plan.documents()
        self.lock.ensure_held()
        if progress:
            progress("stamp", 0, 1)
        # With the write's documents in the change log, other processes read only those (no scan).
        self.store.stamp_version(version, base, documents)
        if progress:
            progress("stamp", 1, 1)
        self.upkeep.mark_checked()
        self.upkeep.prune_saved()
        return version

    def _guarded(self, stage: str, total: int, progress: ProgressCallback | None) -> Callable[[int], None]:
        """A per-batch callback: checks the lock is still held, then reports progress."""
        counter = StageCounter(stage, total, progress) if progress and total else None

        def after_batch(done: int) -> None:
            self.lock.ensure_held()
            if counter is not None:
                counter(done)

        return after_batch

    def close(self) -> None:
        self.lock.close()
