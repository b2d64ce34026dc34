"""What the benchmarks share: paths, input data, timing, percentiles, progress, tables, results."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from retrievers.documents import Document, load_documents
from retrievers.evaluation import load_queries
from voicerag.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "benchmarks" / ".data"  # generated inputs: collections, caches (gitignored)
RESULTS_DIR = ROOT / "benchmarks" / "results"  # one JSON per benchmark (gitignored)
SAMPLE_KB = ROOT / "data" / "knowledge_base"
EVAL_DIR = ROOT / "eval"  # the shipped retrieval sets (eval/README.md)
EVAL_SETS = {"jsquad_dev": EVAL_DIR / "ja" / "jsquad_dev", "squad_dev": EVAL_DIR / "en" / "squad_dev"}
PROJECT_DATA_DIR = ROOT / ".voicerag"  # `make demo` / `voicerag eval` data, only ever read here


# ------------------------------------------------------------------ input data


def bench_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a benchmark: embedded Chroma in `data_dir`, no chat model (extractive
    answers), whatever the environment or `.env` say."""
    return load_settings(
        voicerag_data_dir=data_dir, chroma_url=None, openai_api_key=None, openai_base_url=None, **overrides
    )


def eval_documents(name: str) -> list[Document]:
    return load_documents([EVAL_SETS[name] / "corpus.jsonl"]).documents


def eval_questions(name: str) -> list[str]:
    return [query.text for query in load_queries(EVAL_SETS[name] / "queries.jsonl")]


def interleave(*lists: Sequence[Any]) -> list[Any]:
    """a0, b0, a1, b1, ... (then the rest of the longer lists): both languages in any prefix."""
    mixed: list[Any] = []
    for i in range(max(map(len, lists))):
        mixed.extend(items[i] for items in lists if i < len(items))
    return mixed


def seed_embedding_cache(target: Path) -> None:
    """Start `target` (a VectorCache file) as a copy of the project's cache when there is one:
    passage vectors are keyed by model and text hash, so a copy only saves re-embedding."""
    source = PROJECT_DATA_DIR / "embedding-cache.sqlite"
    if target.exists() or not source.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"seeding {target.relative_to(ROOT)} from {source.relative_to(ROOT)}")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)  # a consistent copy even while another process writes


# ------------------------------------------------------------------ timing and statistics


def now() -> float:
    return time.perf_counter()


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def stats(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of measured milliseconds."""
    values = np.asarray(values_ms, dtype=np.float64)
    if not len(values):
        return {"p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "n": 0}
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
        "mean": round(float(values.mean()), 2),
        "n": len(values),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------ output


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """`done/total` of a long step on stderr: redrawn on a terminal, a line every 10 s otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.started = self.shown = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if not self.total:
            return
        moment = time.monotonic()
        finished = done >= self.total
        if self.tty:
            end = "\n" if finished else ""
            print(f"\r  {self.label}: {done}/{self.total} ({moment - self.started:.0f} s)", end=end, file=sys.stderr)
        elif finished or moment - self.shown >= 10:
            self.shown = moment
            log(f"  {self.label}: {done}/{self.total} ({moment - self.started:.0f} s)")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table on stdout: first column left-aligned, the others right-aligned."""
    cells = [list(headers), *([fmt(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


@dataclass
class Result:
    """What one benchmark run writes to `benchmarks/results/<name>.json`."""

    name: str
    quick: bool
    figures: dict[str, Any]

    def write(self, seconds: float, load_before: list[float]) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}{'-quick' if self.quick else ''}.json"
        payload = {
            "benchmark": self.name,
            "quick": self.quick,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
            "machine": machine() | {"load_avg_before": load_before},
            **self.figures,
        }
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path
