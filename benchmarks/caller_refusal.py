"""caller_refusal: does the time of an order look-up tell another caller whether the order exists?

`order_status` binds the caller (`:caller_id`): another customer asking for an existing order and for
a missing one both get no row, hence the same refusal; an anonymous caller's query never runs. This
times `run_source` on the sample SQLite database (seeded from data/seed.sql; no cache, so every call
reaches the database) for each case, interleaved so that drift hits them alike.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Result, log, now, print_table, stats
from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.database import DatabaseSource, params_of, sqlite_url

NAME = "caller_refusal"
OWNER, OTHER = "C-101518", "C-100231"
CASES = {  # name: (caller, order number)
    "owner, their order (answered)": (OWNER, "KA-2026-000123"),
    "another customer, an existing order (refused)": (OTHER, "KA-2026-000123"),
    "another customer, a missing order (refused)": (OTHER, "KA-2026-999999"),
    "anonymous, an existing order (refused, no SQL)": ("anonymous", "KA-2026-000123"),
}


async def run(quick: bool) -> Result:
    rounds = 200 if quick else 2000
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "company.sqlite"
        with sqlite3.connect(path) as connection:
            connection.executescript((ROOT / "data" / "seed.sql").read_text(encoding="utf-8"))
        connection.close()
        source = DatabaseSource(sqlite_url(path), ROOT / "data" / "database.yaml", timeout_s=5.0)
        timings: dict[str, list[float]] = {name: [] for name in CASES}
        statuses: dict[str, set[Any]] = {name: set() for name in CASES}
        try:
            for number in range(rounds + 20):  # the first 20 rounds warm the pool up
                for name, (caller, order) in CASES.items():
                    params = params_of(source, query="order_status", order_number=order)
                    started = now()
                    result = await run_source(source, params, SourceContext(user_id=caller))
                    if number >= 20:
                        timings[name].append((now() - started) * 1000)
                    statuses[name].add((result["status"], repr(result["data"] if result["status"] != "ok" else "")))
        finally:
            await source.aclose()
    figures = {name: stats(values) | {"outcome": sorted(statuses[name])[0][0]} for name, values in timings.items()}
    refused = [statuses[name] for name in CASES if "refused" in name]
    figures["refusals_identical"] = all(s == refused[0] for s in refused)
    rows = [[name, f["p50"], f["p95"], f["mean"], f["outcome"]] for name, f in figures.items() if isinstance(f, dict)]
    print_table(f"order_status on SQLite, {rounds} rounds (ms)", ["case", "p50", "p95", "mean", "status"], rows)
    log(f"  refusals carry identical data: {figures['refusals_identical']}")
    return Result(NAME, quick, {"rounds": rounds, "cases": figures})
