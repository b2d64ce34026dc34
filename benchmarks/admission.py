"""admission: what admitting a turn costs, and rate limits shared by processes through Redis.

- Cost of `TurnAdmission.refusal` with a per-caller and a per-tenant limit (two checks), in memory
  and in Redis on loopback (one Lua script per check), over many callers; and with Redis unreachable
  (a closed port): the first check finds it gone, the next ones count in memory without trying it.
- Two processes (and four), one caller, one limit in Redis: each sends its turns as fast as it can;
  the turns admitted in all must equal the limit exactly (moving window: no overshoot).
- A 28,000-character question: refused before anything else, whatever the limits.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import uuid
from typing import Any

from benchmarks.common import Result, log, ms_since, now, print_table, stats
from retrievers.turn.admission import TurnAdmission

NAME = "admission"
# Limits that never refuse: every check is counted, none is turned away.
LIMITS: dict[str, Any] = {"per_user": "1000000/minute", "per_tenant": "1000000/minute"}


async def timed_checks(admission: TurnAdmission, callers: int, turns: int) -> dict[str, float]:
    times = []
    for n in range(turns):
        started = now()
        refusal = await admission.refusal("What is the warranty?", user_id=f"C-{n % callers}", tenant="acme")
        times.append(ms_since(started))
        assert refusal is None
    return stats(times)


async def unreachable(turns: int) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    admission = TurnAdmission(max_question_chars=1000, redis_url=url, **LIMITS)
    started = now()
    await admission.refusal("What is the warranty?", user_id="C-1", tenant="acme")
    first = ms_since(started)
    then = await timed_checks(admission, 100, turns)
    await admission.aclose()
    return {"first_ms": round(first, 2), "then": then}


def _process(url: str, user: str, limit: str, turns: int, ready: Any, admitted: Any) -> None:
    async def go() -> int:
        admission = TurnAdmission(max_question_chars=1000, per_user=limit, redis_url=url, timeout_s=2.0)
        await admission.refusal("Hi?", user_id=f"{user}-warm-up")  # connected before the race starts
        ready.wait()  # every process starts sending at once
        count = sum([await admission.refusal("Hi?", user_id=user) is None for _ in range(turns)])
        await admission.aclose()
        return count

    admitted.put(asyncio.run(go()))


def shared(url: str, processes: int, limit: int, turns: int) -> dict[str, Any]:
    """`processes` processes, each `turns` turns of one caller as fast as it can, one limit in Redis."""
    context = multiprocessing.get_context("spawn")
    ready, admitted = context.Barrier(processes), context.Queue()
    user = f"bench-{uuid.uuid4().hex}"
    workers = [
        context.Process(target=_process, args=(url, user, f"{limit}/minute", turns, ready, admitted))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    counts = [admitted.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    return {"processes": processes, "limit": limit, "turns": processes * turns, "admitted": counts}


async def run(quick: bool) -> Result:
    turns = 500 if quick else 5000
    figures: dict[str, Any] = {}
    memory = TurnAdmission(max_question_chars=1000, **LIMITS)
    figures["memory_ms"] = await timed_checks(memory, 100, turns)
    await memory.aclose()
    figures["unreachable_redis"] = await unreachable(turns // 10)

    long_question = "x" * 28_000
    started = now()
    assert await TurnAdmission(max_question_chars=1000, **LIMITS).refusal(long_question) == "question_too_long"
    figures["long_question_ms"] = round(ms_since(started), 3)

    from benchmarks.sources import redis_url  # here: the processes spawned above need not import it

    with redis_url() as url:
        if url is None:
            log("  redis-server not found: shared limits not measured")
        else:
            redis = TurnAdmission(max_question_chars=1000, redis_url=url, **LIMITS)
            figures["redis_ms"] = await timed_checks(redis, 100, turns)
            await redis.aclose()
            figures["shared"] = [shared(url, 2, 20, 30), shared(url, 4, 50, 40)]

    rows = [
        ["in memory (per caller + per tenant)", *figures["memory_ms"].values()],
        ["Redis on loopback (2 Lua scripts)", *figures.get("redis_ms", {}).values()],
        ["Redis unreachable: the first check", figures["unreachable_redis"]["first_ms"], None, None, 1],
        ["Redis unreachable: the next ones (memory)", *figures["unreachable_redis"]["then"].values()],
        ["a 28,000-character question", figures["long_question_ms"], None, None, 1],
    ]
    print_table("admission: TurnAdmission.refusal, ms", ["what", "p50", "p95", "mean", "n"], rows)
    shared_runs = figures.get("shared", [])
    print_table(
        "admission: one caller's turns from several processes, one limit in Redis",
        ["processes", "limit", "turns sent", "admitted per process", "admitted in all"],
        [[s["processes"], s["limit"], s["turns"], s["admitted"], sum(s["admitted"])] for s in shared_runs],
    )
    return Result(NAME, quick, figures)
