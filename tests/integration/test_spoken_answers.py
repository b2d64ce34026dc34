"""Spoken answers on the sample knowledge base and on one written for this test (tables, lists, URLs,
emoji unlike the sample's): free of markdown, within the budget, still carrying the fact; and a yes
to "Want the details?" reads the rest, in a checkpointed thread and in LiveKit's resent chat.

The budget is checked on `answer` (the shaped text); `spoken` adds TTS normalisation, which may read
one number as several words, so markup is checked there.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fakes.openai_server import FakeOpenAIServer
from helpers import PHRASES
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import SecretStr

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.prompts import DETAILS_NOTE
from graph.services import Services
from graph.speakable import Budget, spoken_length
from retrievers.documents import Document, load_documents
from retrievers.language import Language
from voicerag.cli.turn import run_turn, turn_json
from voicerag.services import build_services
from voicerag.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = [json.loads(line) for line in (ROOT / "eval/answers/sample_kb.jsonl").read_text().splitlines()]
MARKUP = re.compile(r"[*#|`_~>\[\]]|https?://|www\.|^\s*[-+•]\s|[\U0001F000-\U0001FAFF\u2600-\u27BF]", re.MULTILINE)

# A knowledge base the shaping was not written against: a bicycle shop, tables, lists, links, emoji.
UNSEEN = [
    Document(
        id="rental-en",
        title="Bike rental prices",
        lang="en",
        text=(
            "# Bike rental 🚲\n\nRent a bike by the hour or the day at any Rinrin Cycles shop.\n\n"
            "| Bike | Per hour | Per day |\n|:-----|-----:|-----:|\n| City bike | ¥500 | ¥2,000 |\n"
            "| E-bike | ¥900 | ¥3,600 |\n| Cargo bike | ¥1,200 | ¥4,800 |\n\n"
            "Book online at https://rinrin.example/book or call 03-5555-0142. Helmets are free 😀."
        ),
    ),
    Document(
        id="repair-en",
        title="Puncture repair and servicing",
        lang="en",
        text=(
            "## Servicing\n\n**What a full service includes**\n- Brake adjustment\n- Gear tuning\n"
            "- Chain cleaning and oiling\n- Tyre pressure check\n\nA full service costs ¥6,500 and takes "
            "about two hours. A puncture repair costs ¥1,100 and is done while you wait. See "
            "[our service menu](https://rinrin.example/service) for details."
        ),
    ),
    Document(
        id="rental-ja",
        title="レンタサイクル料金",
        lang="ja",
        text=(
            "# レンタサイクル 🚲\n\n| 車種 | 1時間 | 1日 |\n|---|---|---|\n| シティサイクル | 500円 | 2,000円 |\n"
            "| 電動アシスト自転車 | 900円 | 3,600円 |\n| カーゴバイク | 1,200円 | 4,800円 |\n\n"
            "**ご利用条件**\n- 身分証明書の提示が必要です\n- 16歳未満の方は保護者の同意が必要です\n"
            "- ヘルメットは無料で貸し出します\n\nご予約は https://rinrin.example/ja/book から。"
        ),
    ),
    Document(
        id="hours-ja",
        title="りんりんサイクル 営業時間",
        lang="ja",
        text=(
            "## 営業時間\n\n- 平日：9:00〜19:00\n- 土日祝：8:00〜20:00\n- 定休日：毎週水曜日\n\n"
            "雨の日もレンタルできますが、カッパは300円で販売しています。"
        ),
    ),
]
UNSEEN_QUESTIONS = [
    {"text": "How much is an e-bike for a day?", "expect": "3,600", "lang": "en"},
    {"text": "How much does a cargo bike cost per hour?", "expect": "1,200", "lang": "en"},
    {"text": "How much does a puncture repair cost?", "expect": "1,100", "lang": "en"},
    {"text": "How long does a full service take?", "expect": "two hours", "lang": "en"},
    {"text": "電動アシスト自転車を1日借りるといくらですか？", "expect": "3,600", "lang": "ja"},
    {"text": "りんりんサイクルの定休日はいつですか？", "expect": "水曜日", "lang": "ja"},
    {"text": "土日の営業時間は何時から何時までですか？", "expect": "8:00", "lang": "ja"},
    {"text": "レンタルに身分証明書は必要ですか？", "expect": "身分証明書", "lang": "ja"},
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    settings = load_settings(
        voicerag_data_dir=tmp_path_factory.mktemp("spoken"),
        embeddings="use",
        openai_api_key=None,
        openai_base_url=None,
        sources_file="",
        database_queries_file="",
    )
    built = build_services(settings)
    await built.knowledge_base.index_documents([*load_documents([ROOT / "data/knowledge_base"]).documents, *UNSEEN])
    await warm_up(built)
    yield built
    await built.aclose()


@pytest.fixture(scope="module")
def graph(services: Services) -> VoiceGraph:
    return build_graph(services)


async def ask_json(graph: VoiceGraph, question: str) -> dict[str, Any]:
    state = await graph.ainvoke({"messages": [HumanMessage(question)]}, context=Context())
    return turn_json(state)


async def in_thread(graph: VoiceGraph, thread: str, *messages: AnyMessage) -> dict[str, Any]:
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    return await graph.ainvoke({"messages": list(messages)}, config, context=Context())


async def held_back(graph: VoiceGraph, thread: str) -> str:
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    return str((await graph.aget_state(config)).values["held_back"])


def answer_body(answer: str, language: Language) -> str:
    """What the budget counts: the answer without the offer that follows it."""
    return answer.removesuffix(PHRASES.offer_details[language]).strip()


def check_spoken(turn: dict[str, Any], case: dict[str, Any]) -> tuple[bool, bool, bool]:
    """(markdown-free, within budget, fact kept) of one turn."""
    language = case["lang"]
    clean = not MARKUP.search(turn["spoken"])
    within = spoken_length(answer_body(turn["answer"], language), language) <= Budget().limit(language)
    fact = not case.get("expect") or case["expect"] in turn["answer"]
    return clean, within, fact


async def test_sample_kb_spoken_answers_are_clean_within_budget_and_keep_the_fact(graph: VoiceGraph) -> None:
    results = [check_spoken(await ask_json(graph, case["text"]), case) for case in SAMPLE]
    answerable = [fact for (_, _, fact), case in zip(results, SAMPLE, strict=True) if case["doc_id"]]
    assert all(clean for clean, _, _ in results)
    assert all(within for _, within, _ in results)
    # measured 19/28, as many as the unshaped whole-list answer, which was over budget 28% of the time
    assert sum(answerable) >= 19, f"{sum(answerable)}/{len(answerable)} kept the fact"


@pytest.mark.parametrize("case", UNSEEN_QUESTIONS, ids=lambda case: case["text"])
async def test_unseen_kb_spoken_answers_are_clean_within_budget_and_keep_the_fact(
    graph: VoiceGraph, case: dict[str, Any]
) -> None:
    turn = await ask_json(graph, case["text"])
    clean, within, fact = check_spoken(turn, case)
    assert clean, turn["spoken"]
    assert within, turn["answer"]
    assert fact, turn["answer"]


@pytest.fixture(scope="module")
def tight_graph(services: Services) -> VoiceGraph:
    """A small budget, so that the answer to a plain question is cut and the rest offered."""
    options = dataclasses.replace(services.options, budget=Budget(max_chars_ja=30, max_words_en=12))
    return build_graph(dataclasses.replace(services, options=options), checkpointer=InMemorySaver())


QUESTION = "What does a full service include and how much is it?"


async def test_a_yes_in_resent_chat_reads_the_rest_of_the_previous_answer(tight_graph: VoiceGraph) -> None:
    first = await in_thread(tight_graph, "first", HumanMessage(QUESTION))
    assert first["answer"].endswith(PHRASES.offer_details["en"])
    rest_of_first = await held_back(tight_graph, "first")
    assert rest_of_first

    # LiveKit resends the whole chat to a fresh run: no checkpoint, only what was said.
    history: list[AnyMessage] = [HumanMessage(QUESTION), AIMessage(first["answer"]), HumanMessage("Yes, please.")]
    rest = await in_thread(tight_graph, "resent", *history)
    assert answer_body(rest["answer"], "en").split()[:3] == rest_of_first.split()[:3]
    assert not rest["answer"].startswith(PHRASES.extractive_prefix["en"])  # not the same answer again


async def test_a_yes_in_a_checkpointed_thread_reads_what_the_thread_held_back(tight_graph: VoiceGraph) -> None:
    first = await in_thread(tight_graph, "kept", HumanMessage(QUESTION))
    rest_of_first = await held_back(tight_graph, "kept")
    second = await in_thread(tight_graph, "kept", HumanMessage("はい、お願いします"))
    assert first["answer"].endswith(PHRASES.offer_details["en"])
    assert answer_body(second["answer"], "en").split()[:3] == rest_of_first.split()[:3]
    assert "¥6,500" in first["answer"] + second["answer"]


async def test_a_yes_with_nothing_offered_is_answered_as_a_question(tight_graph: VoiceGraph) -> None:
    state = await in_thread(tight_graph, "plain", HumanMessage("yes"))
    assert state["answer"] != PHRASES.no_more_details["en"]


@pytest.fixture(scope="module")
def chat_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def chat_graph(services: Services, chat_server: FakeOpenAIServer) -> VoiceGraph:
    model = ChatOpenAI(base_url=chat_server.base_url, api_key=SecretStr("test"), model="gpt-4o-mini")
    return build_graph(dataclasses.replace(services, chat_model=model))


LONG_REPLY = "**The KH-300** has a 2-year warranty from the date of purchase.\n" + (
    "- Kumo Care+ extends it to three years and adds one accidental repair.\n" * 12
)


async def test_a_chat_model_past_the_budget_is_stopped_at_a_sentence_and_the_rest_offered(
    chat_graph: VoiceGraph, chat_server: FakeOpenAIServer
) -> None:
    chat_server.set(reply=LONG_REPLY)
    heard: list[str] = []
    state = await run_turn(chat_graph, [HumanMessage("What is the KH-300 warranty?")], Context(), heard.append)
    assert "".join(heard).endswith(PHRASES.offer_details["en"])  # streamed as it came, then the offer
    assert state["answer"].startswith("The KH-300 has a 2-year warranty")  # markup stripped from what is kept
    assert not MARKUP.search(turn_json(state)["spoken"])
    assert spoken_length(state["answer"], "en") < spoken_length(LONG_REPLY, "en") // 2  # the model was stopped
    assert "under 45 words" in chat_server.chat_requests[-1].system_prompt


async def test_a_yes_after_a_chat_answer_asks_the_model_for_the_details_it_left_out(
    chat_graph: VoiceGraph, chat_server: FakeOpenAIServer
) -> None:
    chat_server.set(reply="Kumo Care+ also covers one accidental repair.")
    history: list[AnyMessage] = [
        HumanMessage("What is the KH-300 warranty?"),
        AIMessage("The KH-300 has a 2-year warranty. " + PHRASES.offer_details["en"]),
        HumanMessage("yes please"),
    ]
    state = await run_turn(chat_graph, history, Context())
    assert state["answer"] == "Kumo Care+ also covers one accidental repair."
    assert DETAILS_NOTE["en"].strip() in chat_server.chat_requests[-1].system_prompt
