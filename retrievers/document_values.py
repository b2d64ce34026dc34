"""What a document's values may hold, checked before anything is written.

JSON decoding lets through what the knowledge base cannot store or show safely: `\\u0000` and lone
surrogate escapes (`\\ud83d`), NaN and Infinity (a JSON extension Python accepts; Chroma cannot
filter on them), integers beyond 64 bits and nesting deep enough to exhaust the stack.
`check_record` refuses them, naming the field. The limits below keep what is copied into every
chunk (title, metadata) small, and ids safe to print in a terminal or a Rich table.
`shown` and `visible` quote a value in an error message: shortened, invisible characters escaped.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

from retrievers.errors import UserInputError

MAX_JSON_DEPTH = 10  # containers around a value, the record itself included
MAX_TITLE_CHARS = 500  # embedded with, and stored in, every chunk
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_BYTES = 4096  # UTF-8, as stored (nested values as their JSON text)
MAX_METADATA_BYTES = 16384  # keys and values of one document together
_INT64 = range(-(2**63), 2**63)  # what Chroma stores as an integer
ID_RULE = "an id may hold letters, digits, punctuation, symbols and spaces, but no [ ], control or invisible characters"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL, lone surrogates


def visible(text: str) -> str:
    """`text` with every invisible or control-like character escaped (a newline, a bidi override),
    so an error message quoting it stays one honest line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else _escape(c) for c in text)


def shown(value: str, limit: int = 40) -> str:
    """`value` quoted for an error message: visible, and shortened to `limit` characters."""
    return f"'{visible(value[:limit])}…'" if len(value) > limit else f"'{visible(value)}'"


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def string_problem(value: str) -> str | None:
    """Why a decoded string cannot be stored: a NUL or a lone surrogate (not valid Unicode)."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"holds a NUL character (\\u0000) at position {found.start() + 1}"
    where = f"({_escape(found.group())}) at position {found.start() + 1}"
    return f"holds a lone surrogate {where}, which is not valid Unicode"


def id_problem(value: str) -> str | None:
    """Why `value` cannot be a document id: see `ID_RULE` (Rich renders `[...]` as markup).
    `str.isprintable` is false exactly for Unicode's "Other" and "Separator" characters but the space:
    controls, format characters (bidi overrides and isolates, zero-width), line breaks, no-break
    spaces, surrogates, private-use and unassigned code points."""
    if not value.isprintable() or "[" in value or "]" in value:
        bad, char = next((i, c) for i, c in enumerate(value) if c in "[]" or not c.isprintable())
        name = unicodedata.name(char, "")
        return f"{shown(value)} has U+{ord(char):04X}{f' ({name})' if name else ''} at position {bad + 1}; {ID_RULE}"
    if value != value.strip(" "):
        return f"{shown(value)} starts or ends with a space"
    return None


def metadata_problem(metadata: dict[str, Any]) -> str | None:
    """Why this metadata is too big to copy into every chunk of its document."""
    if len(metadata) > MAX_METADATA_KEYS:
        return f"has {len(metadata)} keys; at most {MAX_METADATA_KEYS} are allowed"
    total = 0
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            return f"key {shown(key)} is {len(key)} characters long; at most {MAX_METADATA_KEY_CHARS} are allowed"
        size = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else 8
        if size > MAX_METADATA_VALUE_BYTES:
            return (
                f"value of key {shown(key)} is {size:,} bytes; a value may hold at most "
                f"{MAX_METADATA_VALUE_BYTES:,} (long content belongs in 'text')"
            )
        total += size + len(key.encode("utf-8", "surrogatepass"))
    if total > MAX_METADATA_BYTES:
        return f"holds {total:,} bytes of keys and values; at most {MAX_METADATA_BYTES:,} bytes in all"
    return None


def check_record(record: dict[str, Any], where: str) -> None:
    """Refuse what JSON decoding let into `record`, naming the field (`metadata.tags[1]`)."""
    stack: list[tuple[Any, str, int]] = [(record, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise UserInputError(f"{where}: field {_field(path)} is nested more than {MAX_JSON_DEPTH} levels deep")
            if isinstance(value, dict):
                for key in value:
                    problem = string_problem(key)
                    if problem:
                        raise UserInputError(f"{where}: field {_field(path)} has a key {shown(key)} that {problem}")
                items = [(item, f"{path}.{key}" if path else key) for key, item in value.items()]
            else:
                items = [(item, f"{path}[{index}]") for index, item in enumerate(value)]
            stack.extend((item, child, depth + 1) for item, child in reversed(items))  # in file order
        elif isinstance(value, str):
            problem = string_problem(value)
            if problem:
                raise UserInputError(f"{where}: field {_field(path)} {problem}")
        elif isinstance(value, float) and not math.isfinite(value):
            said = "NaN" if math.isnan(value) else json.dumps(value)  # "Infinity" or "-Infinity"
            raise UserInputError(f"{where}: field {_field(path)} is {said}: only finite numbers are allowed")
        elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
            raise UserInputError(f"{where}: field {_field(path)} is an integer beyond 64-bit")


def _field(path: str) -> str:
    return shown(path, limit=80) if path else "'document'"


_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')  # strings whole, and brackets


def line_of_depth(text: str, depth: int = 500) -> int | None:
    """The line where `text` first nests `depth` levels deep: where JSON too deep to decode is
    (far deeper than any record may nest, and than a .json file's own list and object add)."""
    level = 0
    for token in _JSON_TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            level += 1
            if level >= depth:
                return text.count("\n", 0, token.start()) + 1
        elif bracket in ("]", "}"):
            level -= 1
    return None
