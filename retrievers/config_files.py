"""Reading the YAML files under `data/` (sources, database queries, persona): one way to fail.

Every problem is a `UserInputError` of one line naming the file (and the line, or the field), never
echoing the file's contents: a wrong path may point at a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from retrievers.errors import UserInputError


def read_yaml(path: Path, *, what: str, variable: str) -> Any:
    """The parsed YAML of `path`, a file described as `what` and chosen by the setting `variable`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{variable}: {path}: the {what} does not exist") from None
    except IsADirectoryError:
        raise UserInputError(f"{variable}: {path}: is a folder, not the {what}") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: the {what} is not UTF-8 text") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UserInputError(f"{where}: invalid YAML ({getattr(exc, 'problem', None) or 'cannot parse'})") from None


def field_error(path: Path, exc: ValidationError) -> UserInputError:
    """The first validation problem as `file: field.path: message` (list items as `[i]`)."""
    error = exc.errors()[0]
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    return UserInputError(f"{path}: {location + ': ' if location else ''}{error['msg']}")
