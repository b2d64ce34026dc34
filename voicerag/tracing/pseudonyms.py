"""Who asked, pseudonymously (LangSmith's `user_id`, OpenTelemetry's `enduser.pseudo.id`): the user
id in a trace is a keyed hash (HMAC-SHA256) of the caller's id.

The key is `TRACE_USER_ID_KEY`. Without one, a random key is made once and kept in the data dir
(`trace_user_id.key`, mode 0600), so every process sharing that disk (voice workers, `ask`, Studio)
gives a caller the same pseudonym; delete the file to unlink all earlier traces from later ones.
`TRACE_USER_IDS=plain` sends the id itself (still through the masker, like every string).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from retrievers.errors import UserInputError

if TYPE_CHECKING:
    from voicerag.settings import Settings

KEY_FILE = "trace_user_id.key"
PSEUDONYM_CHARS = 24  # of the hex digest: 96 bits, collision-free for any caller population


def pseudonymizer(key: bytes) -> Callable[[str], str]:
    """The pseudonym function of `key`: stable for a caller as long as the key is."""

    def pseudonym(user_id: str) -> str:
        digest = hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return "u-" + digest[:PSEUDONYM_CHARS]

    return pseudonym


def stored_key(data_dir: Path) -> bytes:
    """The key kept in `data_dir`, made (random, 0600, written whole) by the first process that needs it."""
    path = data_dir / KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32))
    try:
        os.link(partial, path)  # atomic, and never replaces a key another process made first
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise UserInputError(f"{path}: the trace user-id key is too short; delete the file to make a new one")
    return key.encode("ascii")


def user_ids(settings: Settings) -> Callable[[str], str]:
    """How a caller's id appears in traces (`TRACE_USER_IDS`, `TRACE_USER_ID_KEY`)."""
    if settings.trace_user_ids == "plain":
        return lambda user_id: user_id
    key = settings.trace_user_id_key
    return pseudonymizer(key.get_secret_value().encode("utf-8") if key else stored_key(settings.voicerag_data_dir))
