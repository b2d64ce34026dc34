"""Settings → the audit store and writer (the only part of the package that reads settings)."""

from __future__ import annotations

from retrievers.secret_url import reveal
from voicerag.audit.database import sqlite_url
from voicerag.audit.store import AuditStore
from voicerag.audit.writer import AuditWriter
from voicerag.settings import Settings

DEFAULT_FILE = "audit.sqlite"  # in VOICERAG_DATA_DIR
# How long a process waits for its last records when it ends (or a voice call when it ends): a dead
# database delays an exit by no more than this, and what could not be written is logged as a count.
CLOSE_TIMEOUT_S = 3.0


def audit_database_url(settings: Settings) -> str:
    """AUDIT_DATABASE_URL, or the SQLite file in the data dir when it is unset or empty."""
    return reveal(settings.audit_database_url) or sqlite_url(settings.voicerag_data_dir / DEFAULT_FILE)


def open_audit_store(settings: Settings, *, timeout_s: float = 10.0) -> AuditStore:
    """The store (nothing connects yet); a bad AUDIT_DATABASE_URL is a UserInputError naming it."""
    return AuditStore(audit_database_url(settings), timeout_s=timeout_s)


def open_audit_writer(settings: Settings) -> AuditWriter:
    """The process's writer: its thread starts now; the database is first reached on the first record."""
    return AuditWriter(open_audit_store(settings), queue_size=settings.audit_queue_size)
