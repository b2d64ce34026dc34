"""The turn's deadline: one absolute time, entered by each node, capping every wait below it."""

from __future__ import annotations

import asyncio
import time

from retrievers.turn.deadline import as_timeout, capped, deadline_at, remaining, turn_deadline


def test_no_deadline_means_no_cap() -> None:
    assert remaining() == float("inf") and as_timeout() is None and capped(3.0) == 3.0
    with deadline_at(None):
        assert as_timeout() is None


def test_a_deadline_caps_waits_and_an_inner_one_can_only_shorten_it() -> None:
    with deadline_at(time.monotonic() + 1.0):
        assert 0.9 < remaining() <= 1.0 and capped(5.0) <= 1.0 and capped(0.1) == 0.1
        with turn_deadline(10.0):  # later than the turn's: the turn's stays
            assert remaining() <= 1.0
        with turn_deadline(0.2):
            assert remaining() <= 0.2
        with deadline_at(None):  # entering "no deadline" never lifts one
            assert remaining() <= 1.0
        assert remaining() > 0.5
    assert remaining() == float("inf")


def test_a_passed_deadline_leaves_nothing() -> None:
    with deadline_at(time.monotonic() - 1.0):
        assert remaining() == 0.0 and capped(2.0) == 0.0 and as_timeout() == 0.0


async def test_concurrent_tasks_of_a_turn_share_it_and_other_turns_do_not_see_it() -> None:
    seen: dict[str, float] = {}

    async def lookup(name: str) -> None:
        await asyncio.sleep(0)
        seen[name] = remaining()

    with deadline_at(time.monotonic() + 0.5):
        await asyncio.gather(lookup("a"), lookup("b"))
    await lookup("other turn")
    assert seen["a"] <= 0.5 and seen["b"] <= 0.5 and seen["other turn"] == float("inf")
