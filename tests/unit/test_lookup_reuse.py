"""`LookupReuse` on its own: shared tasks by key, bounded in number and age, failures and orphans dropped.
The graph's use of it is `tests/integration/test_early_lookups.py`."""

from __future__ import annotations

import asyncio

import pytest

from retrievers.turn.reuse import LookupReuse


class Fetcher:
    """Counts fetches; each waits on `gate` (when given) and returns its number."""

    def __init__(self, gate: asyncio.Event | None = None, fail: bool = False) -> None:
        self.calls = 0
        self.cancelled = 0
        self.gate, self.fail = gate, fail

    async def __call__(self) -> int:
        self.calls += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            raise ConnectionError("down")
        return self.calls


async def test_two_runs_share_one_fetch_in_flight() -> None:
    reuse, gate = LookupReuse(10.0), asyncio.Event()
    fetch = Fetcher(gate)
    first = asyncio.create_task(reuse.shared("k", fetch))
    second = asyncio.create_task(reuse.shared("k", fetch))
    await asyncio.sleep(0)
    gate.set()
    assert await first == (1, False) and await second == (1, True)
    assert fetch.calls == 1 and (reuse.started, reuse.reused) == (1, 1)


async def test_entries_expire_with_age_and_the_oldest_goes_past_the_size() -> None:
    reuse, fetch = LookupReuse(0.05, size=2), Fetcher()
    await reuse.shared("a", fetch)
    await reuse.shared("b", fetch)
    await reuse.shared("c", fetch)  # "a" goes
    assert len(reuse) == 2 and (await reuse.shared("b", fetch))[1] is True
    assert await reuse.shared("a", fetch) == (4, False)
    await asyncio.sleep(0.06)
    assert await reuse.shared("a", fetch) == (5, False)  # too old: fetched again


async def test_a_failure_or_a_refused_result_is_not_offered_again() -> None:
    reuse, failing = LookupReuse(10.0), Fetcher(fail=True)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await reuse.shared("k", failing)
    assert failing.calls == 2
    odd = Fetcher()
    await reuse.shared("n", odd, keep=lambda n: n % 2 == 0)
    assert await reuse.shared("n", odd, keep=lambda n: n % 2 == 0) == (2, False)
    assert await reuse.shared("n", odd) == (2, True)


async def test_a_cancelled_run_leaves_its_fetch_to_the_next_and_an_orphan_is_cancelled() -> None:
    reuse, gate = LookupReuse(10.0, orphan_grace_s=0.05), asyncio.Event()
    fetch = Fetcher(gate)
    first = asyncio.create_task(reuse.shared("k", fetch))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)  # within the grace: the next run joins
    second = asyncio.create_task(reuse.shared("k", fetch))
    await asyncio.sleep(0.1)
    assert fetch.cancelled == 0 and not second.done()
    gate.set()
    assert await second == (1, True)

    lonely = Fetcher(asyncio.Event())
    orphan = asyncio.create_task(reuse.shared("o", lonely))
    await asyncio.sleep(0.01)
    orphan.cancel()
    await asyncio.sleep(0.1)  # past the grace, nobody came
    assert lonely.cancelled == 1 and len(reuse) == 1  # only "k" is left
