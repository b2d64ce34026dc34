"""The audit table and what makes it append-only, for SQLite and PostgreSQL.

Triggers refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) whoever asks, the table's owner
included; only someone who can drop or disable a trigger (the owner, a superuser, anyone with the
SQLite file) can change a record — and then the hash chain says which one. On SQLite a `BEFORE
INSERT` trigger also requires each new record to extend the chain, which shuts `INSERT OR REPLACE`
(a delete that fires no DELETE trigger) out. `postgres_setup_sql` is the stricter setup an operator
runs once: the table owned by an administrator, the writing role granted INSERT and SELECT only.
"""

from __future__ import annotations

import re

from sqlalchemy import BigInteger, Boolean, Column, Double, MetaData, String, Table, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from voicerag.audit.record import GENESIS_HASH

TABLE = "audit_records"
JSON_COLUMNS = ("roles", "sources", "documents")  # stored as canonical JSON text: what is hashed is what is kept

metadata = MetaData()
records = Table(
    TABLE,
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False, index=True),
    Column("turn_id", Text, nullable=False, index=True),
    Column("session_id", Text, nullable=False),
    Column("user_id", Text, nullable=False, index=True),
    Column("tenant", Text),
    Column("roles", Text, nullable=False),
    Column("front_door", String(16), nullable=False),
    Column("route", Text),
    Column("sources", Text, nullable=False),
    Column("documents", Text, nullable=False),
    Column("degraded", Boolean, nullable=False),
    Column("rate_limited", Boolean, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    # unique: two records can never claim the same predecessor, so the chain cannot fork
    Column("previous_hash", String(64), nullable=False, unique=True),
    Column("hash", String(64), nullable=False, unique=True),
)

SQLITE_GUARDS = {
    f"{TABLE}_no_update": f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE refused'); END""",
    f"{TABLE}_no_delete": f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE refused'); END""",
    f"{TABLE}_append_at_head": f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_append_at_head BEFORE INSERT ON {TABLE}
WHEN NEW.seq IS NOT COALESCE((SELECT max(seq) FROM {TABLE}), 0) + 1
  OR NEW.previous_hash IS NOT COALESCE((SELECT hash FROM {TABLE} ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}')
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: a new record must extend the chain'); END""",
}

POSTGRES_FUNCTION = f"""CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit records are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$"""
POSTGRES_GUARDS = {
    f"{TABLE}_no_update_delete": f"""CREATE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()""",
    f"{TABLE}_no_truncate": f"""CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()""",
}

# What counts as a role name here: PostgreSQL's unquoted identifiers (the setup quotes it anyway).
ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def postgres_setup_sql(writer_role: str) -> str:
    """The SQL an administrator runs once (`psql -1 -f`): the table, owned by whoever runs it, its
    triggers, and `writer_role` (what AUDIT_DATABASE_URL connects as) allowed INSERT and SELECT only
    — it can then neither change a record nor drop or disable a trigger."""
    if not ROLE_NAME.match(writer_role):
        raise ValueError(f"not a plain role name: {writer_role!r}")
    dialect = postgresql.dialect()
    role = dialect.identifier_preparer.quote(writer_role)
    statements = [str(CreateTable(records, if_not_exists=True).compile(dialect=dialect)).strip()]
    statements += [
        str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
        for index in sorted(records.indexes, key=lambda i: str(i.name))
    ]
    statements.append(POSTGRES_FUNCTION)
    for name, ddl in POSTGRES_GUARDS.items():
        statements += [f"DROP TRIGGER IF EXISTS {name} ON {TABLE}", ddl]
    statements += [
        f"REVOKE ALL ON {TABLE} FROM PUBLIC",
        f"REVOKE ALL ON {TABLE} FROM {role}",
        f"GRANT SELECT, INSERT ON {TABLE} TO {role}",
    ]
    return "".join(f"{statement};\n" for statement in statements)
