"""Retrieval metrics on an evaluation set: recall@k, MRR@10, nDCG@10 and latency percentiles.

An evaluation set is a folder with `corpus.jsonl` (documents) and `queries.jsonl`
(`{"id", "text", "relevant": [doc ids]}`), as in `eval/` (the shipped sets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrievers.errors import UserInputError


@dataclass(frozen=True, slots=True)
class EvalQuery:
    id: str
    text: str
    relevant: frozenset[str]


def load_queries(path: Path) -> list[EvalQuery]:
    if not path.exists():
        raise UserInputError(f"{path}: no such file")
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            queries.append(EvalQuery(str(record["id"]), str(record["text"]), frozenset(map(str, record["relevant"]))))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserInputError(f'{path}:{number}: expected {{"id", "text", "relevant": [...]}} ({exc})') from None
    if not queries:
        raise UserInputError(f"{path}: no queries")
    return queries


def score_rankings(rankings: Sequence[Sequence[str]], queries: Sequence[EvalQuery]) -> dict[str, float]:
    """Mean recall@1/5/10, MRR@10 and nDCG@10 (binary relevance) of ranked document ids."""
    totals = {"recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0}
    for ranked, query in zip(rankings, queries, strict=True):
        relevant = query.relevant
        top = list(ranked[:10])
        for k in (1, 5, 10):
            totals[f"recall@{k}"] += len(relevant.intersection(top[:k])) / len(relevant)
        first = next((i for i, doc in enumerate(top) if doc in relevant), None)
        totals["mrr@10"] += 0.0 if first is None else 1.0 / (first + 1)
        dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(top) if doc in relevant)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
        totals["ndcg@10"] += dcg / ideal
    return {name: round(value / len(queries), 4) for name, value in totals.items()}


def percentiles(latencies_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "latency_ms_p50": round(float(np.percentile(values, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(values, 95)), 2),
    }
