"""Who is calling: a LiveKit participant's identity, attributes and metadata → the graph's Context.

Attributes and metadata should be set by your backend in the participant's access token (a
participant that may update its own metadata could otherwise claim roles). Recognised keys, in
attributes first, then in JSON metadata: `user_id` (default: the participant identity), `roles`
(comma-separated, or a JSON list in metadata), `tenant`, `language` (`ja` or `en`). A caller the
session cannot identify gets the public, least-privilege context: no user id, no roles.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graph.context import Context
from retrievers.language import Language

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """What the room tells us about the person speaking."""

    identity: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    metadata: str = ""


def _metadata(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _roles(attribute: str | None, from_metadata: Any) -> list[str]:
    if attribute:
        return [r.strip() for r in attribute.split(",") if r.strip()]
    if isinstance(from_metadata, list):
        return [str(r).strip() for r in from_metadata if str(r).strip()]
    return []


def context_for(caller: Caller | None, turn_id: str | None = None, session_id: str = "") -> Context:
    """The per-turn Context of a caller (least privilege when unknown) in the call `session_id`."""
    turn = turn_id or uuid.uuid4().hex
    if caller is None or not caller.identity:
        return Context(user_id=ANONYMOUS, turn_id=turn, session_id=session_id)
    meta = _metadata(caller.metadata)
    attributes = dict(caller.attributes)
    wanted = attributes.get("language") or meta.get("language")
    language: Language | None = "ja" if wanted == "ja" else "en" if wanted == "en" else None
    return Context(
        user_id=str(attributes.get("user_id") or meta.get("user_id") or caller.identity),
        roles=_roles(attributes.get("roles"), meta.get("roles")),
        tenant=attributes.get("tenant") or meta.get("tenant"),
        language=language,
        turn_id=turn,
        session_id=session_id,
    )


def caller_in(room: Any) -> Caller | None:
    """The first remote participant of a LiveKit room (the caller), or None (the console's room has
    no real one)."""
    participants = getattr(room, "remote_participants", None)
    if not isinstance(participants, dict) or not participants:
        return None
    first = next(iter(participants.values()))
    attributes = first.attributes if isinstance(first.attributes, dict) else {}
    metadata = first.metadata if isinstance(first.metadata, str) else ""
    return Caller(first.identity, attributes, metadata) if isinstance(first.identity, str) else None
