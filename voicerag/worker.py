"""The LiveKit worker: AgentServer, per-process setup (prewarm) and the session entrypoint.

The voice front door (`agent/`) wired from settings, as `voicerag/cli/` wires the text ones: `agent/`
itself never reads settings. `voicerag agent console|dev|start` runs it through LiveKit's CLI;
`console --text` needs no keys at all (no STT/TTS: you type, it answers in text).

Each turn's record goes to the log line, the audit log and, with METRICS_PORT, the metrics
(`voicerag/metrics/`). One `AuditWriter` per worker process (opened in prewarm); a call's records
are flushed when its job ends, and the writer is closed at the process's exit, each within
`CLOSE_TIMEOUT_S` whatever the database does.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
from typing import Any

from livekit.agents import AgentServer, AgentSession, JobContext, JobProcess

from agent.assistant import Assistant
from agent.filler import filler_policy
from agent.identity import Caller, caller_in
from agent.tts import tts_text_transforms
from graph.builder import build_graph, warm_up
from graph.services import Services
from retrievers.errors import VoiceragError
from voicerag import metrics
from voicerag.audit import AuditWriter, open_audit_writer
from voicerag.audit.turns import audit_sink
from voicerag.audit.wiring import CLOSE_TIMEOUT_S
from voicerag.services import build_embeddings, build_knowledge_base, build_services
from voicerag.settings import Settings, load_settings
from voicerag.tracing import open_tracing

log = logging.getLogger(__name__)

TEXT_MODE_ENV = "VOICERAG_AGENT_TEXT"  # set by `voicerag agent console --text`


def text_mode() -> bool:
    return os.environ.get(TEXT_MODE_ENV) == "1"


def check_ready(settings: Settings) -> None:
    """Fail now, in one line, when the knowledge base cannot be reached — not on a caller's first turn
    (`voicerag agent` runs this before LiveKit starts; a Chroma call has a timeout)."""

    async def reach() -> None:
        embeddings = build_embeddings(settings)
        knowledge_base = build_knowledge_base(settings, embeddings)
        try:
            await knowledge_base.count_chunks()
        finally:
            await knowledge_base.close()
            embeddings.close()

    asyncio.run(reach())


def prewarm(proc: JobProcess) -> None:
    """Once per worker process: settings, the embedding model, the knowledge base, the graph, VAD."""
    try:
        settings = load_settings()
        services = build_services(settings)
        audit = open_audit_writer(settings)
    except VoiceragError as exc:  # one line, and a worker that does not pretend to be ready
        log.error("voice worker cannot start: %s", exc)
        raise SystemExit(exc.exit_code) from None
    services.embeddings.embed_query("warm up")  # loads the model now, not on the first caller's turn
    atexit.unregister(audit.close)  # its own registration waits 5 s: a worker waits CLOSE_TIMEOUT_S
    atexit.register(audit.close, CLOSE_TIMEOUT_S)
    proc.userdata.update(settings=settings, services=services, graph=build_graph(services), warm=False, audit=audit)
    proc.userdata["sinks"] = [audit_sink(audit), *metrics.turn_sinks()]
    tracing = open_tracing(settings)
    atexit.register(tracing.close)  # bounded: a hanging tracing backend never holds the exit
    if tracing.otel is not None:  # LiveKit's spans on the same provider: the graph's hang from its turn's
        tracing.otel.use_for_livekit()
    proc.userdata["tracers"] = [*tracing.tracers, *metrics.turn_tracers()]
    if not text_mode():
        from livekit.plugins import silero

        proc.userdata["vad"] = silero.VAD.load()


def speech(settings: Settings) -> dict[str, Any]:
    """STT, TTS and turn handling for a voice session (nothing in text mode)."""
    if text_mode():
        return {}
    from livekit.plugins import openai

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    base_url = str(settings.openai_base_url) if settings.openai_base_url else None
    client = {"api_key": key, "base_url": base_url} if base_url else {"api_key": key}
    language = settings.stt_language
    stt = openai.STT(
        model=settings.stt_model,
        language="en" if language == "auto" else language,
        detect_language=language == "auto",
        **client,  # type: ignore[arg-type]
    )
    tts = openai.TTS(model=settings.tts_model, voice=settings.tts_voice, **client)  # type: ignore[arg-type]
    return {
        "stt": stt,
        "tts": tts,
        "turn_handling": turn_handling(settings),
        "tts_text_transforms": tts_text_transforms(),
    }


def turn_handling(settings: Settings) -> dict[str, Any]:
    """LiveKit's turn handling as the product runs it: preemptive generation on, with TTS too — the
    graph's first sentence is synthesised while LiveKit is still deciding the end of turn, so at commit
    only playback is left (answers are short and spoken-budgeted, so a discarded run wastes little)."""
    options: dict[str, Any] = {
        "preemptive_generation": {
            "enabled": settings.preemptive_generation,
            "preemptive_tts": settings.preemptive_generation and settings.preemptive_tts,
        }
    }
    if settings.turn_detection != "default":
        options["turn_detection"] = settings.turn_detection
    return options


def session_id(ctx: JobContext) -> str:
    """The call's id: the LiveKit room's name (one room per call), else the job's id."""
    name = getattr(ctx.room, "name", "")
    return name if isinstance(name, str) and name else str(ctx.job.id)


# LiveKit serves /metrics on METRICS_PORT (summed over job processes: `voicerag.metrics.enable`).
server = AgentServer(setup_fnc=prewarm, prometheus_port=metrics.metrics_port())


@server.rtc_session(agent_name="voicerag")
async def entrypoint(ctx: JobContext) -> None:
    """One call: a session whose LLM step is the graph, for whoever joined the room."""
    settings: Settings = ctx.proc.userdata["settings"]
    services: Services = ctx.proc.userdata["services"]
    if not ctx.proc.userdata["warm"]:
        await warm_up(services)  # keyword index, router examples, real-time feeds: once per process
        ctx.proc.userdata["warm"] = True

    def caller() -> Caller | None:
        return caller_in(ctx.room)

    audit: AuditWriter = ctx.proc.userdata["audit"]

    async def flush_audit() -> None:  # the call's records, written before the job is reported done
        await asyncio.to_thread(audit.flush, CLOSE_TIMEOUT_S)

    ctx.add_shutdown_callback(flush_audit)
    session = AgentSession(vad=ctx.proc.userdata.get("vad"), **speech(settings))
    assistant = Assistant(
        ctx.proc.userdata["graph"],
        persona=services.persona,
        caller=caller,
        filler=filler_policy(services, settings.filler_threshold_ms),
        session_id=session_id(ctx),
        sinks=ctx.proc.userdata["sinks"],
        tracers=ctx.proc.userdata["tracers"],
    )
    await session.start(agent=assistant, room=ctx.room)
