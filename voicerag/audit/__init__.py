"""The audit log: one append-only, hash-chained record per turn, from every front door.

    writer = open_audit_writer(settings)       # once per process
    writer.write(AuditRecord(...))             # per turn: queued, microseconds
    writer.close(timeout_s=5)                  # at shutdown (also run at exit)

`voicerag audit` reads it, `voicerag audit --verify` checks its chain (`voicerag/cli/audit.py`).
"""

from voicerag.audit.record import AuditRecord, ChainedRecord, FrontDoor, SourceStatus
from voicerag.audit.store import AuditStore, BadRecord, Verification
from voicerag.audit.wiring import audit_database_url, open_audit_store, open_audit_writer
from voicerag.audit.writer import AuditWriter

__all__ = [
    "AuditRecord",
    "AuditStore",
    "AuditWriter",
    "BadRecord",
    "ChainedRecord",
    "FrontDoor",
    "SourceStatus",
    "Verification",
    "audit_database_url",
    "open_audit_store",
    "open_audit_writer",
]
