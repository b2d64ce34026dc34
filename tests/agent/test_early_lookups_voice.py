"""Early lookups through LiveKit: the final turn reuses what the speculative run already fetched.

LiveKit's `AgentSession` with preemptive generation starts the graph on the STT's preflight transcript,
before end of turn is decided; when the final transcript differs, even only in case and punctuation,
it discards that run and starts another. The second run must await the first's lookups, not fetch
again (graph/lookup_reuse.py). Everything is real but the speech models (`fakes.speech`) and the chat
model (the fake OpenAI server of `conftest.py`); the source is a `TimedSource` counting its fetches.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from fakes.sources import TimedSource, named
from fakes.speech import FakeAudioInput, FakeAudioOutput, FakeSTT, FakeTTS, Utterance
from helpers import lingering
from livekit.agents import AgentSession

from agent.assistant import Assistant
from graph.builder import VoiceGraph, build_graph
from graph.services import Services
from retrievers.turn.reuse import LookupReuse
from voicerag.settings import load_settings
from voicerag.worker import turn_handling

on_module_loop = pytest.mark.asyncio(loop_scope="module")  # the loop the module's services live on

SOURCE_DELAY_S = 0.6  # slower than the rest of the caller's speech after the preflight (0.4 s)


class RecordingGraph:
    """The compiled graph, recording the question of every run LiveKit starts."""

    def __init__(self, graph: VoiceGraph) -> None:
        self.graph: Any = graph
        self.questions: list[str] = []

    def astream(self, state: dict[str, Any], config: Any = None, **kwargs: Any) -> Any:
        self.questions.append(str(state["messages"][-1].text))
        return self.graph.astream(state, config, **kwargs)


@dataclasses.dataclass
class VoiceCall:
    session: AgentSession
    assistant: Assistant
    graph: RecordingGraph
    stt: FakeSTT

    async def speak(self, utterance: Utterance, timeout_s: float = 5.0) -> tuple[str, float]:
        """The caller says it; the assistant's reply and when it was added (time.monotonic())."""
        said: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()

        def added(event: Any) -> None:
            if event.item.role == "assistant" and not said.done():
                said.set_result((event.item.text_content or "", time.monotonic()))

        self.session.on("conversation_item_added", added)
        try:
            self.stt.say(utterance)
            return await asyncio.wait_for(said, timeout_s)
        finally:
            self.session.off("conversation_item_added", added)


@contextlib.asynccontextmanager
async def voice_call(
    services: Services, session_id: str, *, preemptive_tts: bool = False, tts: FakeTTS | None = None
) -> AsyncIterator[VoiceCall]:
    graph = RecordingGraph(build_graph(services))
    assistant = Assistant(cast(VoiceGraph, graph), persona=services.persona, session_id=session_id)
    stt = FakeSTT()
    settings = load_settings(turn_detection="stt", preemptive_tts=preemptive_tts, _env_file=None)
    session: AgentSession[None] = AgentSession(stt=stt, tts=tts or FakeTTS(), turn_handling=turn_handling(settings))
    session.input.audio = FakeAudioInput()
    session.output.audio = FakeAudioOutput()
    await session.start(assistant)
    try:
        yield VoiceCall(session, assistant, graph, stt)
    finally:
        await session.aclose()
    assert assistant.graph_llm.active == set() and lingering() == []


def with_stock(services: Services) -> tuple[Services, TimedSource]:
    """The module's services with a slow source and a reuse cache of this test's own."""
    stock = named("stock", delay_s=SOURCE_DELAY_S)
    services.sources.register(stock)
    return dataclasses.replace(services, lookups=LookupReuse(10.0)), stock


PREFLIGHT, FINAL = "is the stock fine for the kh 300", "Is the stock fine for the KH-300?"


def spoken_turn() -> Utterance:
    """The preflight is the final question as a recognizer first gives it, before formatting: lower
    case, no punctuation, the model number spelt out. LiveKit's own comparison sees another question
    (its words differ: "kh", "300" / "kh-300") and restarts the run; ours sees the same one."""
    return Utterance(FINAL, preflight=PREFLIGHT, preflight_s=0.1, speech_s=0.5)


@on_module_loop
async def test_the_final_turn_reuses_the_speculative_runs_lookups(services: Services) -> None:
    shared, stock = with_stock(services)
    utterance = spoken_turn()
    async with voice_call(shared, session_id="room-early") as call:
        said, answered = await call.speak(utterance)
        questions, turns = call.graph.questions, list(call.assistant.turns)

    assert questions == [PREFLIGHT, FINAL]  # LiveKit restarted the run ...
    assert [t["cancelled"] for t in turns] == [True, False]  # ... discarding the speculative one
    assert len(stock.started) == 1 and stock.cancelled == []  # fetched once, by the speculative run, never cut
    assert stock.started[0] < utterance.heard_at["final_transcript"]  # before the caller had finished
    assert turns[1]["sources"]["stock"]["cached"] is True  # the final turn got the speculative run's result
    assert shared.lookups is not None and shared.lookups.reused >= 3  # route, search, source
    assert said.endswith("The stock value is 42.")
    print(f"answer {(answered - utterance.heard_at['final_transcript']) * 1000:.0f} ms after the final transcript")


@on_module_loop
async def test_without_a_session_each_run_fetches_for_itself(services: Services) -> None:
    """The control: the same turn in a call with no id (nothing is shared) fetches twice."""
    shared, stock = with_stock(services)
    async with voice_call(shared, session_id="") as call:
        said, _ = await call.speak(spoken_turn())

    assert len(stock.started) == 2 and len(stock.cancelled) == 1  # the speculative fetch was cut and paid again
    assert shared.lookups is not None and shared.lookups.started == 0 and said.endswith("The stock value is 42.")


@on_module_loop
@pytest.mark.parametrize("preemptive_tts", [True, False])
async def test_the_product_synthesises_the_first_sentence_before_end_of_turn(
    services: Services, preemptive_tts: bool
) -> None:
    """With the worker's turn handling (PREEMPTIVE_TTS, default on) the kept speculative run's first
    sentence is already with the TTS when the final transcript arrives: at commit only playback is
    left. Off, synthesis waits for the commit (the control)."""
    services.sources.register(named("stock", delay_s=0.05))
    tts = FakeTTS()
    utterance = Utterance(FINAL, preflight=FINAL, preflight_s=0.1, speech_s=0.6)  # kept: the same words
    async with voice_call(services, "room-tts", preemptive_tts=preemptive_tts, tts=tts) as call:
        said, _ = await call.speak(utterance)
        questions = call.graph.questions

    assert questions == [FINAL] and said.endswith("The stock value is 42.")
    first_request = tts.requests[0].asked_at
    assert (first_request < utterance.heard_at["final_transcript"]) is preemptive_tts
