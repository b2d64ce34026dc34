"""Checks on the SQL of a named query: one read-only SELECT, and the names it binds.

A first line of defence when the file is loaded; the database's read-only transaction is the
second (`read_only.py`), so a statement that slips past these checks still cannot write.
"""

from __future__ import annotations

import re

# Comments and quoted text are blanked first: keywords inside them are harmless.
_COMMENT_OR_QUOTED = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", re.DOTALL)
_WRITE_WORDS = re.compile(  # inside a SELECT / WITH: data-modifying CTEs, SELECT INTO, locks, statements
    r"\b(INSERT|UPDATE|DELETE|MERGE|UPSERT|DROP|CREATE|ALTER|TRUNCATE|GRANT|REVOKE|ATTACH|DETACH|PRAGMA|"
    r"VACUUM|REINDEX|COPY|CALL|EXECUTE|LOCK|INTO|LISTEN|NOTIFY|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|PREPARE)\b",
    re.IGNORECASE,
)
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")  # SQLAlchemy's own rule for text() bind parameters
_KEYWORD = re.compile(r"[A-Za-z_]{1,20}")


def sql_problem(sql: str) -> str | None:
    """Why `sql` is not a single read-only SELECT, or None when it is."""
    if "\\" in sql:
        return "backslashes are not allowed"
    body = _COMMENT_OR_QUOTED.sub(" ", sql).strip()
    if "'" in body or '"' in body or "/*" in body:
        return "unbalanced quote or comment"
    body = body.rstrip().rstrip(";").strip()
    if not body:
        return "it is empty"
    if ";" in body:
        return "it has more than one statement"
    first = body.split(None, 1)[0].upper()
    if first not in ("SELECT", "WITH"):
        # name the first word only when it is a keyword: the message never echoes the file
        return f"it starts with {first}, not SELECT" if _KEYWORD.fullmatch(first) else "it does not start with SELECT"
    if word := _WRITE_WORDS.search(body):
        return f"it contains {word.group(1).upper()}"
    return None


def bind_names(sql: str) -> set[str]:
    """The `:name` parameters the statement binds (outside comments and quoted text)."""
    return set(_BIND.findall(_COMMENT_OR_QUOTED.sub(" ", sql)))
