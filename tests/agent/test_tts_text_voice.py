"""The voice path reads numbers naturally: what LiveKit's TTS is asked to say went through LiveKit's
markdown filter and then `speakable_text`, even when the model streams one character at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fakes.speech import FakeAudioOutput, FakeTTS
from helpers import PHRASES
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from livekit.agents import Agent, AgentSession

from agent.llm import GraphLLM
from agent.tts import sentence_language, speakable_transform
from graph.builder import SPEAKING_NODE
from graph.context import Context
from graph.state import State
from voicerag.settings import load_settings
from voicerag.worker import speech, tts_text_transforms


def answering_graph(answer: str) -> Any:
    """A graph whose speaking node streams `answer` one character per chunk (numbers split apart)."""

    async def generate(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        message = await FakeListChatModel(responses=[answer]).ainvoke(state["messages"])
        return {"messages": [message]}

    builder = StateGraph(State, context_schema=Context)
    builder.add_node(SPEAKING_NODE, generate)
    builder.add_edge(START, SPEAKING_NODE)
    builder.add_edge(SPEAKING_NODE, END)
    return builder.compile()


async def tts_input(answer: str) -> str:
    """Everything the TTS was asked to say for one turn answered with `answer`."""
    tts = FakeTTS(ttfb_s=0.001, seconds_per_char=0.001)
    session: AgentSession[None] = AgentSession(
        llm=GraphLLM(answering_graph(answer), phrases=PHRASES), tts=tts, tts_text_transforms=tts_text_transforms()
    )
    session.output.audio = FakeAudioOutput(speed=100.0)
    async with session:
        await session.start(Agent(instructions="You are a test agent."))
        await session.run(user_input="question")
    return " ".join(request.text.strip() for request in tts.requests)


async def test_the_tts_hears_numbers_the_way_a_person_says_them() -> None:
    said = await tts_input("The **KH-300** costs ¥1,650. Call 03-1234-5678, Mon–Fri 9am–6pm.")
    assert said == (
        "The KH 300 costs 1,650 yen. "
        "Call zero three, one two three four, five six seven eight, Monday to Friday 9 AM to 6 PM."
    )


async def test_a_japanese_answer_is_read_in_japanese() -> None:
    said = await tts_input("受付は10:00〜19:00です。お電話は03-1234-5678まで。")
    assert said.replace(" ", "") == "受付は10時から19時です。お電話はゼロサン、イチニーサンヨン、ゴーロクナナハチまで。"


def test_the_worker_session_normalises_after_livekits_own_filters() -> None:
    transforms = speech(load_settings(_env_file=None, openai_api_key="sk-test"))["tts_text_transforms"]
    assert transforms[:2] == ["filter_markdown", "filter_emoji"] and len(transforms) == 3
    assert transforms[2].__qualname__ == speakable_transform().__qualname__


def test_a_japanese_sentence_full_of_latin_letters_is_still_japanese() -> None:
    assert sentence_language("法人営業部：corporate@kumo-audio.example、電話 03-5400-8820（平日9:30〜17:30）。") == "ja"
    assert sentence_language("Call 03-5400-8820 on weekdays.") == "en"


async def chunks(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


async def test_a_number_split_across_chunks_is_read_whole() -> None:
    out = [piece async for piece in speakable_transform()(chunks("Call 03-12", "34-5678. No", ". 5 is 3.", "5-4.5 kg"))]
    assert "".join(out) == "Call zero three, one two three four, five six seven eight. number 5 is 3.5 to 4.5 kg"
    assert out[0] == "Call zero three, one two three four, five six seven eight. "  # sent at the sentence end


async def test_a_run_on_answer_is_not_held_back_whole() -> None:
    words = ["word "] * 120  # no sentence end at all
    out = [piece async for piece in speakable_transform("en")(chunks(*words))]
    assert len(out) > 1 and "".join(out) == "".join(words)
