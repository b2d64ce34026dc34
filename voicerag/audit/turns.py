"""The audit log as a sink of turn records: `TurnRecord` (graph/turn_record.py) → `AuditRecord`,
queued on the process's `AuditWriter` (microseconds on the turn's path; the database is written
from the writer's thread). The question and the answer are masked (`TurnRecord.masked_texts`) before they are queued."""

from __future__ import annotations

from graph.turn_record import Sink, TurnRecord
from voicerag.audit.record import AuditRecord
from voicerag.audit.writer import AuditWriter


def audit_record(turn: TurnRecord) -> AuditRecord:
    return AuditRecord(
        time=turn.started_at,
        turn_id=turn.turn_id,
        session_id=turn.session_id,
        user_id=turn.user_id,
        tenant=turn.tenant,
        roles=turn.roles,
        front_door=turn.front_door,
        route=turn.route,
        sources=[{"name": name, "status": str(call.get("status", ""))} for name, call in turn.sources.items()],
        documents=turn.documents,
        degraded=turn.degraded,
        rate_limited=turn.rate_limited,
        latency_ms=max(0.0, turn.total_ms or 0.0),
        question=turn.masked_texts["question"] or "",
        answer=turn.masked_texts["answer"] or "",
    )


def audit_sink(writer: AuditWriter) -> Sink:
    """Each turn's record, masked, to `writer` (a full queue drops it: counted and logged there).
    A speculative run (`TurnRecord.speculative`) said nothing to the caller, and the run that did
    reuses its lookups (`graph/lookup_reuse.py`): the log keeps the turn the caller had, once."""

    def write(turn: TurnRecord) -> None:
        if turn.speculative:  # a preemptive run LiveKit discarded unheard: not a turn (its log line and trace say so)
            return
        writer.write(audit_record(turn))

    return write
