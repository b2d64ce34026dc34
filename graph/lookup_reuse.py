"""Early lookups: a run that repeats an earlier run's question reuses that run's lookups.

LiveKit's preemptive generation runs the graph on the stable transcript before end of turn is decided,
and again when the final transcript differs (`retrievers/turn/reuse.py` says why). The nodes wrap their
lookups (route, knowledge-base search, each source call) in `reuse_or_fetch`, so the final run awaits
what the speculative one already started instead of paying for it again.

Who may share: runs that ask for it (`Context.shares_lookups`: the voice front door, whose runs LiveKit
may start speculatively; elsewhere a cancelled run stops its lookups at once), in the same conversation
(`Context.session_id`, the room) and with the same access — user id, roles and tenant — so no caller
ever gets a lookup made for another. Within that, the key is what the lookup depends on, with the
question normalised.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from graph.context import Context
from graph.services import Services

T = TypeVar("T")


def scope(ctx: Context) -> tuple[str, ...] | None:
    """Who may share a lookup: one call, one caller's access. None: nothing is shared."""
    if not ctx.shares_lookups or not ctx.session_id:
        return None
    return (ctx.session_id, json.dumps([ctx.user_id, sorted(ctx.roles), ctx.tenant]))


async def reuse_or_fetch(
    services: Services,
    ctx: Context,
    key: tuple[Hashable, ...],
    fetch: Callable[[], Awaitable[T]],
    keep: Callable[[T], bool] = lambda _: True,
) -> tuple[T, bool]:
    """The lookup `key` of this caller: an earlier run's, or `fetch()` (shared with the runs after
    it). Returns the result and whether it was an earlier run's."""
    who = scope(ctx)
    if services.lookups is None or who is None:
        return await fetch(), False
    return await services.lookups.shared((*who, *key), fetch, keep)
