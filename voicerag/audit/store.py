"""The audit log in its database: appends that extend one hash chain, reads, and the chain's check.

Each append reads the chain's head and inserts the new records after it inside one serialised
transaction (`AuditDatabase.appending`), so records from any number of processes form one chain.
`verify` walks the chain from the first record and returns the first one that is missing, edited
or no longer linked to its predecessor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, insert, select

from voicerag.audit.database import AuditDatabase, parse_url
from voicerag.audit.record import GENESIS_HASH, AuditRecord, ChainedRecord, canonical_json, chain, record_hash
from voicerag.audit.schema import JSON_COLUMNS, records

PAGE = 1000  # records per query while verifying: memory stays flat whatever the log's size


@dataclass(frozen=True)
class BadRecord:
    seq: int
    turn_id: str | None
    reason: str

    def __str__(self) -> str:
        turn = f" (turn {self.turn_id})" if self.turn_id else ""
        return f"record {self.seq}{turn}: {self.reason}"


@dataclass(frozen=True)
class Verification:
    records: int  # records checked (all of them when intact)
    head: str | None  # the last good record's hash: note it elsewhere to detect a cut-off tail later
    bad: BadRecord | None
    guarded: bool  # every append-only trigger in place

    @property
    def intact(self) -> bool:
        return self.bad is None


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: canonical_json(value) if name in JSON_COLUMNS else value for name, value in fields.items()}


def _fields(row: Row[Any]) -> dict[str, Any]:
    """A row as the fields it was hashed from (raises ValueError on a JSON column that is not JSON)."""
    fields = dict(row._mapping)
    for name in JSON_COLUMNS:
        fields[name] = json.loads(fields[name])
    return fields


def _check(row: Row[Any], seq: int, previous_hash: str) -> str | None:
    """Why `row`, expected as record `seq` after `previous_hash`, breaks the chain (None: it does not)."""
    if row.seq != seq:
        missing = f"record {seq} is" if row.seq == seq + 1 else f"records {seq} to {row.seq - 1} are"
        return f"{missing} missing before it (removed)"
    if row.previous_hash != previous_hash:
        return f"its previous_hash is not record {seq - 1}'s hash (record {seq - 1} was rewritten)"
    try:
        fields = _fields(row)
    except ValueError as exc:
        return f"a field is not valid JSON ({exc}): edited after it was written"
    if record_hash(fields) != row.hash:
        return "its content does not match its hash: edited after it was written"
    return None


class AuditStore:
    def __init__(self, database_url: str, *, timeout_s: float = 10.0, variable: str = "AUDIT_DATABASE_URL") -> None:
        """`timeout_s` bounds each wait: connecting, another appender's lock, a statement."""
        self.database = AuditDatabase(parse_url(database_url, variable), timeout_s=timeout_s)
        self._schema_ready = False

    @property
    def where(self) -> str:
        return self.database.where

    async def append(self, new: Sequence[AuditRecord]) -> int:
        """Chain and insert `new` in one transaction; returns the sequence number of the last one."""
        if not self._schema_ready:
            await self.database.create_schema()
            self._schema_ready = True
        async with self.database.appending() as connection:
            newest = select(records.c.seq, records.c.hash).order_by(records.c.seq.desc()).limit(1)
            head = (await connection.execute(newest)).first()
            seq, previous = (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)
            rows = []
            for record in new:
                seq += 1
                fields = chain(record, seq, previous)
                previous = fields["hash"]
                rows.append(_stored(fields))
            if rows:
                await connection.execute(insert(records), rows)
        return seq

    async def read(self, *, user: str | None = None, since: str | None = None, limit: int = 100) -> list[ChainedRecord]:
        """The last `limit` records (of `user`, at or after the UTC time text `since`), oldest first."""
        if not await self.database.exists():
            return []
        query = select(records).order_by(records.c.seq.desc()).limit(limit)
        if user is not None:
            query = query.where(records.c.user_id == user)
        if since is not None:
            query = query.where(records.c.time >= since)
        async with self.database.reading() as connection:
            rows = (await connection.execute(query)).all()
        return [ChainedRecord.model_construct(**_fields(row)) for row in reversed(rows)]

    async def verify(self) -> Verification:
        """Walk the whole chain; the first record that breaks it, if any."""
        if not await self.database.exists():
            return Verification(records=0, head=None, bad=None, guarded=False)
        guarded = await self.database.guarded()
        count, previous = 0, GENESIS_HASH
        async with self.database.reading() as connection:
            while True:
                page = select(records).where(records.c.seq > count).order_by(records.c.seq).limit(PAGE)
                rows = (await connection.execute(page)).all()
                for row in rows:
                    reason = _check(row, count + 1, previous)
                    if reason is not None:
                        bad = BadRecord(row.seq, row.turn_id, reason)
                        return Verification(count, previous if count else None, bad, guarded)
                    count, previous = row.seq, row.hash
                if len(rows) < PAGE:
                    return Verification(count, previous if count else None, None, guarded)

    async def close(self) -> None:
        await self.database.close()
