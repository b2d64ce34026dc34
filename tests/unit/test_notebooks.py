"""Notebooks stay runnable and right: every code cell of each notebook runs, in order, on a tiny data
set whose answers are known, and what it prints is what it computed."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.integration  # embedded Chroma and a model

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture
def tiny_eval_set(tmp_path: Path) -> Path:
    folder = tmp_path / "eval" / "tiny"
    folder.mkdir(parents=True)
    docs = [
        ("w", "Warranty", "The Kumo Halo headphones have a two year warranty."),
        ("r", "Returns", "Products can be returned within 30 days of delivery."),
        ("h", "Hours", "The Shibuya store opens at 11:00 every day."),
        ("p", "配送", "送料は1回のご注文につき660円です。"),
    ]
    with (folder / "corpus.jsonl").open("w") as file:
        for doc_id, title, text in docs:
            file.write(json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    queries = [("q1", "how long is the warranty", "w"), ("q2", "送料はいくら", "p"), ("q3", "when does it open", "h")]
    with (folder / "queries.jsonl").open("w") as file:
        for query_id, text, relevant in queries:
            file.write(json.dumps({"id": query_id, "text": text, "relevant": [relevant]}, ensure_ascii=False) + "\n")
    return folder


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
async def test_notebook_cells_run_in_order(
    notebook: Path, tiny_eval_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("VOICERAG_EVAL_SET", str(tiny_eval_set))
    monkeypatch.setenv("VOICERAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDINGS", "use")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        # Notebooks use top-level await, as Jupyter allows: compile each cell as a coroutine.
        code = compile(cell.source, str(notebook), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if result is not None:
            await result
    output = capsys.readouterr().out
    assert namespace["report"].added == 4 and "4 documents, 3 queries, model use-m3" in output  # type: ignore[attr-defined]
    rows: list[tuple[float, dict[str, float]]] = namespace["rows"]  # type: ignore[assignment]
    assert [weight for weight, _ in rows] == [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0]
    for weight, metrics in rows:  # the printed table is the computed one
        assert f"dense_weight {weight:.1f}  recall@1 {metrics['recall@1']:.3f}  recall@5" in output
    by_weight = dict(rows)
    assert by_weight[0.5]["recall@1"] == by_weight[0.5]["mrr@10"] == 1.0  # each answer found first
    assert by_weight[0.0]["recall@1"] < 1.0  # keywords alone miss some: the sweep really varies the fusion
    assert namespace["misses"] == [] and "0 misses at rank 1" in output


def test_every_notebook_has_its_checks() -> None:
    """The checks above are the retrieval notebook's: a new notebook brings its own."""
    assert [path.name for path in NOTEBOOKS] == ["retrieval_quality.ipynb"]
