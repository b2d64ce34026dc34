"""barge_in: the caller speaks over the agent, with real audio — how soon the agent's audio stops
and its graph run is cancelled, that nothing is left running, and that the next turn is right.

The same rig as `voice_e2e` (espeak-ng questions streamed in real time into an `AgentSession` with
Silero VAD and LiveKit's default turn detector, fixed-latency STT and TTS), our `Assistant` over the
product graph, but a chat model that keeps talking: its first token after `TTFT_MS`, then a token
every `TOKEN_GAP_MS`, so the graph is still streaming while the first sentences are played; the
speaker plays in real time. Per turn: the caller asks, the agent starts answering; `BARGE_AFTER_S`
after the first agent audio the caller asks the next question over it. Measured from the first
voiced frame of the interruption: → the speaker cleared (the agent's audio stopped) and → the
interrupted run's record emitted (its graph run over; noted: whether its answer was cut short and
whether the record says `cancelled`). Then the interruption is answered as a turn of its own
(checked: its record's question, not cancelled), and after the call no graph stream is left open.

LiveKit interrupts after `interruption.min_duration` (0.5 s by default) of speech by VAD: that
floor is LiveKit's. So is the AEC warm-up: LiveKit ignores interruptions during the first 3 s the
agent speaks in a call (`aec_warmup_duration`), so the call's first barge-in is reported apart.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from time import monotonic as now
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from livekit.plugins import silero

from benchmarks.agent_overhead import FixedTTFTChatModel, sample_kb
from benchmarks.audio_fakes import MissingSynthesiser, Utterance, spoken_question
from benchmarks.common import DATA_DIR, Progress, Result, log, print_table, stats
from benchmarks.voice_e2e import QUESTIONS, TTFT_MS, Rig, TimedAssistant, call_id
from graph.builder import build_graph, warm_up
from graph.turn_record import TurnRecord
from tests.fakes.speech import FakeAudioOutput

NAME = "barge_in"
STOPS = (
    ("vad_speech_start", "VAD start of speech"),
    ("audio_stopped", "agent audio stopped"),
    ("run_ended", "interrupted graph run ended"),
)
TOKEN_GAP_MS = 120
BARGE_AFTER_S = 0.4
LONG_REPLY = (
    "The KH-300 comes with a two-year warranty from the date of purchase. It covers defects in "
    "materials and workmanship. Accidental damage is not covered. Keep your receipt or order number. "
    "To make a claim, contact support with the serial number. We will arrange a pickup. Repairs take "
    "about a week. Want the details?"
)
WAIT_S = 20.0


class TalkativeChatModel(FixedTTFTChatModel):
    """First token after `ttft_s`, then one every `gap_s`: a long answer still streaming."""

    gap_s: float = TOKEN_GAP_MS / 1000

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.sleep(self.ttft_s)
        for number, token in enumerate(re.findall(r"\s*\S+", self.reply)):
            if number:
                await asyncio.sleep(self.gap_s)
            yield ChatGenerationChunk(message=AIMessageChunk(content=token))


class StopWatchSpeaker(FakeAudioOutput):
    """The fake speaker, noting when a barge-in cleared it."""

    def __init__(self) -> None:
        super().__init__(speed=1.0)
        self.cleared: list[float] = []

    def clear_buffer(self) -> None:
        self.cleared.append(time.monotonic())
        super().clear_buffer()


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"barge_in: {what} did not happen within {WAIT_S:.0f} s")
        await asyncio.sleep(0.005)


async def barge(
    rig: Rig, records: list[tuple[float, TurnRecord]], first: Utterance, second: Utterance
) -> dict[str, Any]:
    speaker = rig.speaker
    assert isinstance(speaker, StopWatchSpeaker)
    played, cleared, recorded = len(speaker.played), len(speaker.cleared), len(records)
    rig.mic.say(first)
    await until(
        lambda: first.ended_at is not None and any(p.first_frame_at > first.ended_at for p in speaker.played[played:]),
        "the agent's first audio",
    )
    await asyncio.sleep(BARGE_AFTER_S)
    rig.mic.say(second)
    await until(lambda: len(speaker.cleared) > cleared and second.started_at is not None, "the agent's audio stop")

    def interrupted_run() -> tuple[float, TurnRecord] | None:  # its record: the graph run over
        started = second.started_at or float("inf")  # (a discarded preemptive run's comes earlier)
        return next(((t, r) for t, r in records[recorded:] if r.question == first.text and t >= started), None)

    await until(lambda: interrupted_run() is not None, "the interrupted run's record")
    await until(
        lambda: any(r.question == second.text and not r.cancelled for _, r in records[recorded:]),
        "the answer to the interruption",
    )
    assert second.started_at is not None and second.ended_at is not None
    answered_after = second.ended_at
    await until(lambda: any(p.first_frame_at > answered_after for p in speaker.played[played:]), "the answer's audio")
    stopped_at = next(t for t in speaker.cleared[cleared:] if t >= second.started_at)
    interrupted = interrupted_run()
    assert interrupted is not None
    ended_at, record = interrupted
    vad_start = rig.user_state_after("speaking", second.started_at)
    return {
        "vad_speech_start": (vad_start - second.started_at) * 1000 if vad_start else None,
        "audio_stopped": (stopped_at - second.started_at) * 1000,
        "run_ended": (ended_at - second.started_at) * 1000,
        "recorded_cancelled": record.cancelled,
        # the run had finished when the caller spoke: only the audio was cut (agent/assistant.py)
        "recorded_interrupted": record.interrupted,
        "answer_cut": len(record.answer) < len(LONG_REPLY),
        "next_turn_ok": any(r.question == second.text and not r.cancelled for _, r in records[recorded:]),
    }


async def run(quick: bool) -> Result:
    pairs = QUESTIONS[:6] if quick else QUESTIONS * 2
    try:
        clips = {text: spoken_question(text, language, DATA_DIR / "voice_e2e" / "wav") for language, text in pairs}
    except MissingSynthesiser as exc:
        log(f"barge_in: {exc}")
        raise SystemExit(2) from None
    services = await sample_kb()
    records: list[tuple[float, TurnRecord]] = []
    results: list[dict[str, Any]] = []
    left_open = 0
    try:
        await warm_up(services)
        services.chat_model = TalkativeChatModel(ttft_s=TTFT_MS / 1000, reply=LONG_REPLY)
        graph = build_graph(services)
        vad = silero.VAD.load()
        assistant = TimedAssistant(
            graph, persona=services.persona, session_id=call_id(), sinks=[lambda r: records.append((now(), r))]
        )
        rig = Rig("barge_in", assistant, vad)
        rig.speaker = StopWatchSpeaker()
        progress = Progress("barge-ins", len(pairs) // 2)
        async with rig:  # one call: the first barge-in falls in LiveKit's AEC warm-up, the others after it
            for number in range(0, len(pairs) - 1, 2):
                first, second = (Utterance(text, lang, clips[text]) for lang, text in pairs[number : number + 2])
                results.append(await barge(rig, records, first, second))
                await rig.session.interrupt(force=True)  # the answer's long audio is not what is measured
                await until(lambda: rig.session.agent_state == "listening", "the agent listening again")
                await asyncio.sleep(0.5)
                progress(number // 2 + 1)
        left_open = len(assistant.graph_llm.active)  # after the session closed
    finally:
        await services.aclose()
    warm_up_barge, results = results[:1], results[1:]
    figures = {
        "in_aec_warm_up": warm_up_barge,
        "token_gap_ms": TOKEN_GAP_MS,
        "barge_after_s": BARGE_AFTER_S,
        "vad_speech_start": stats([r["vad_speech_start"] for r in results if r["vad_speech_start"] is not None]),
        "audio_stopped": stats([r["audio_stopped"] for r in results]),
        "run_ended": stats([r["run_ended"] for r in results]),
        "recorded_cancelled": sum(r["recorded_cancelled"] for r in results),
        "recorded_interrupted": sum(r["recorded_interrupted"] for r in results),
        "answer_cut": sum(r["answer_cut"] for r in results),
        "next_turn_ok": sum(r["next_turn_ok"] for r in results),
        "barge_ins": len(results),
        "streams_left_open": left_open,
        "results": results,
    }
    print_table(
        f"barge_in: {len(results)} interruptions with real audio ({figures['next_turn_ok']} next turns answered, "
        f"{left_open} graph streams left open; {figures['answer_cut']} interrupted answers cut short, "
        f"{figures['recorded_cancelled']} recorded as cancelled (run stopped), {figures['recorded_interrupted']} as "
        "interrupted (run over, audio cut); LiveKit interrupts after 0.5 s of speech; "
        f"the call's first barge-in, in LiveKit's 3 s AEC warm-up, apart: audio stopped after "
        f"{warm_up_barge[0]['audio_stopped']:.0f} ms)",
        ["speech start →", "p50", "p95", "mean"],
        [[label, figures[key]["p50"], figures[key]["p95"], figures[key]["mean"]]
         for key, label in STOPS],
    )  # fmt: skip
    return Result(NAME, quick, figures)
