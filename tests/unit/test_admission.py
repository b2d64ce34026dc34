"""Turn admission in memory (one process): question length, per-caller and per-tenant rate limits.
Shared limits through Redis, and a Redis that is down or hangs: tests/integration/test_rate_limits.py."""

from __future__ import annotations

import asyncio

from retrievers.turn.admission import TurnAdmission, caller_key, tenant_key


async def refusals(admission: TurnAdmission, count: int, **caller: str) -> list[str | None]:
    return [await admission.refusal("What is the warranty?", **caller) for _ in range(count)]


async def test_a_question_longer_than_the_limit_is_refused_and_takes_no_turn() -> None:
    admission = TurnAdmission(max_question_chars=1000, per_user="1/minute")
    assert await admission.refusal("x" * 1001, user_id="u") == "question_too_long"
    assert await admission.refusal("x" * 28_000, user_id="u") == "question_too_long"
    assert await admission.refusal("x" * 1000, user_id="u") is None  # exactly the limit: admitted
    assert await admission.refusal("short", user_id="u") == "rate_limited"  # that one took the only turn
    await admission.aclose()


async def test_each_caller_has_a_limit_of_their_own() -> None:
    admission = TurnAdmission(max_question_chars=1000, per_user="2/minute")
    assert await refusals(admission, 3, user_id="C-1") == [None, None, "rate_limited"]
    assert await refusals(admission, 2, user_id="C-2") == [None, None]  # another caller is unaffected
    assert await refusals(admission, 1, user_id="C-1") == ["rate_limited"]
    await admission.aclose()


async def test_anonymous_callers_are_counted_by_their_session() -> None:
    admission = TurnAdmission(max_question_chars=1000, per_user="2/minute")
    room_a = await refusals(admission, 3, user_id="anonymous", session_id="room-a")
    room_b = await refusals(admission, 2, user_id="anonymous", session_id="room-b")
    assert room_a == [None, None, "rate_limited"]
    assert room_b == [None, None]  # a second anonymous call does not share the first one's turns
    # Without a session every anonymous caller is one caller (control: the session is what separates them).
    assert await refusals(admission, 3, user_id="anonymous") == [None, None, "rate_limited"]
    # A signed-in caller is counted by user id, whatever session they are in.
    assert await refusals(admission, 3, user_id="C-1", session_id="room-c") == [None, None, "rate_limited"]
    assert await refusals(admission, 1, user_id="C-1", session_id="room-d") == ["rate_limited"]
    await admission.aclose()


async def test_a_tenant_limit_counts_every_caller_of_the_tenant_together() -> None:
    admission = TurnAdmission(max_question_chars=1000, per_user="5/minute", per_tenant="3/minute")
    acme = [await admission.refusal("hi?", user_id=f"u{n}", tenant="acme") for n in range(4)]
    assert acme == [None, None, None, "rate_limited"]
    assert await refusals(admission, 2, user_id="u9", tenant="globex") == [None, None]  # another tenant
    assert await refusals(admission, 5, user_id="u9") == [None] * 5  # no tenant: only the caller's limit
    await admission.aclose()


async def test_the_same_user_id_in_two_tenants_is_two_callers() -> None:
    admission = TurnAdmission(max_question_chars=1000, per_user="1/minute")
    assert await refusals(admission, 2, user_id="C-1", tenant="acme") == [None, "rate_limited"]
    assert await refusals(admission, 1, user_id="C-1", tenant="globex") == [None]
    await admission.aclose()


async def test_turns_come_back_when_the_window_has_passed() -> None:
    admission = TurnAdmission(max_question_chars=1000, per_user="2/second")
    assert await refusals(admission, 3, user_id="u") == [None, None, "rate_limited"]
    await asyncio.sleep(1.05)
    assert await refusals(admission, 3, user_id="u") == [None, None, "rate_limited"]
    await admission.aclose()


async def test_without_limits_every_short_question_is_admitted() -> None:
    admission = TurnAdmission(max_question_chars=1000)
    assert not admission.limited
    assert await refusals(admission, 200, user_id="u", tenant="acme") == [None] * 200
    await admission.aclose()


def test_keys_do_not_carry_the_caller_s_id() -> None:
    phone = "09012345678"
    for key in (caller_key(phone), caller_key("anonymous", session_id=phone), tenant_key(phone)):
        assert phone not in key
    assert caller_key("anonymous", "s1") != caller_key("anonymous", "s2") != caller_key("anonymous")
    assert caller_key("u", tenant="a") != caller_key("u", tenant="b")
