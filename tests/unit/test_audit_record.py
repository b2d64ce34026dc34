"""The audit record: what a caller may hand over, and a hash that covers every stored field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from voicerag.audit.record import GENESIS_HASH, AuditRecord, chain, record_hash

TOKYO = timezone(timedelta(hours=9))


def record(**changes: Any) -> AuditRecord:
    fields: dict[str, Any] = {"turn_id": "t1", "session_id": "s1", "user_id": "alice", "front_door": "voice"}
    return AuditRecord(**(fields | {"latency_ms": 120.5, "question": "q", "answer": "a"} | changes))


def test_time_is_kept_as_fixed_width_utc_text_whatever_zone_it_came_in() -> None:
    expected = "2025-01-31T09:00:00.000000Z"
    assert record(time=datetime(2025, 1, 31, 18, 0, tzinfo=TOKYO)).time == expected
    assert record(time="2025-01-31T18:00:00+09:00").time == expected
    assert record(time="2025-01-31T09:00:00Z").time == expected
    assert record().time.endswith("Z") and len(record().time) == len(expected)  # default: now, UTC


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time", datetime(2025, 1, 31, 9, 0)),  # naive: which zone?
        ("front_door", "email"),
        ("latency_ms", float("nan")),
        ("latency_ms", -1),
        ("sources", [{"name": "weather"}]),  # no status
        ("masked", True),  # not a field
    ],
)
def test_a_wrong_field_is_refused_when_the_record_is_built(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as error:
        record(**{field: value})
    assert field in str(error.value)


def test_text_postgresql_cannot_store_becomes_a_replacement_character() -> None:
    built = record(question="a\x00b", answer="c\ud800d")
    assert built.question == "a\ufffdb" and built.answer == "c\ufffdd"
    assert record(question="KH-300の保証").question == "KH-300の保証"  # control: ordinary text untouched


STORED_CHANGES = {  # a different value for every stored field
    "time": "2025-01-31T09:00:00.000001Z",
    "turn_id": "t2",
    "session_id": "s2",
    "user_id": "bob",
    "tenant": "acme",
    "roles": ["staff"],
    "front_door": "chat",
    "route": "small_talk",
    "sources": [{"name": "weather", "status": "timeout"}],
    "documents": ["doc-9"],
    "degraded": True,
    "rate_limited": True,
    "latency_ms": 120.25,
    "question": "q?",
    "answer": "a.",
    "seq": 8,
    "previous_hash": "1" * 64,
}


def test_the_hash_covers_every_stored_field() -> None:
    fields = chain(record(roles=["member"], sources=[{"name": "weather", "status": "ok"}]), 7, GENESIS_HASH)
    assert set(STORED_CHANGES) | {"hash"} == set(fields)  # the table above names every field
    assert record_hash(fields) == fields["hash"]  # control: unchanged, the same hash
    for name, value in STORED_CHANGES.items():
        assert record_hash(fields | {name: value}) != fields["hash"], name


def test_the_hash_does_not_depend_on_key_order() -> None:
    fields = chain(record(), 1, GENESIS_HASH)
    assert record_hash(dict(reversed(list(fields.items())))) == fields["hash"]


def test_a_record_is_chained_to_the_previous_hash() -> None:
    first = chain(record(time=datetime(2025, 1, 1, tzinfo=UTC)), 1, GENESIS_HASH)
    second = chain(record(time=datetime(2025, 1, 1, tzinfo=UTC)), 2, first["hash"])
    assert second["previous_hash"] == first["hash"] and second["hash"] != first["hash"]
