"""Keeps this process's keyword (BM25) index equal to the collection's current version.

The index is derived from Chroma and never edited in place: a new `kb_version` means a new index. A
write made by this process derives it from the previous index and the write itself (`apply`: only
the written chunks are tokenised, well under a second at 100k chunks) and saves it under
`index_dir/<collection>/<version>` in a background thread once writes pause (the newest version
only; `close` saves at once and waits). Any other new version is caught up from the chunks it
changed (`keyword_catch_up.py`), or, when much changed, loaded from its saved copy or built from
every chunk in Chroma (41 s at 100k chunks). Only the newest saved copy is kept; a copy
is written beside its place and renamed into it, so a reader never loads half of one. A saved copy
made by another tokenizer is refused and rebuilt (see `KeywordIndex.load`). Writes by another
process are noticed at most every `refresh_interval_s` and the new index is built in the background
while the old one keeps serving. Rows are in chunk-id order whichever way an index was made, so
every process ranks ties alike.

An index holds only documents stored whole (`consistency.py`), with each chunk's content hash: it
is the snapshot readers trust, so a document being rewritten is briefly absent, never mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrievers.documents import embedding_text
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base.change_log import documents_between
from retrievers.knowledge_base.chroma_store import EMPTY_VERSION, ChromaStore, Row
from retrievers.knowledge_base.consistency import verify
from retrievers.knowledge_base.ingest import ProgressCallback, WritePlan
from retrievers.knowledge_base.keyword_catch_up import catch_up, catch_up_documents, rows_of

log = logging.getLogger(__name__)

# What filters and access control (masks) and counts need, and the version readers check chunks against.
_INDEXED_METADATA = ("doc_id", "category", "lang", "content_hash", "roles", "tenant")
SAVE_QUIET_S = 2.0  # a derived index is saved once no write came for this long (or on close)


class KeywordUpkeep:
    """The keyword index of the current version, for one collection in this process."""

    def __init__(self, store: ChromaStore, index_dir: Path | None, refresh_interval_s: float) -> None:
        self.store = store
        self.index_dir = index_dir
        self.refresh_interval_s = refresh_interval_s
        # (index, the version it is of), swapped as one reference: a reader never pairs one with the other's
        self._current: tuple[KeywordIndex | None, str | None] = (None, None)  # no index until first use
        self._swap = threading.Lock()  # a refresh may not put back an older version a write replaced meanwhile
        self._checked_at = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._saves = _LatestSaver(self._save_if_current)

    @property
    def index(self) -> KeywordIndex | None:
        return self._current[0]

    @property
    def version(self) -> str | None:
        """The version `index` is of."""
        return self._current[1]

    # ---- building: from a saved copy, or from Chroma

    def build(self, version: str, progress: ProgressCallback | None = None) -> KeywordIndex:
        """The index of `version`: its saved copy when there is a usable one, else read from Chroma
        (and saved for the next process)."""
        saved = self.saved_path(version)
        if saved and (saved / "chunks.json").exists():
            try:
                return _with_versions(KeywordIndex.load(saved))
            except Exception as exc:  # refused (another tokenizer, no versions) or damaged: rebuild it
                log.info("not reusing the saved keyword index %s: %s", saved, exc)
                shutil.rmtree(saved, ignore_errors=True)  # the rebuilt copy takes its place
        # (without progress, the plain call: tests count rebuilds by replacing `build_from_chroma`)
        index = self.build_from_chroma(progress) if progress else self.build_from_chroma()
        if saved:
            self._save(index, saved)
        return index

    def build_from_chroma(self, progress: ProgressCallback | None = None) -> KeywordIndex:
        """A BM25 index of the whole documents in the collection (title + text, as embedded).
        `progress("index", chunks read, chunks stored)` after each page read."""
        total = self.store.count() if progress else 0
        rows: list[Row] = []
        for page in self.store.pages(texts=True):
            rows.extend(page)
            if progress:
                progress("index", len(rows), max(total, len(rows)))
        whole = verify((chunk_id, meta) for chunk_id, _, meta in rows)
        kept = sorted((row for row in rows if whole.keeps(row[0])), key=lambda row: row[0])  # see the docstring
        return KeywordIndex([chunk_id for chunk_id, _, _ in kept], *_indexed(kept))

    def saved_path(self, version: str) -> Path | None:
        """Where the saved copy of `version` lives (None: nothing is saved)."""
        if self.index_dir is None or version == EMPTY_VERSION:
            return None
        return self.index_dir / self.store.name / version

    def _save(self, index: KeywordIndex, folder: Path, warn: bool = True) -> bool:
        """Save beside `folder`, then rename into it: another process (or this one's background save)
        saving the same version never mixes its files with these. False when it failed, which only
        costs a rebuild later."""
        partial = folder.with_name(f"{folder.name}.saving-{uuid.uuid4().hex}")
        try:
            index.save(partial)
            partial.rename(folder)  # fails when another copy got there first: that one serves
            return True
        except OSError as exc:
            if (folder / "chunks.json").exists():
                return True
            if warn:
                log.warning("could not save keyword index to %s: %s", folder, exc)
            return False
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _save_if_current(self, index: KeywordIndex, version: str) -> None:
        """The background save of a derived index, skipped once a newer version serves (whose
        commit may then prune this copy mid-save: no loss, so no warning)."""
        folder = self.saved_path(version)
        if folder is None or version != self.version:
            return
        if not self._save(index, folder, warn=False) and version == self.version:
            log.warning("could not save keyword index to %s", folder)
        self.prune_saved()  # the save may end after a newer version was stamped and pruned

    def prune_saved(self) -> None:
        """Keep only the saved copy of the version this process serves. Called once that version
        is stamped: until then other processes may still load the copy of the previous one."""
        keep = self.saved_path(self.version) if self.version else None
        if keep is None or not keep.parent.exists():
            return
        for old in keep.parent.iterdir():
            if old != keep and not old.name.startswith(f"{keep.name}.saving-"):  # its save under way
                shutil.rmtree(old, ignore_errors=True)

    # ---- following the version

    def install(self, version: str, progress: ProgressCallback | None = None) -> KeywordIndex:
        """Build (or load) the index of `version` and serve it from now on. The writer calls this
        for a version it is about to stamp, so the saved copy exists before others see it."""
        index = self.build(version, progress)
        with self._swap:
            self._current = (index, version)
        return index

    def apply(self, base: str, version: str, plan: WritePlan, progress: ProgressCallback | None = None) -> KeywordIndex:
        """The index of `version`: `base` with `plan` written. Derived from the current index when
        that is `base`'s (the write's chunks only are tokenised; the documents it touches are
        replaced whole, as readers must see them); when it is of an older version the change log
        reaches, the documents changed since and the plan's are read back from Chroma (which holds
        the write already); else built (`install`). Serves it at once; saved in the background."""
        index, current = self._current
        if index is None or current is None:
            return self.install(version, progress)
        touched = plan.documents()
        if current != base:  # another process wrote `base`: caught up and written in one step
            since = documents_between(self.store.read_state().changes, current, base)
            if since is None:
                return self.install(version, progress)
            derived = catch_up_documents(self.store, index, since | touched, _indexed)
        else:
            written = list(zip(plan.ids, plan.texts, plan.metadatas, strict=True))
            derived = index.updated(rows_of(index, touched), plan.ids, *_indexed(written))
        with self._swap:
            self._current = (derived, version)
        if self.saved_path(version) is not None:
            self._saves.submit(derived, version)
        return derived

    def mark_checked(self) -> None:
        """The version is known to be current now: the next check is `refresh_interval_s` away."""
        self._checked_at = time.monotonic()

    def refresh(self) -> KeywordIndex:
        """Read the stored version; rebuild when it is not the one the index was built from. A write
        of this process committed meanwhile wins: its version is newer than the one read here."""
        seen = self._current
        state = self.store.read_state()
        version = state.version
        self.mark_checked()
        if seen[0] is not None and version == seen[1]:
            return seen[0]
        # A saved copy loads fastest (1 s at 100k chunks); else caught up from the documents the change
        # log names, or from comparing every chunk (`keyword_catch_up.py`: no shared disk needed); else rebuilt.
        saved = self.saved_path(version)
        loadable = saved is not None and (saved / "chunks.json").exists()
        index = None
        if seen[0] is not None and not loadable:
            changed = documents_between(state.changes, seen[1] or EMPTY_VERSION, version)
            if changed is not None:
                index = catch_up_documents(self.store, seen[0], changed, _indexed)
            else:
                index = catch_up(self.store, seen[0], _indexed)
        if index is None:
            index = self.build(version)
        with self._swap:
            if self._current is seen:
                self._current = (index, version)
            return self._current[0] or index

    async def current(self) -> KeywordIndex:
        """The current index. Built on first use; later changes by other processes are picked up
        in the background (the old index serves meanwhile)."""
        if self.index is None:
            return await asyncio.to_thread(self.refresh)
        due = time.monotonic() - self._checked_at >= self.refresh_interval_s
        if due and (self._refresh is None or self._refresh.done()):
            self.mark_checked()
            self._refresh = asyncio.create_task(self._background_refresh())
        return self.index

    async def _background_refresh(self) -> None:
        try:
            await asyncio.to_thread(self.refresh)
        except Exception as exc:  # a failed refresh keeps the old index; the next one retries
            log.warning("keyword index refresh failed: %s", exc)

    def wait_for_saves(self) -> None:
        """Return once the background save (if any) has finished."""
        self._saves.wait()

    async def close(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        await asyncio.to_thread(self._saves.wait)  # the next process then loads the newest copy


def _indexed(rows: list[Row]) -> tuple[list[str], list[dict[str, Any]]]:
    """What the index holds of stored chunks: title + text (as embedded), and the metadata it needs."""
    texts = [embedding_text(str(meta.get("title", "")), text) for _, text, meta in rows]
    return texts, [{k: meta[k] for k in _INDEXED_METADATA if k in meta} for _, _, meta in rows]


class _LatestSaver:
    """Runs `save(index, version)` in one background thread, for the newest submitted index only,
    once no write came for `quiet_s`: a burst of writes is saved once, and saving (11 s at 100k
    chunks, much of it holding the GIL) does not slow the writes of the burst. `wait` saves now."""

    def __init__(self, save: Callable[[KeywordIndex, str], None], quiet_s: float = SAVE_QUIET_S) -> None:
        self._save = save
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: tuple[KeywordIndex, str] | None = None
        self._submitted_at = 0.0
        self._flushing = False
        self._thread: threading.Thread | None = None

    def submit(self, index: KeywordIndex, version: str) -> None:
        with self._lock:
            self._pending, self._submitted_at = (index, version), time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="keyword-index-save", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._pending is None:
                    self._thread = None
                    return
                delay = 0.0 if self._flushing else self._submitted_at + self.quiet_s - time.monotonic()
                job = None
                if delay <= 0:
                    job, self._pending = self._pending, None
            if job is None:
                self._wake.wait(delay)
                self._wake.clear()
                continue
            try:
                self._save(*job)
            except Exception as exc:  # a failed save only costs a rebuild later
                log.warning("background save of keyword index %s failed: %s", job[1], exc)

    def wait(self) -> None:
        with self._lock:
            self._flushing = True
        self._wake.set()
        try:
            while True:
                with self._lock:
                    thread = self._thread
                if thread is None:
                    return
                thread.join()
        finally:
            with self._lock:
                self._flushing = False


def _with_versions(index: KeywordIndex) -> KeywordIndex:
    """`index`, if it records its chunks' content hashes (readers check chunks against them) and its
    rows are in chunk-id order. Copies saved before it did lack the hashes even on head chunks, which
    always had one, or are in Chroma's order: such a copy is refused (and rebuilt once)."""
    rows = zip(index.chunk_ids, index.metadatas, strict=True)
    head = next((meta for chunk_id, meta in rows if chunk_id.endswith("::0")), None)
    if head is not None and "content_hash" not in head:
        raise ValueError("saved before chunks carried their document's version")
    if any(a > b for a, b in itertools.pairwise(index.chunk_ids)):  # ties would rank unlike other processes'
        raise ValueError("saved before rows were in chunk-id order")
    return index
