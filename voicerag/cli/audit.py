"""`voicerag audit [--user U] [--since ISO] [--limit N] [--json]`: the most recent audit records;
`voicerag audit --verify [--json]`: check the hash chain (exit 0 intact, 1 naming the first bad
record); `voicerag audit --postgres-setup ROLE`: the SQL that makes a PostgreSQL log append-only
for the role the product writes as. Nothing here creates the log or writes to it."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from retrievers.errors import ServiceError, UserInputError
from voicerag.cli.common import settings
from voicerag.cli.running import run_async
from voicerag.cli.terminal import json_text, safe

if TYPE_CHECKING:
    from voicerag.audit import AuditStore, ChainedRecord, Verification

DEFAULT_LIMIT = 100


def audit(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's records.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only records at or after this ISO 8601 time (no zone: UTC).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many: the most recent [100].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain: exit 0 intact, 1 broken.")] = False,
    postgres_setup: Annotated[
        str | None,
        typer.Option("--postgres-setup", metavar="ROLE", help="Print the SQL that lets ROLE only append and read."),
    ] = None,
) -> None:
    """Print the audit log's records (oldest first), or check that none was changed."""
    if postgres_setup is not None:
        print(_setup_sql(postgres_setup), end="")
        return
    if verify and (user is not None or since is not None or limit is not None):
        raise UserInputError("--verify checks the whole log: it takes no --user, --since or --limit")
    since_text = _since(since) if since is not None else None
    from voicerag.audit import open_audit_store

    store = open_audit_store(settings())
    if verify:
        run_async(_verify(store, as_json))
    else:
        run_async(_list(store, user, since_text, limit or DEFAULT_LIMIT, as_json))


def _since(value: str) -> str:
    from voicerag.audit.record import utc_text

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserInputError(f"--since: not an ISO 8601 time such as 2025-01-31T09:00:00Z: {value!r}") from None
    return utc_text(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def _setup_sql(role: str) -> str:
    from voicerag.audit.schema import postgres_setup_sql

    try:
        return postgres_setup_sql(role)
    except ValueError as exc:
        raise UserInputError(f"--postgres-setup: {exc}") from None


async def _list(store: AuditStore, user: str | None, since: str | None, limit: int, as_json: bool) -> None:
    try:
        if not await store.database.exists():
            print(f"no audit records yet: {safe(store.where)} has no audit log", file=sys.stderr)
            return
        found = await store.read(user=user, since=since, limit=limit)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise _unreachable(store, exc) from None
    finally:
        await store.close()
    for record in found:
        print(json_text(record.model_dump(mode="json")) if as_json else _text(record), flush=True)


async def _verify(store: AuditStore, as_json: bool) -> None:
    try:
        result = await store.verify()
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise _unreachable(store, exc) from None
    finally:
        await store.close()
    if as_json:
        print(json_text(_verification(store, result)))
    elif result.bad is not None:
        print(f"audit log broken at {safe(str(result.bad))} ({safe(store.where)})", file=sys.stderr)
    else:
        print(f"audit log intact: {result.records} record(s), head {result.head or '-'} ({safe(store.where)})")
    if result.records and not result.guarded:
        print(f"warning: the append-only triggers of {safe(store.where)} are missing or disabled", file=sys.stderr)
    if result.bad is not None:
        raise typer.Exit(1)


def _verification(store: AuditStore, result: Verification) -> dict[str, Any]:
    bad = result.bad
    return {
        "intact": result.intact,
        "records": result.records,
        "head": result.head,
        "guarded": result.guarded,
        "first_bad": None if bad is None else {"seq": bad.seq, "turn_id": bad.turn_id, "reason": bad.reason},
        "database": store.where,
    }


def _unreachable(store: AuditStore, exc: BaseException) -> ServiceError:
    from voicerag.audit.writer import describe

    return ServiceError(f"AUDIT_DATABASE_URL: cannot read the audit log at {store.where}: {describe(exc)}")


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", safe(text)).strip()


def _text(record: ChainedRecord) -> str:
    """Three readable lines; `--json` has every field exactly as stored."""
    head = [record.time, f"#{record.seq}", record.front_door, f"user={record.user_id}"]
    head += [f"tenant={record.tenant}"] if record.tenant else []
    head += [f"roles={','.join(record.roles)}"] if record.roles else []
    head += [f"route={record.route or '-'}", f"{record.latency_ms:.0f} ms"]
    sources = ",".join(f"{source['name']}:{source['status']}" for source in record.sources)
    head += [f"sources={sources}"] if sources else []
    head += [f"docs={','.join(record.documents)}"] if record.documents else []
    head += [flag for flag, on in (("degraded", record.degraded), ("rate-limited", record.rate_limited)) if on]
    return "\n".join(
        ["  ".join(map(_one_line, head)), f"    Q: {_one_line(record.question)}", f"    A: {_one_line(record.answer)}"]
    )
