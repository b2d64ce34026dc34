"""One audit record: what a front door hands to the writer, and how a stored record is hashed.

The caller masks `question` and `answer` before building the record; the audit log stores what it
is given. A stored record also carries `seq` (its place in the chain), `previous_hash` and `hash`:
sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of every stored field but `hash`,
`previous_hash` included — so editing, removing or reordering a record breaks the chain.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

GENESIS_HASH = "0" * 64  # the previous_hash of the first record
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width: text order is time order (--since compares text)

FrontDoor = Literal["voice", "ask", "chat", "studio"]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # in a str, a surrogate code point is always a lone one


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate: both would stall the writer, so
    each becomes U+FFFD here, on the caller's side, instead."""
    return _UNSTORABLE.sub("\ufffd", text)


Text = Annotated[str, AfterValidator(_storable)]


def utc_text(value: datetime) -> str:
    """An aware time as the records' fixed-width UTC text."""
    if value.tzinfo is None:
        raise ValueError("needs a time zone (a naive time is ambiguous)")
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def _to_utc_text(value: object) -> object:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return utc_text(value) if isinstance(value, datetime) else value


def now_text() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


class SourceStatus(TypedDict):
    """A live source the turn called and how it went (`ok`, `timeout`, `unreachable`, ...)."""

    name: Text
    status: Text


class AuditRecord(BaseModel):
    """One turn, from any front door. Validated when built (by the caller), never again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: Annotated[str, BeforeValidator(_to_utc_text)] = Field(default_factory=now_text)
    turn_id: Text
    session_id: Text
    user_id: Text
    tenant: Text | None = None
    roles: list[Text] = Field(default_factory=list)
    front_door: FrontDoor
    route: Text | None = None  # None: the turn failed before it was routed
    sources: list[SourceStatus] = Field(default_factory=list)
    documents: list[Text] = Field(default_factory=list)  # ids of the documents the answer used
    degraded: bool = False
    rate_limited: bool = False
    latency_ms: float = Field(ge=0, allow_inf_nan=False)
    question: Text  # masked by the caller
    answer: Text  # masked by the caller


class ChainedRecord(AuditRecord):
    """A record as stored: its place in the chain and its hash."""

    seq: int
    previous_hash: str
    hash: str


def canonical_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(fields: dict[str, Any]) -> str:
    """The hash of a stored record's fields (every one but `hash`)."""
    payload = {name: value for name, value in fields.items() if name != "hash"}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def chain(record: AuditRecord, seq: int, previous_hash: str) -> dict[str, Any]:
    """The stored fields of `record` as number `seq` after the record hashed `previous_hash`."""
    fields = record.model_dump(mode="json") | {"seq": seq, "previous_hash": previous_hash}
    fields["hash"] = record_hash(fields)
    return fields
