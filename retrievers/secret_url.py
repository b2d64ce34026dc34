"""URLs that may carry a password (a database, Redis, a Chroma server): shown with the password hidden.

`SecretUrl` is a pydantic `SecretStr` whose `str`, `repr` and JSON form are the URL with its password
replaced by `***` (so a log line or an error still says which server), while `get_secret_value()`
gives the URL itself, to the one line that connects with it. `hide_password` does the same for a
plain string, for messages about a URL that was never a setting.
"""

from __future__ import annotations

import re

from pydantic import SecretStr

_USERINFO = re.compile(r"(?<=://)([^/@\s:]*):[^/@\s]*@")  # scheme://user:password@host
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|pass|secret|token|api_?key|key)=)[^&#\s]*")


def hide_password(url: str) -> str:
    """`url` with the password of its user info, and secret-looking query values, replaced by ***."""
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1:***@", url))


class SecretUrl(SecretStr):
    """A URL setting: the password never shows; `get_secret_value()` is the URL to connect with."""

    def _display(self) -> str:
        return hide_password(self.get_secret_value())


def reveal(value: SecretStr | None) -> str | None:
    """The secret's value, or None: for the one place that hands it to a client library."""
    return value.get_secret_value() if value is not None else None
