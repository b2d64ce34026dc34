"""Notebooks stay runnable and right: each notebook runs, every code cell in order, through the runner
`make notebooks` uses (scripts/run_notebooks.py), on a tiny data set whose answers are known; what it
prints is what it computed, and it draws its figures. The copies in git keep no outputs."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from graph.answer_evaluation import AnswerRow
from retrievers.embeddings import default_min_relevance
from retrievers.evaluation import score_rankings

pytestmark = pytest.mark.integration  # embedded Chroma and a model

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
assert _spec is not None and _spec.loader is not None
runner = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = runner  # dataclasses look their module up
_spec.loader.exec_module(runner)

TINY_DOCS = [  # id, title, text, lang, category
    ("w", "Warranty", "The Kumo Halo headphones have a two year warranty.", "en", "support"),
    ("r", "Returns", "Products can be returned within 30 days of delivery.", "en", "support"),
    ("h", "Hours", "The Shibuya store opens at 11:00 every day.", "en", "general"),
    ("p", "配送", "送料は1回のご注文につき660円です。", "ja", "general"),
]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An eval set, a knowledge base and a question file, all tiny, named by the notebooks' variables."""
    docs = [{"id": i, "title": t, "text": x, "lang": lang, "category": c} for i, t, x, lang, c in TINY_DOCS]
    eval_set = tmp_path / "eval" / "tiny"
    write_jsonl(eval_set / "corpus.jsonl", docs)
    queries = [("q1", "how long is the warranty", "w"), ("q2", "送料はいくら", "p"), ("q3", "when does it open", "h")]
    write_jsonl(eval_set / "queries.jsonl", [{"id": q, "text": t, "relevant": [r]} for q, t, r in queries])
    questions: list[dict[str, Any]] = [
        {"text": "How long is the warranty of the Kumo Halo?", "doc_id": "w", "expect": "two year", "lang": "en"},
        {"text": "Who won the football World Cup in 2022?", "doc_id": None, "lang": "en"},
        {"text": "送料はいくらですか？", "doc_id": "p", "expect": "660円", "lang": "ja"},
        {"text": "富士山の標高は何メートル？", "doc_id": None, "lang": "ja"},
    ]
    for name, value in {
        "VOICERAG_EVAL_SET": str(eval_set),
        "VOICERAG_NB_KB": str(write_jsonl(tmp_path / "kb" / "docs.jsonl", docs)),
        "VOICERAG_NB_QUESTIONS": str(write_jsonl(tmp_path / "questions.jsonl", questions)),
        "VOICERAG_NB_ROUNDS": "2",
        "VOICERAG_DATA_DIR": str(tmp_path / "data"),
        "EMBEDDINGS": "use",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VOICERAG_NB_LIMIT", raising=False)
    return tmp_path


def check_retrieval_quality(ns: dict[str, Any], output: str) -> None:
    assert "tiny: 4 documents, 3 queries, model use-m3" in output and "tiny: 4 added" in output
    rows: list[tuple[float, dict[str, float]]] = ns["rows"]
    assert [weight for weight, _ in rows] == [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]
    for weight, metrics in rows:  # the printed table is the computed one
        assert f"dense_weight {weight:.1f}  recall@1 {metrics['recall@1']:.3f}  recall@5" in output
    by_weight = dict(rows)
    assert by_weight[0.5]["recall@1"] == by_weight[0.5]["mrr@10"] == 1.0  # each answer found first
    assert by_weight[0.0]["recall@1"] < 1.0  # keywords alone miss some: the sweep really varies the fusion
    for label, signal in ns["SIGNALS"].items():  # each recall curve agrees with score_rankings
        ranked = [ns["ranking"](found, signal) for found in ns["found"]["tiny"]]
        expected = score_rankings(ranked, ns["all_queries"])
        curve = ns["curves"]["tiny", label]
        assert (curve[0], curve[4], curve[9]) == tuple(expected[f"recall@{k}"] for k in (1, 5, 10))
        assert curve == sorted(curve)  # recall never drops as k grows
    assert set(ns["SIGNALS"]) == {"BM25", "dense", f"fused (dense weight {ns['DEFAULT_WEIGHT']})"}
    groups = ns["by_group"]
    assert {k: g["queries"] for k, g in groups.items()} == {
        "category general": 2,
        "category support": 1,
        "lang en": 2,
        "lang ja": 1,
    }
    assert f"lang ja                  1 queries  recall@1 {groups['lang ja']['recall@1']:.3f}" in output
    assert ns["misses"] == [] and "0 misses at rank 1" in output


def check_answer_quality(ns: dict[str, Any], output: str) -> None:
    rows: list[AnswerRow] = ns["rows"]
    result = ns["result"]
    assert (result["questions"], result["answerable"], result["out_of_scope"]) == (4, 2, 2)
    assert [row.grounded for row in rows] == [True, None, True, None]  # the tiny KB answers both
    assert [row.declined for row in rows] == [False, True, False, True]
    assert result["grounded_rate"] == result["correct_decline_rate"] == 1.0 and result["invented_answer_rate"] == 0.0
    for name, figures in {"all": result, **result["by_language"]}.items():  # printed as computed
        line = next(line for line in output.splitlines() if line.startswith(f"{name:4} "))
        assert f"grounded {figures['grounded_rate']:4.0%}" in line
        assert f"latency p50 {figures['latency_ms_p50']} ms" in line
    assert ns["threshold"] == default_min_relevance("use-m3")
    best = ns["best"]
    assert len(best["answerable"]) == 2 and min(best["answerable"]) >= ns["threshold"]
    assert f"answerable    lowest {min(best['answerable']):.3f}" in output
    assert "Q: " not in output  # nothing missed: the browser lists nothing


def check_turns(ns: dict[str, Any], output: str) -> None:
    records = ns["records"]
    assert len(records) == len(ns["batch"]) * 2 == (4 + 4) * 2  # the live questions and the file's, twice
    stage_table = ns["stage_table"]
    assert {"route", "retrieve", "grade", "generate", "total"} <= set(stage_table)
    total = stage_table["total"]
    assert f"total      p50 {total['latency_ms_p50']:8.2f} ms  p95 {total['latency_ms_p95']:8.2f} ms" in output
    statuses = {status for status, _, _ in ns["calls"]["database_query"]}
    assert {"ok", "cached", "skipped"} <= statuses  # fresh, from the cache, withheld from an anonymous caller
    hits, made = ns["hits"], ns["made"]
    assert 0 < hits < made and ns["ratio"][-1] == hits / made
    assert f"{hits} of {made} source calls from the cache" in output


CHECKS: dict[str, tuple[Callable[[dict[str, Any], str], None], int]] = {  # the checks and how many figures
    "retrieval_quality.ipynb": (check_retrieval_quality, 3),
    "answer_quality.ipynb": (check_answer_quality, 2),
    "turns.ipynb": (check_turns, 3),
}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
async def test_notebook_runs_and_shows_what_it_computed(notebook: Path, tiny_data: Path) -> None:
    executed = await runner.execute(notebook)
    assert executed.error is None, executed.error
    check, figures = CHECKS[notebook.name]
    check(executed.namespace, executed.printed())
    pngs = executed.figures()
    assert len(pngs) == figures and all(png.startswith(b"\x89PNG") for png in pngs)


def test_every_notebook_has_its_checks() -> None:
    assert sorted(path.name for path in NOTEBOOKS) == sorted(CHECKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_in_git_keep_no_outputs(notebook: Path) -> None:
    cells = nbformat.read(notebook, as_version=4).cells
    code = [cell for cell in cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


async def test_the_runner_reports_a_failing_cell_and_keeps_what_ran_before(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import asyncio\nvalue = 41\nprint('before')"),
            nbformat.v4.new_code_cell("await asyncio.sleep(0)\nvalue + 1"),  # top-level await; a shown value
            nbformat.v4.new_code_cell("raise ValueError('broken')"),
            nbformat.v4.new_code_cell("print('never')"),
        ]
    )
    path = tmp_path / "broken.ipynb"
    nbformat.write(notebook, path)
    executed = await runner.execute(path)
    assert executed.error == "broken.ipynb, cell 3: ValueError: broken"
    first, second, third, fourth = executed.notebook.cells
    assert executed.printed() == "before\n" and second.outputs[0].data["text/plain"] == "42"
    assert [c.execution_count for c in (first, second, third)] == [1, 2, 3] and re.search("broken", str(third.outputs))
    assert not fourth.get("outputs")
