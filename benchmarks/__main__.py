"""`python -m benchmarks [NAME...] [--quick]`: run the named benchmarks (all by default)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys

from benchmarks.common import ROOT, log, now, print_table

BENCHMARKS = (
    "ingest", "embedding_throughput", "extraction", "query_latency", "access_filter", "graph_overhead", "sources",
    "agent_overhead", "audit", "masking", "admission", "turn_record", "caller_refusal", "context_budget",
    "early_lookups", "langsmith_tracing", "otel_tracing", "tts_text", "voice_e2e", "barge_in", "capacity",
    "keyword_incremental", "multi_worker",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a smaller version of each, for a smoke check")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.chdir(ROOT)  # settings read `.env` relative to the working directory
    durations = []
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        load_before = [round(x, 2) for x in os.getloadavg()]
        log(f"== {name}{' (quick)' if args.quick else ''}, load average {load_before}")
        started = now()
        result = asyncio.run(module.run(args.quick))
        seconds = now() - started
        path = result.write(seconds, load_before)
        durations.append([name, round(seconds, 1), *load_before[:1], round(os.getloadavg()[0], 2)])
        log(f"== {name}: {seconds:.0f} s, figures in {path.relative_to(ROOT)}")
    print_table("benchmarks: run time", ["benchmark", "s", "load 1 min before", "after"], durations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
