"""Which documents each recent version changed, kept beside the version stamp.

A worker that does not share the writer's disk catches its keyword index up with a new version from
what changed (`keyword_catch_up.py`). Without a record of the change it must list every chunk's
metadata to find out (9-22 s at 100k chunks, by load); with one, only the changed documents' chunks.
So every stamp also records its write: (the new version, the version it was written over, the
document ids it touched), newest last, in the collection's metadata — written in the same call as
the stamp, so a reader never sees a version without its entry.

The log is bounded (`MAX_VERSIONS` entries, `MAX_DOCUMENTS` ids in all, so that the collection's
metadata, read at every version check, stays small); a write that touched more documents, or a
repair of a write cut short (what it removed is not listed), is recorded with no ids: a reader
whose chain of versions crosses it, or reaches past the log's start, compares every chunk instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

MAX_VERSIONS = 32
MAX_DOCUMENTS = 2000


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write: `base` → `version`; `documents` None when not recorded."""

    version: str
    base: str
    documents: tuple[str, ...] | None


def parse(text: object) -> list[Change]:
    """The log as stored (a JSON string in the collection's metadata); [] when absent or unreadable
    (a store written before the log existed): readers then compare every chunk, as before."""
    if not isinstance(text, str):
        return []
    try:
        entries = json.loads(text)
        return [
            Change(str(version), str(base), None if documents is None else tuple(map(str, documents)))
            for version, base, documents in entries
        ]
    except (ValueError, TypeError):
        return []


def dump(log: list[Change]) -> str:
    return json.dumps([[c.version, c.base, None if c.documents is None else list(c.documents)] for c in log])


def appended(log: list[Change], version: str, base: str, documents: Iterable[str] | None) -> list[Change]:
    """`log` with a new entry, trimmed from the oldest end to the bounds."""
    listed = None if documents is None else tuple(sorted(set(documents)))
    if listed is not None and len(listed) > MAX_DOCUMENTS:
        listed = None
    kept = [*log, Change(version, base, listed)][-MAX_VERSIONS:]
    while sum(len(c.documents or ()) for c in kept) > MAX_DOCUMENTS:
        kept.pop(0)
    return kept


def documents_between(log: list[Change], since: str, until: str) -> set[str] | None:
    """Every document changed from version `since` to version `until`, or None when the log cannot
    say (an entry without ids on the way, or `since` older than the log's start)."""
    changed: set[str] = set()
    version = until
    by_version = {change.version: change for change in log}
    for _ in range(len(log) + 1):  # a chain never repeats a version (bounded all the same)
        if version == since:
            return changed
        change = by_version.get(version)
        if change is None or change.documents is None:
            return None
        changed.update(change.documents)
        version = change.base
    return None
