"""Keeps this process's keyword (BM25) index equal to the collection's current version.

The index is derived from Chroma and never edited in place: a new `kb_version` means a new index,
built from every chunk in Chroma or loaded from the copy saved under `index_dir/<collection>/<version>`
(building takes 41 s at 100k chunks; loading a saved copy a fraction of that). Only the newest
saved copy is kept. A saved copy made by another tokenizer is refused and rebuilt (see
`KeywordIndex.load`). Writes by another process are noticed at most every `refresh_interval_s`
and the new index is built in the background while the old one keeps serving.

An index holds only documents stored whole (`consistency.py`), with each chunk's content hash: it
is the snapshot readers trust, so a document being rewritten is briefly absent, never mixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path

from retrievers.documents import embedding_text
from retrievers.keyword import KeywordIndex
from retrievers.knowledge_base.chroma_store import EMPTY_VERSION, ChromaStore, Row
from retrievers.knowledge_base.consistency import verify
from retrievers.knowledge_base.ingest import ProgressCallback

log = logging.getLogger(__name__)

# What filters and access control (masks) and counts need, and the version readers check chunks against.
_INDEXED_METADATA = ("doc_id", "category", "lang", "content_hash", "roles", "tenant")


class KeywordUpkeep:
    """The keyword index of the current version, for one collection in this process."""

    def __init__(self, store: ChromaStore, index_dir: Path | None, refresh_interval_s: float) -> None:
        self.store = store
        self.index_dir = index_dir
        self.refresh_interval_s = refresh_interval_s
        self.index: KeywordIndex | None = None  # None until first use
        self.version: str | None = None  # the version `index` was built from
        self._checked_at = 0.0
        self._refresh: asyncio.Task[None] | None = None

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
        kept = [row for row in rows if whole.keeps(row[0])]
        return KeywordIndex(
            [chunk_id for chunk_id, _, _ in kept],
            [embedding_text(str(meta.get("title", "")), text) for _, text, meta in kept],
            [{k: meta[k] for k in _INDEXED_METADATA if k in meta} for _, _, meta in kept],
        )

    def saved_path(self, version: str) -> Path | None:
        """Where the saved copy of `version` lives (None: nothing is saved)."""
        if self.index_dir is None or version == EMPTY_VERSION:
            return None
        return self.index_dir / self.store.name / version

    def _save(self, index: KeywordIndex, folder: Path) -> None:
        """A failed save only costs a rebuild later."""
        try:
            index.save(folder)
        except OSError as exc:
            log.warning("could not save keyword index to %s: %s", folder, exc)

    def prune_saved(self) -> None:
        """Keep only the saved copy of the version this process serves. Called once that version
        is stamped: until then other processes may still load the copy of the previous one."""
        keep = self.saved_path(self.version) if self.version else None
        if keep is None or not keep.parent.exists():
            return
        for old in keep.parent.iterdir():
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    # ---- following the version

    def install(self, version: str, progress: ProgressCallback | None = None) -> KeywordIndex:
        """Build (or load) the index of `version` and serve it from now on. The writer calls this
        for a version it is about to stamp, so the saved copy exists before others see it."""
        self.index = index = self.build(version, progress)
        self.version = version
        return index

    def mark_checked(self) -> None:
        """The version is known to be current now: the next check is `refresh_interval_s` away."""
        self._checked_at = time.monotonic()

    def refresh(self) -> KeywordIndex:
        """Read the stored version; rebuild when it is not the one the index was built from."""
        version = self.store.read_version()
        self.mark_checked()
        if self.index is None or version != self.version:
            return self.install(version)
        return self.index

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

    async def close(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh


def _with_versions(index: KeywordIndex) -> KeywordIndex:
    """`index`, if it records its chunks' content hashes (readers check chunks against them). Copies
    saved before it did lack them even on head chunks, which always had one: such a copy is refused."""
    rows = zip(index.chunk_ids, index.metadatas, strict=True)
    head = next((meta for chunk_id, meta in rows if chunk_id.endswith("::0")), None)
    if head is not None and "content_hash" not in head:
        raise ValueError("saved before chunks carried their document's version")
    return index
