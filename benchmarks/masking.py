"""masking: how well `retrievers/masking` finds what callers say, and what masking a record costs.

- Quality: precision and recall per kind on the labelled set `tests/data/masking_cases.jsonl`
  (exact spans; the cases marked `gap` are known misses and count as such).
- Cost: `mask_value` on a typical per-turn record (the fields of `TurnRecord.masked()` plus the
  question and the answer that a kept record carries), each record with a different question from
  the labelled set and a sample-knowledge-base answer; `find` on each labelled string alone; and
  `mask` on whole knowledge-base documents (what an error message or a trace may carry), and on a
  worst case: 10,000 characters of digits and spaces (every window of the run is tried).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, SAMPLE_KB, Result, now, print_table, stats
from retrievers.masking import Kind, find, mask, mask_value
from retrievers.masking.evaluation import load_cases, score

NAME = "masking"
CASES_FILE = ROOT / "tests" / "data" / "masking_cases.jsonl"
ANSWERS_FILE = SAMPLE_KB / "faq.jsonl"


def _timed_us(function: Any, argument: Any) -> float:
    started = now()
    function(argument)
    return (now() - started) * 1e6


def _record(question: str, answer: str, number: int) -> dict[str, Any]:
    """A per-turn record as the voice worker keeps it, with the turn's question and answer."""
    return {
        "turn_id": f"turn-{number}",
        "user_id": "C-101518",
        "language": "ja",
        "first_token_ms": 412.3,
        "end_of_turn_ms": 180.0,
        "filler": None,
        "filler_ms": None,
        "route": "lookup",
        "sources": {"parcel_tracking": {"status": "ok", "elapsed_ms": 180.2, "cached": False}},
        "timings_ms": {"route": 3.1, "retrieve": 41.0, "grade": 0.4, "pre_generation": 45.2, "generate": 380.0},
        "degraded": False,
        "failed": None,
        "cancelled": False,
        "total_ms": 830.5,
        "end_of_speech_to_first_token_ms": 592.3,
        "cache_hits": 0,
        "question": question,
        "answer": answer,
        "problems": [],
    }


def _answers() -> list[str]:
    lines = ANSWERS_FILE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def quality() -> tuple[list[list[Any]], dict[str, Any]]:
    scores = score(load_cases(CASES_FILE))
    rows, figures = [], {}
    for kind in Kind:
        s = scores[kind]
        rows.append([kind.value, s.found + s.missed, s.found, s.wrong, s.missed, s.precision, s.recall])
        figures[kind.value] = {"labelled": s.found + s.missed, "found": s.found, "wrong": s.wrong, "missed": s.missed}
        figures[kind.value] |= {"precision": s.precision, "recall": s.recall}
    return rows, figures


def cost(quick: bool) -> dict[str, Any]:
    texts = [case.text for case in load_cases(CASES_FILE)]
    answers = _answers()
    count = 300 if quick else 3000
    records = [_record(texts[i % len(texts)], answers[i % len(answers)], i) for i in range(count)]
    for record in records[:50]:  # warm-up: regex compilation, the NFKC cache
        mask_value(record)
    per_record = [_timed_us(mask_value, record) for record in records]
    per_string = [_timed_us(find, text) for text in texts * (1 if quick else 10)]
    documents = [path.read_text(encoding="utf-8") for path in sorted(SAMPLE_KB.rglob("*.md"))]
    per_document = [_timed_us(mask, text) for text in documents * (1 if quick else 5)]
    worst = " ".join(str(i % 10) for i in range(5000))
    per_worst = [_timed_us(mask, worst) for _ in range(3 if quick else 10)]
    return {
        "record_chars": round(sum(len(json.dumps(r, ensure_ascii=False)) for r in records) / len(records)),
        "mask_value_record_us": stats(per_record),
        "find_labelled_string_us": stats(per_string),
        "document_chars": round(sum(map(len, documents)) / len(documents)),
        "mask_document_us": stats(per_document),
        "worst_chars": len(worst),
        "mask_worst_us": stats(per_worst),
    }


async def run(quick: bool) -> Result:
    rows, figures = quality()
    print_table(
        f"masking: precision and recall per kind on {Path(CASES_FILE).relative_to(ROOT)} (exact spans)",
        ["kind", "labelled", "found", "wrong", "missed", "precision", "recall"],
        rows,
    )
    costs = cost(quick)
    print_table(
        "masking: cost (µs, this machine)",
        ["what", "chars", "p50", "p95", "mean", "n"],
        [
            ["mask_value(per-turn record)", costs["record_chars"], *costs["mask_value_record_us"].values()],
            ["find(labelled string)", None, *costs["find_labelled_string_us"].values()],
            ["mask(knowledge-base document)", costs["document_chars"], *costs["mask_document_us"].values()],
            ["mask(digits and spaces, worst case)", costs["worst_chars"], *costs["mask_worst_us"].values()],
        ],
    )
    return Result(NAME, quick, {"per_kind": figures, "cost_us": costs})
