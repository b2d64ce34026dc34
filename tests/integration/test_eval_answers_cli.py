"""`voicerag eval-answers`: the real command in a subprocess, on a data dir holding four documents of
the sample knowledge base (offline model, extractive answers), scoring five questions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import jsonl, offline_services, write

from retrievers.documents import load_documents

pytestmark = pytest.mark.integration  # the CLI in subprocesses: embedded Chroma and a model

ROOT = Path(__file__).resolve().parents[2]
VOICERAG = str(Path(sys.executable).parent / "voicerag")
DOCUMENTS = (
    "data/knowledge_base/product/product-kh300-en.md",
    "data/knowledge_base/general/general-shipping-ja.md",
    "data/knowledge_base/support/support-returns-en.md",
    "data/knowledge_base/general/general-student-discount-ja.md",
)
QUESTIONS = (
    {"text": "How much is the Kumo Halo KH-300?", "doc_id": "product-kh300-en", "expect": "39,800", "lang": "en"},
    {"text": "送料はいくら？", "doc_id": ["general-shipping-ja", "faq-shipping-fee-ja"], "expect": "660", "lang": "ja"},
    {"text": "How many days do I have to return a product?", "doc_id": "support-returns-en", "expect": "30 days"},
    {"text": "Who wrote Hamlet?", "doc_id": None, "lang": "en", "category": "out_of_scope"},
    {"text": "富士山の標高は何メートル？", "doc_id": None, "lang": "ja", "category": "out_of_scope"},
)


def voicerag(args: list[str], data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOICERAG_DATA_DIR": str(data), "EMBEDDINGS": "use", "SOURCES_FILE": ""}
    return subprocess.run([VOICERAG, *args], capture_output=True, text=True, env=env, timeout=240)


async def ingest(data: Path) -> None:
    services = offline_services(data)  # the layout the command reads: same settings, same model
    try:
        await services.knowledge_base.index_documents(load_documents([ROOT / path for path in DOCUMENTS]).documents)
    finally:
        await services.aclose()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("eval-answers") / "data"
    asyncio.run(ingest(data))  # in this process: a subprocess would load the model once more
    return data


def test_json_reports_the_figures_and_every_row(data: Path) -> None:
    questions = write(data.parent, "questions.jsonl", jsonl(*QUESTIONS))
    result = voicerag(["eval-answers", str(questions), "--json"], data)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {row["text"]: row for row in report["rows"]}
    assert list(rows) == [q["text"] for q in QUESTIONS]

    price = rows["How much is the Kumo Halo KH-300?"]
    assert price["grounded"] and price["fact"] and not price["declined"] and "product-kh300-en" in price["used"]
    assert "39,800" in price["answer"] and price["latency_ms"] > 0
    shipping = rows["送料はいくら？"]
    assert shipping["grounded"] and shipping["fact"] and shipping["expected_docs"][0] == "general-shipping-ja"
    assert rows["How many days do I have to return a product?"]["lang"] == "en"  # the turn's language
    for text in ("Who wrote Hamlet?", "富士山の標高は何メートル？"):
        assert rows[text]["declined"] and rows[text]["used"] == [] and rows[text]["grounded"] is None

    assert (report["questions"], report["answerable"], report["out_of_scope"]) == (5, 3, 2)
    assert report["correct_decline_rate"] == 1.0 and report["invented_answer_rate"] == 0.0
    assert report["grounded"] == sum(1 for row in report["rows"] if row["grounded"])
    assert report["latency_ms_p95"] >= report["latency_ms_p50"] > 0
    assert report["by_language"]["ja"]["questions"] == 2 and report["by_language"]["en"]["questions"] == 3
    assert report["by_category"]["out_of_scope"]["correct_declines"] == 2
    assert (report["embeddings"], report["chat_model"]) == ("use-m3", False)


def test_a_bad_question_file_exits_2_with_one_line_naming_file_line_and_field(tmp_path: Path) -> None:
    questions = write(tmp_path, "bad.jsonl", jsonl(QUESTIONS[0], {"text": "q", "doc_id": "d"}))
    result = voicerag(["eval-answers", str(questions)], tmp_path / "data")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {questions}:2: expect: missing (what the answer must contain)\n"
    assert not (tmp_path / "data").exists()  # refused before anything was opened
