"""The change log beside the version stamp: which documents each recent version changed, bounded,
and the documents changed between two versions — or None when the log cannot say."""

from __future__ import annotations

import pytest

from retrievers.knowledge_base import change_log
from retrievers.knowledge_base.change_log import Change, appended, documents_between, dump, parse


def chain(*writes: tuple[str, ...] | None) -> list[Change]:
    """Versions v1, v2, ... each written over the one before (v0 first), touching the given documents."""
    log: list[Change] = []
    for n, documents in enumerate(writes, start=1):
        log = appended(log, f"v{n}", f"v{n - 1}", documents)
    return log


def test_the_documents_between_two_versions_are_the_union_of_the_writes_between_them() -> None:
    log = chain(("a",), ("b", "c"), ("a", "d"))
    assert documents_between(log, "v0", "v3") == {"a", "b", "c", "d"}
    assert documents_between(log, "v1", "v3") == {"a", "b", "c", "d"}  # "a" again in v3
    assert documents_between(log, "v2", "v3") == {"a", "d"}
    assert documents_between(log, "v3", "v3") == set()  # nothing to read: already current


def test_a_write_without_a_list_or_a_version_before_the_log_cannot_be_answered() -> None:
    log = chain(("a",), None, ("b",))
    assert documents_between(log, "v2", "v3") == {"b"}  # after the unknown write: fine
    assert documents_between(log, "v1", "v3") is None  # across it: unknown
    assert documents_between(log, "elsewhere", "v3") is None  # not in the log at all


def test_the_log_keeps_the_newest_versions_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(change_log, "MAX_VERSIONS", 3)
    monkeypatch.setattr(change_log, "MAX_DOCUMENTS", 4)
    log = chain(("a",), ("b",), ("c",), ("d",))
    assert [c.version for c in log] == ["v2", "v3", "v4"]
    log = appended(log, "v5", "v4", ["e", "f", "g"])  # 1 + 1 + 3 > 4: the oldest entries go
    assert [c.version for c in log] == ["v4", "v5"]
    log = appended(log, "v6", "v5", [f"doc-{n}" for n in range(5)])  # one write over the bound: unlisted
    assert log[-1].documents is None and documents_between(log, "v5", "v6") is None


def test_the_stored_form_round_trips_and_garbage_reads_as_an_empty_log() -> None:
    log = chain(("a", "b"), None)
    assert parse(dump(log)) == log
    for stored in (None, 3, "", "not json", '[["v1"]]', '{"v": 1}'):
        assert parse(stored) == []


def test_a_looping_log_ends() -> None:
    looping = [Change("v1", "v2", ("a",)), Change("v2", "v1", ("b",))]
    assert documents_between(looping, "v0", "v1") is None
