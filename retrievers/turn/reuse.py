"""Lookups shared by the runs of one question: a speculative run and the run that follows it.

LiveKit's preemptive generation starts a turn's run on a stable transcript, before end of turn is
decided, and starts it again when the final transcript differs, even only in case or punctuation (the
newer attempt cancels the older one). Without sharing, the final run would fetch everything again and
the speculative run would have bought nothing. Here a lookup is an asyncio task under a key: a second
run with the same key awaits the same task, in flight or finished, instead of starting its own; a
cancelled run does not cancel the task (it is shielded), so the run after it still gets the result.

Bounded: at most `size` entries, each for `max_age_s` from its start. A lookup that failed, or whose
result `keep` refuses, is dropped as soon as it ends (the next run fetches again). A lookup left with
nobody waiting (its run was discarded for another question) is cancelled `orphan_grace_s` later,
unless a run has come for it meanwhile: LiveKit cancels the old attempt just before it starts the new
one, so the new run needs a moment to arrive. The key decides who
may share: callers of the graph put the caller's access in it (`graph/lookup_reuse.py`). Only
read-only lookups may be shared: a run that is discarded must leave nothing behind but a result.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_SIZE = 256


def normalised(text: str) -> str:
    """The same question however it was transcribed: NFKC, case-folded, without punctuation or
    whitespace (a recognizer spaces Japanese at will: "KH-300の保証は？" and "kh300 の 保証は" are one
    question; two English questions that differ only in spacing are one question too)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if not unicodedata.category(ch).startswith(("P", "Z")) and not ch.isspace())


ORPHAN_GRACE_S = 1.0


@dataclass
class _Entry(Generic[T]):
    task: asyncio.Future[T]
    started: float  # time.monotonic()
    waiters: int = 0

    def orphaned(self) -> None:
        if not self.waiters and not self.task.done():
            self.task.cancel()


class LookupReuse:
    """In-flight and recent lookups by key, for one process (bounded in number and age)."""

    def __init__(self, max_age_s: float, size: int = DEFAULT_SIZE, orphan_grace_s: float = ORPHAN_GRACE_S) -> None:
        self.max_age_s = max_age_s
        self.size = size
        self.orphan_grace_s = orphan_grace_s
        self._entries: OrderedDict[Hashable, _Entry[Any]] = OrderedDict()
        self.started = 0  # lookups started here (tests and benchmarks read these)
        self.reused = 0  # lookups a run got from an earlier run

    def __len__(self) -> int:
        return len(self._entries)

    async def shared(
        self, key: Hashable, fetch: Callable[[], Awaitable[T]], keep: Callable[[T], bool] = lambda _: True
    ) -> tuple[T, bool]:
        """The lookup `key`: an earlier run's (in flight or finished), or `fetch()` started now and
        kept for the runs after this one. Returns the result and whether it was an earlier run's."""
        entry = self._live(key)
        reused = entry is not None
        if entry is None:
            entry = _Entry(asyncio.ensure_future(fetch()), time.monotonic())
            self._entries[key] = entry
            self.started += 1
            entry.task.add_done_callback(lambda task: self._settled(key, entry, keep))
            while len(self._entries) > self.size:  # the oldest goes; whoever awaits it still gets it
                self._entries.popitem(last=False)
        else:
            self.reused += 1
            self._entries.move_to_end(key)
        entry.waiters += 1
        try:
            return await asyncio.shield(entry.task), reused
        finally:
            entry.waiters -= 1
            if not entry.waiters and not entry.task.done():  # this run was cancelled: the last one waiting
                asyncio.get_running_loop().call_later(self.orphan_grace_s, entry.orphaned)

    def _live(self, key: Hashable) -> _Entry[Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stale = time.monotonic() - entry.started > self.max_age_s
        # A task of another event loop cannot be awaited here (a process running several loops).
        if stale or entry.task.get_loop() is not asyncio.get_running_loop():
            del self._entries[key]
            return None
        return entry

    def _settled(self, key: Hashable, entry: _Entry[Any], keep: Callable[[Any], bool]) -> None:
        """A failed or refused result is not offered again; the failure is retrieved here, so a
        lookup nobody awaits any more (its run was discarded) never logs as unretrieved."""
        task = entry.task
        failed = task.cancelled() or task.exception() is not None
        if failed and not task.cancelled():
            log.info("shared lookup failed: %s", type(task.exception()).__name__)
        if (failed or not keep(task.result())) and self._entries.get(key) is entry:
            del self._entries[key]
