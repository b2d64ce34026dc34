"""tts_text: what TTS text normalisation costs per sentence (it runs on every sentence spoken).

- `speakable_text` on each input of `tests/data/tts_cases.jsonl` (short sentences full of numbers)
  and on every sentence of the sample knowledge base (what answers are made of), in its language;
- the LiveKit transform (`agent/tts.py`) over a whole answer streamed in 4-character chunks (as a
  chat model's tokens come), per answer: buffering to sentence ends plus normalisation.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from agent.tts import speakable_transform
from benchmarks.common import ROOT, SAMPLE_KB, Result, now, print_table, stats
from graph.tts_text import speakable_text
from retrievers.language import Language, detect_language

NAME = "tts_text"
CASES_FILE = ROOT / "tests" / "data" / "tts_cases.jsonl"


def _sentences() -> list[str]:
    found = []
    for path in sorted(SAMPLE_KB.rglob("*.md")):
        for line in path.read_text(encoding="utf-8").splitlines():
            found += [s.strip() for s in re.split(r"(?<=[.!?])\s+|(?<=。)", line) if len(s.strip()) > 5]
    return found


def _timed(inputs: list[tuple[str, Language]], rounds: int) -> list[float]:
    for text, language in inputs:  # warm-up
        speakable_text(text, language)
    times = []
    for _ in range(rounds):
        for text, language in inputs:
            started = now()
            speakable_text(text, language)
            times.append((now() - started) * 1e6)
    return times


async def _chunks(text: str) -> AsyncIterator[str]:
    for i in range(0, len(text), 4):
        yield text[i : i + 4]


async def _streamed_us(answers: list[str]) -> list[float]:
    times = []
    for answer in answers:
        started = now()
        async for _ in speakable_transform()(_chunks(answer)):
            pass
        times.append((now() - started) * 1e6)
    return times


async def run(quick: bool) -> Result:
    cases = [json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines()]
    case_inputs: list[tuple[str, Language]] = [(c["input"], "ja" if c["language"] == "ja" else "en") for c in cases]
    sentences = _sentences()
    kb_inputs = [(s, detect_language(s)) for s in sentences]
    rounds = 3 if quick else 30
    answers = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    figures: dict[str, Any] = {
        "case_sentence_us": stats(_timed(case_inputs, rounds)),
        "case_chars": round(sum(len(t) for t, _ in case_inputs) / len(case_inputs)),
        "kb_sentence_us": stats(_timed(kb_inputs, rounds)),
        "kb_chars": round(sum(len(t) for t, _ in kb_inputs) / len(kb_inputs)),
        "streamed_answer_us": stats(await _streamed_us(answers * (1 if quick else 5))),
        "answer_chars": round(sum(map(len, answers)) / len(answers)),
    }
    print_table(
        "tts_text: cost (µs, this machine)",
        ["what", "chars", "p50", "p95", "mean", "n"],
        [
            ["speakable_text(table case)", figures["case_chars"], *figures["case_sentence_us"].values()],
            ["speakable_text(knowledge-base sentence)", figures["kb_chars"], *figures["kb_sentence_us"].values()],
            [
                "transform(4-sentence answer, 4-char chunks)",
                figures["answer_chars"],
                *figures["streamed_answer_us"].values(),
            ],
        ],
    )
    await asyncio.sleep(0)
    return Result(NAME, quick, figures)
