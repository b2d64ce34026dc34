"""Which stored documents are whole: the rule readers and the crash repair share.

A document counts as stored only when its head chunk (`doc_id::0`) exists and chunks `0..n-1`
(`n`: the head's `chunk_count`) all exist and all carry the head's `content_hash`. A write puts
the head last, so a write cut short (a killed ingest) or still under way leaves a document that
is not whole: readers leave it out, and the next writer deletes it (its ingest adds it again).
Chunks with no head, and chunks past their head's count (left by a shrinking update that was cut
short), are strays.

Chunks written before every chunk carried the hash have none: such a chunk is taken as the head's
version (only its count can be checked).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from retrievers.documents import Chunk

_MISSING = object()  # a chunk index with no chunk


@dataclass(slots=True)
class Verdict:
    """What `verify` found."""

    whole: dict[str, int] = field(default_factory=dict)  # document id → chunk count, of whole documents
    broken: set[str] = field(default_factory=set)  # documents with a head that are not whole
    delete: list[str] = field(default_factory=list)  # chunk ids of broken documents, and strays
    strays: int = 0  # chunks with no head, or past their head's count

    def keeps(self, chunk_id: str) -> bool:
        """Whether a verified chunk belongs to a whole document (readers serve only these)."""
        doc_id, index = _split(chunk_id)
        return index is not None and index < self.whole.get(doc_id, 0)


def verify(chunks: Iterable[tuple[str, Mapping[str, Any]]]) -> Verdict:
    """Sort `(chunk id, metadata)` rows into whole documents, broken ones and strays."""
    heads: dict[str, Mapping[str, Any]] = {}
    parts: dict[str, dict[int, object]] = {}  # document id → chunk index → content hash (None: none)
    verdict = Verdict()
    for chunk_id, meta in chunks:
        doc_id, index = _split(chunk_id)
        if index is None:  # not an id of this scheme
            verdict.delete.append(chunk_id)
            verdict.strays += 1
            continue
        if index == 0:
            heads[doc_id] = meta
        parts.setdefault(doc_id, {})[index] = meta.get("content_hash")

    for doc_id, found in parts.items():
        head = heads.get(doc_id)
        count = _count(head) if head is not None else 0
        version = head.get("content_hash") if head is not None else _MISSING
        whole = head is not None and all(found.get(i, _MISSING) in (version, None) for i in range(count))
        if whole:
            verdict.whole[doc_id] = count
        elif head is not None:
            verdict.broken.add(doc_id)
        doomed = sorted(i for i in found if not whole or i >= count)  # all of it, or what lies past its count
        verdict.delete.extend(Chunk.make_id(doc_id, i) for i in doomed)
        verdict.strays += len(doomed) if head is None or whole else 0
    return verdict


def _split(chunk_id: str) -> tuple[str, int | None]:
    """(document id, chunk index) of an id `doc_id::i` (index None: not such an id)."""
    doc_id, _, index = chunk_id.rpartition("::")
    if doc_id and index.isdigit() and str(int(index)) == index:
        return doc_id, int(index)
    return chunk_id, None


def _count(head: Mapping[str, Any]) -> int:
    try:
        return max(int(head.get("chunk_count", 1)), 1)
    except (TypeError, ValueError):
        return 1
